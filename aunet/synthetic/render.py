"""Rendering of the synthetic faces: from an identity, AU intensities and a pose to an RGB image.

Every shape is built in the face frame of :mod:`aunet.synthetic.geometry` from the 68
landmarks (so it moves with them) and drawn through the pose's projection with OpenCV's
anti-aliased polygons at 1/16-pixel precision. Each AU changes the image twice, where FACS says
it acts: in *shape*, by the landmarks it moves, and in *texture*, by the wrinkles, furrows and
bulges its muscle makes (drawn darker and longer as the intensity grows), so that the intensity can
be read from the pixels even where the landmarks barely move:

======  ===========================================================================
AU1     central forehead lines; inner brows up
AU2     lateral forehead lines; outer brows up
AU4     vertical glabellar furrows, shadow over the eyes; brows down and together
AU5     upper lids up: sclera above the iris, lid crease hidden
AU6     crow's-feet, infraorbital furrow, raised cheek highlight; lower lids up
AU9     nose-bridge wrinkles, flared nostrils, upper nasolabial fold; nose base up
AU12    deep nasolabial folds, cheek bulge; lip corners up and out
AU15    marionette lines and shadow below the corners; corners down
AU17    mentolabial furrow, chin dimpling, chin-boss highlight; chin and lower lip up
AU20    creases and shadow beside the corners, platysma lines; corners out, lips thin
AU25    dark mouth interior and teeth; lips apart
AU26    (with AU25) a wide-open mouth; jaw and chin down
======  ===========================================================================

Soft effects (shading, bulges, shadows) go to a separate float layer that is blurred and
multiplied in at the end, with lighting, tint and sensor noise.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from aunet.synthetic.canvas import AA, Canvas, curve, ellipse, tone, unit_circle
from aunet.synthetic.features import (
    cranium,
    draw_brows,
    draw_eye,
    draw_mouth,
    draw_nose,
    draw_shading,
    draw_wrinkles,
    head_outline,
)
from aunet.synthetic.geometry import (
    MAX_INTENSITY,
    SYNTHETIC_AUS,
    Pose,
    check_intensities,
    face_landmarks,
    neutral_landmarks,
    projection,
    to_pixels,
)
from aunet.synthetic.identity import Identity

#: Probability that a cluttered frame gets an occluder (hand, object or bar) over the face.
OCCLUSION_PROBABILITY = 0.12


def render_face(
    identity: Identity,
    intensities: np.ndarray | list[float],
    pose: Pose | None = None,
    size: int = 256,
    rng: np.random.Generator | None = None,
    clutter: bool = True,
    occlusion: float = OCCLUSION_PROBABILITY,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face.

    Args:
        identity: who (see :func:`~aunet.synthetic.identity.sample_identity`).
        intensities: the 12 AU intensities (0-5) in ``SYNTHETIC_AUS`` order.
        pose: head pose, crop, gaze and blink (default: frontal, margin 1.3).
        size: side of the square output image in pixels.
        rng: the randomness of the frame's nuisances; needed when ``clutter`` is on.
        clutter: draw a cluttered background, maybe an occluder (probability ``occlusion``),
            random lighting, tint, blur and noise; off, the face is on plain grey under even
            light (for tests and figures).
        occlusion: probability of an occluder when ``clutter`` is on.

    Returns:
        ``(image, landmarks)``: ``size x size x 3`` uint8 RGB and the 68 x 2 float32 (x, y)
        pixel positions (OpenCV convention, pixel centres at integers) of the points the face
        was drawn from.

    Raises:
        ValueError: for bad intensities, a size below 16, or ``clutter`` without ``rng``.
    """
    pose = pose or Pose()
    intensities = check_intensities(intensities)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if clutter and rng is None:
        raise ValueError("a cluttered frame needs an rng (numpy Generator) for its nuisances")
    landmarks = face_landmarks(identity, intensities, pose.blink)
    # The crop follows the face at rest, as a tracker's smoothed box would: an expression moves
    # the features inside the crop instead of rescaling the whole image.
    matrix = projection(neutral_landmarks(identity), identity, pose, size)
    image = _background(size, rng) if clutter else np.full((size, size, 3), 128, np.uint8)
    face = Canvas(image, identity, matrix)
    # The soft layer is blurred anyway: draw it at half resolution from 128 px up (4x cheaper).
    low = size // 2 if size >= 128 else size
    shrink = low / size  # pixel centres at integers: p_low = (p + 0.5) * shrink - 0.5
    low_matrix = np.concatenate([matrix[:, :3] * shrink, (matrix[:, 3:] + 0.5) * shrink - 0.5], 1)
    shade = np.zeros((low, low), np.float32)
    light = Canvas(shade, identity, low_matrix)
    au = dict(zip(SYNTHETIC_AUS, (intensities / MAX_INTENSITY).tolist(), strict=True))
    _draw_body(face, identity, landmarks)
    draw_shading(light, identity, landmarks, au)
    draw_wrinkles(face, identity, landmarks, au)
    for first in (36, 42):
        draw_eye(face, identity, landmarks, pose, au, first)
    draw_brows(face, identity, landmarks)
    draw_nose(face, identity, landmarks, au)
    draw_mouth(face, identity, landmarks)
    if identity.glasses:
        _draw_glasses(face, identity)
    light.flush()
    cv2.GaussianBlur(shade, (0, 0), 0.07 * light.unit, dst=shade)
    if clutter and rng.random() < occlusion:
        _draw_occluder((face, light), identity, rng)
        light.flush()
    face.flush()
    if low != size:
        shade = cv2.resize(shade, (size, size), interpolation=cv2.INTER_LINEAR)
    image = _finish(image, shade, rng if clutter else None)
    return image, to_pixels(landmarks, identity, matrix).astype(np.float32)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered scene: a random wall with random rectangles, discs, bars and triangles."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.uniform(25, 235, 3).round()
    for _ in range(int(rng.integers(5, 13))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        centre = rng.uniform(-0.1, 1.1, 2) * size
        half = rng.uniform(0.04, 0.35, 2) * size
        kind = int(rng.integers(4))
        if kind == 0:  # a rotated rectangle
            angle = rng.uniform(0, np.pi)
            c, s = np.cos(angle), np.sin(angle)
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
            corners = corners @ np.array([[c, s], [-s, c]]) + centre
            cv2.fillPoly(image, [corners.round().astype(np.int32)], colour, AA)
        elif kind == 1:  # an ellipse
            axes = (int(half[0]), int(half[1]))
            cv2.ellipse(
                image,
                centre.astype(int).tolist(),
                axes,
                rng.uniform(0, 180),
                0,
                360,
                colour,
                -1,
                AA,
            )
        elif kind == 2:  # a bar
            end = centre + rng.normal(0, 0.4, 2) * size
            width = int(rng.integers(1, max(2, size // 16)))
            cv2.line(
                image, centre.astype(int).tolist(), end.astype(int).tolist(), colour, width, AA
            )
        else:  # a triangle
            corners = centre + rng.normal(0, 1, (3, 2)) * half
            cv2.fillPoly(image, [corners.round().astype(np.int32)], colour, AA)
    return image


def _draw_body(c: Canvas, f: Identity, p: np.ndarray) -> None:
    """Clothes, neck, ears, the head and the hair."""
    chin = f.chin
    clothes = np.array(
        [
            (0.0, chin + 0.72),
            (-0.52, chin + 0.42),
            (-2.2, chin + 0.72),
            (-2.8, chin + 2.4),
            (2.8, chin + 2.4),
            (2.2, chin + 0.72),
            (0.52, chin + 0.42),
        ]
    )
    neck = np.array([(-0.56, 0.3), (-0.6, chin + 1.2), (0.6, chin + 1.2), (0.56, 0.3)])
    c.fill(neck, tone(f.skin, 0.86))
    c.fill(clothes, f.clothes)
    if f.hair_style == 2:
        back = np.array([(-1.12, -0.6), (-1.25, 0.5), (-1.2, chin + 0.55), (-0.62, chin + 0.5)])
        back = np.concatenate([back, back[::-1] * (-1, 1)])
        c.fill(back, tone(f.hair_colour, 0.85))
    for side in (-1.0, 1.0):
        ear = ellipse((side * (f.cheek_width - 0.03), f.jaw_top + 0.06), 0.11, 0.21, 16)
        c.fill(ear, tone(f.skin, 0.93))
        inner = ellipse((side * f.cheek_width, f.jaw_top + 0.06), 0.05, 0.13, 12)[3:10]
        c.stroke(inner, tone(f.skin, 0.72), 0.015)
    c.fill(head_outline(f, p), f.skin)
    if f.hair_style:
        side = np.array(
            [
                (-0.97 * f.cheek_width, f.jaw_top - 0.22),
                (-0.86, f.hairline + 0.26),
                (-0.55, f.hairline + 0.07),
                (0.0, f.hairline),
            ]
        )
        hairline = curve(np.concatenate([side, side[-2::-1] * (-1, 1)]), 4)
        c.fill(np.concatenate([cranium(f, 1.06, 0.2), hairline]), f.hair_colour)


def _draw_glasses(c: Canvas, f: Identity) -> None:
    """Thin dark frames fixed to the face (not to the moving lids)."""
    frame = (28.0, 26.0, 26.0)
    corners = unit_circle(24)
    shape = np.sign(corners) * np.abs(corners) ** 0.6 * (0.25, 0.15)
    for side in (-1.0, 1.0):
        centre = np.array([side * f.eye_gap, f.eye_y + 0.01])
        c.stroke(centre + shape, frame, 0.022, closed=True)
        c.stroke(
            np.array(
                [centre + np.array([side * 0.25, -0.04]), (side * f.cheek_width, f.eye_y - 0.02)]
            ),
            frame,
            0.02,
        )
    c.stroke(
        np.array(
            [
                (-f.eye_gap + 0.24, f.eye_y - 0.05),
                (0.0, f.eye_y - 0.08),
                (f.eye_gap - 0.24, f.eye_y - 0.05),
            ]
        ),
        frame,
        0.02,
    )


def _draw_occluder(canvases: tuple[Canvas, Canvas], f: Identity, rng: np.random.Generator) -> None:
    """A hand, an object or a bar over part of the face (never all of it)."""
    face, light = canvases
    kind = int(rng.integers(3))
    target = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 1.0)])
    if kind == 0:  # a hand reaching in from below or the side
        angle = rng.uniform(0.2 * np.pi, 0.8 * np.pi) * rng.choice((-1.0, 1.0))
        away = np.array([np.cos(angle), abs(np.sin(angle))])
        palm = target + 0.45 * away
        colour = tone(f.skin, rng.uniform(0.85, 1.05))
        shapes = [(ellipse(palm, 0.26, 0.3), None)]
        normal = np.array([-away[1], away[0]])
        for k in range(4):
            base = palm + normal * (k - 1.5) * 0.11
            shapes.append((np.array([base, base - away * rng.uniform(0.3, 0.45)]), 0.09))
    elif kind == 1:  # an object
        count = int(rng.integers(5, 8))
        angle = np.sort(rng.uniform(0, 2 * np.pi, count))
        radius = rng.uniform(0.18, 0.4) * rng.uniform(0.7, 1.0, count)
        shapes = [(target + np.stack([np.cos(angle), np.sin(angle)], 1) * radius[:, None], None)]
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
    else:  # a bar: a strand of hair, a pen, a microphone
        direction = rng.normal(0, 1, 2)
        direction /= np.linalg.norm(direction) + 1e-9
        shapes = [
            (
                np.array([target - 0.9 * direction, target + 0.9 * direction]),
                rng.uniform(0.05, 0.13),
            )
        ]
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
    for points, width in shapes:
        for canvas, value in ((face, colour), (light, 0.0)):
            if width is None:
                canvas.fill(points, value)
            else:
                canvas.stroke(points, value, width)


@cache
def _noise(size: int) -> np.ndarray:
    """A fixed 2S x 2S x 3 tile of unit Gaussian noise; frames take random windows of it."""
    return np.random.default_rng(size).standard_normal((2 * size, 2 * size, 3), np.float32)


def _finish(image: np.ndarray, shade: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Apply the shading layer and, with an rng, random lighting, tint, blur and noise."""
    out = image.astype(np.float32)
    size = len(image)
    if rng is None:
        factor = 1.0 + shade
    else:
        # Light falls off linearly across the image in a random direction.
        angle, slope = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.5)
        ramp = np.linspace(-0.5 * slope, 0.5 * slope, size, dtype=np.float32)
        brightness = rng.uniform(0.75, 1.15)
        light = brightness * (1.0 + np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
        factor = light * (1.0 + shade)
    np.multiply(out, factor[..., None], out=out)
    if rng is not None:
        np.multiply(out, rng.uniform(0.9, 1.1, 3).astype(np.float32), out=out)
        if rng.random() < 0.2:
            cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.9) * size / 128, dst=out)
        y, x = rng.integers(0, size, 2)
        cv2.scaleAdd(_noise(size)[y : y + size, x : x + size], rng.uniform(0.0, 4.0), out, out)
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)
