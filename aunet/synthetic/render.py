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

from aunet.synthetic.geometry import (
    MAX_INTENSITY,
    SYNTHETIC_AUS,
    Colour,
    Identity,
    Pose,
    check_intensities,
    face_landmarks,
    neutral_landmarks,
    projection,
    to_pixels,
)

_SHIFT = 4  # OpenCV fixed-point bits: coordinates at 1/16 pixel
_AA = cv2.LINE_AA
_SCLERA = (238.0, 234.0, 226.0)
_TEETH = (236.0, 232.0, 216.0)
_MOUTH = (62.0, 20.0, 24.0)
_PUPIL = (18.0, 14.0, 14.0)
#: Probability that a cluttered frame gets an occluder (hand, object or bar) over the face.
OCCLUSION_PROBABILITY = 0.12


@cache
def _spline_matrix(count: int, samples: int, closed: bool) -> np.ndarray:
    """Catmull-Rom interpolation through ``count`` points as one matrix: curve = M @ points."""
    t = np.arange(samples) / samples
    basis = 0.5 * np.stack(
        [-(t**3) + 2 * t**2 - t, 3 * t**3 - 5 * t**2 + 2, -3 * t**3 + 4 * t**2 + t, t**3 - t**2],
        axis=1,
    )
    segments = count if closed else count - 1
    matrix = np.zeros((segments * samples + (0 if closed else 1), count))
    for s in range(segments):
        for j, i in enumerate((s - 1, s, s + 1, s + 2)):
            column = i % count if closed else min(max(i, 0), count - 1)
            matrix[s * samples : (s + 1) * samples, column] += basis[:, j]
    if not closed:
        matrix[-1, -1] = 1.0
    return matrix


def _curve(points: np.ndarray, samples: int = 5, closed: bool = False) -> np.ndarray:
    """A smooth curve through ``points`` (N x 2), ``samples`` points per segment."""
    return _spline_matrix(len(points), samples, closed) @ points


@cache
def _unit_circle(count: int) -> np.ndarray:
    angle = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _ellipse(centre: np.ndarray, rx: float, ry: float, count: int = 20) -> np.ndarray:
    return np.asarray(centre) + _unit_circle(count) * (rx, ry)


def _tone(colour: Colour, factor: float) -> Colour:
    return (colour[0] * factor, colour[1] * factor, colour[2] * factor)


def _darker(colour: Colour, strength: float) -> Colour:
    """``colour`` darkened for a crease of ``strength`` 0-1 (1 = the deepest furrow)."""
    return _tone(colour, 1.0 - 0.62 * min(strength, 1.0))


class _Canvas:
    """Records face-frame shapes for one image (RGB uint8 or a float shading layer).

    Shapes are only recorded by :meth:`fill` and :meth:`stroke`; :meth:`flush` projects all their
    points in one call and draws them in order (one projection per frame instead of one per
    shape is most of the renderer's speed).
    """

    def __init__(self, image: np.ndarray, identity: Identity, matrix: np.ndarray) -> None:
        self.image = image
        self.identity = identity
        self.matrix = matrix
        # Pixels per face-frame unit (the projection's scale).
        self.unit = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        self._shapes: list[tuple[list[np.ndarray], Colour | float, int, bool]] = []

    def fill(self, points: np.ndarray, colour: Colour | float) -> None:
        """A filled polygon."""
        self._shapes.append(([points], colour, 0, True))

    def stroke(
        self,
        points: np.ndarray | list[np.ndarray],
        colour: Colour | float,
        width: float,
        closed: bool = False,
    ) -> None:
        """A polyline (or a list of them) ``width`` face units wide (at least one pixel)."""
        lines = points if isinstance(points, list) else [points]
        self._shapes.append((lines, colour, max(1, round(width * self.unit)), closed))

    def crease(self, points: np.ndarray, strength: float, width: float) -> None:
        """A skin crease through ``points``, as dark as ``strength`` (0 draws nothing)."""
        if strength > 0.02:
            self.stroke(_curve(points, 4), _darker(self.identity.skin, strength), width)

    def flush(self) -> None:
        """Project every recorded shape and draw them, in the order they were recorded."""
        if not self._shapes:
            return
        arrays = [points for lines, *_ in self._shapes for points in lines]
        pixels = to_pixels(np.concatenate(arrays), self.identity, self.matrix)
        fixed = np.round(pixels * (1 << _SHIFT)).astype(np.int32)
        parts = iter(np.split(fixed, np.cumsum([len(a) for a in arrays])[:-1]))
        for lines, colour, thickness, closed in self._shapes:
            polygons = [next(parts) for _ in lines]
            if thickness == 0:
                cv2.fillPoly(self.image, polygons, colour, _AA, _SHIFT)
            else:
                cv2.polylines(self.image, polygons, closed, colour, thickness, _AA, _SHIFT)
        self._shapes.clear()


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
        identity: who (see :func:`~aunet.synthetic.geometry.sample_identity`).
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
    face = _Canvas(image, identity, matrix)
    # The soft layer is blurred anyway: draw it at half resolution from 128 px up (4x cheaper).
    low = size // 2 if size >= 128 else size
    shrink = low / size  # pixel centres at integers: p_low = (p + 0.5) * shrink - 0.5
    low_matrix = np.concatenate([matrix[:, :3] * shrink, (matrix[:, 3:] + 0.5) * shrink - 0.5], 1)
    shade = np.zeros((low, low), np.float32)
    light = _Canvas(shade, identity, low_matrix)
    au = dict(zip(SYNTHETIC_AUS, (intensities / MAX_INTENSITY).tolist(), strict=True))
    _draw_body(face, identity, landmarks)
    _draw_shading(light, identity, landmarks, au)
    _draw_wrinkles(face, identity, landmarks, au)
    for first in (36, 42):
        _draw_eye(face, identity, landmarks, pose, au, first)
    _draw_brows(face, identity, landmarks)
    _draw_nose(face, identity, landmarks, au)
    _draw_mouth(face, identity, landmarks)
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
            cv2.fillPoly(image, [corners.round().astype(np.int32)], colour, _AA)
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
                _AA,
            )
        elif kind == 2:  # a bar
            end = centre + rng.normal(0, 0.4, 2) * size
            width = int(rng.integers(1, max(2, size // 16)))
            cv2.line(
                image, centre.astype(int).tolist(), end.astype(int).tolist(), colour, width, _AA
            )
        else:  # a triangle
            corners = centre + rng.normal(0, 1, (3, 2)) * half
            cv2.fillPoly(image, [corners.round().astype(np.int32)], colour, _AA)
    return image


def _cranium(identity: Identity, scale: float, drop: float, count: int = 15) -> np.ndarray:
    """The skull's outline from the right temple over the top to the left (face frame)."""
    t = np.linspace(0.0, np.pi, count)
    top, bottom = identity.head_top - 0.06 * (scale - 1), identity.jaw_top - drop
    x = scale * identity.cheek_width * (1.0 - 0.05 * np.sin(t)) * np.cos(t)
    return np.stack([x, bottom + (top - bottom) * np.sin(t)], axis=1)


def _head(identity: Identity, p: np.ndarray) -> np.ndarray:
    """The head's outline: the jaw landmarks 0-16 closed by the skull."""
    return np.concatenate([p[0:17], _cranium(identity, 1.0, 0.0)[1:-1]])


def _draw_body(c: _Canvas, f: Identity, p: np.ndarray) -> None:
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
    c.fill(neck, _tone(f.skin, 0.86))
    c.fill(clothes, f.clothes)
    if f.hair_style == 2:
        back = np.array([(-1.12, -0.6), (-1.25, 0.5), (-1.2, chin + 0.55), (-0.62, chin + 0.5)])
        back = np.concatenate([back, back[::-1] * (-1, 1)])
        c.fill(back, _tone(f.hair_colour, 0.85))
    for side in (-1.0, 1.0):
        ear = _ellipse((side * (f.cheek_width - 0.03), f.jaw_top + 0.06), 0.11, 0.21, 16)
        c.fill(ear, _tone(f.skin, 0.93))
        inner = _ellipse((side * f.cheek_width, f.jaw_top + 0.06), 0.05, 0.13, 12)[3:10]
        c.stroke(inner, _tone(f.skin, 0.72), 0.015)
    c.fill(_head(f, p), f.skin)
    if f.hair_style:
        side = np.array(
            [
                (-0.97 * f.cheek_width, f.jaw_top - 0.22),
                (-0.86, f.hairline + 0.26),
                (-0.55, f.hairline + 0.07),
                (0.0, f.hairline),
            ]
        )
        hairline = _curve(np.concatenate([side, side[-2::-1] * (-1, 1)]), 4)
        c.fill(np.concatenate([_cranium(f, 1.06, 0.2), hairline]), f.hair_colour)


def _draw_shading(c: _Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """Soft light and shadow (blurred later): face relief and the AUs' bulges and shadows."""
    chin = f.chin
    c.fill(np.array([(-0.56, 0.3), (-0.58, chin + 0.3), (0.58, chin + 0.3), (0.56, 0.3)]), -0.3)
    # The face darkens towards its edges (it turns away from the camera there).
    head = _head(f, p)
    c.fill(head, -0.12)
    c.fill(head * (0.82, 0.86), 0.0)
    for eye, corner in ((range(36, 42), 31), (range(42, 48), 35)):
        middle = p[list(eye)].mean(axis=0)
        # AU4: the lowered brows shade the upper lids.
        c.fill(
            _ellipse(middle - (0, 0.04 + 0.02 * au["AU04"]), 0.25, 0.13), -0.08 - 0.22 * au["AU04"]
        )
        # AU6 raises and lifts the cheek; AU12 bulges it.
        cheek = (middle * 0.55 + p[corner] * 0.45) + (0.0, 0.08 - 0.06 * au["AU06"])
        c.fill(_ellipse(cheek, 0.17, 0.11), 0.03 + 0.1 * au["AU06"] + 0.05 * au["AU12"])
    for side, base in ((-1.0, 31), (1.0, 35)):
        bridge = (p[28] + p[base]) / 2 + (side * 0.02, -0.02)
        c.fill(_ellipse(bridge, 0.035, 0.16 * (p[base, 1] - p[27, 1]) / 0.45), -0.1)
    c.fill(_ellipse(p[28], 0.06, 0.05), -0.12 * au["AU09"])
    c.fill(_ellipse(p[30] - (0, 0.02), 0.05, 0.04), 0.1)
    c.fill(_ellipse((0.0, (p[57, 1] + p[8, 1]) / 2 - 0.04), 0.16, 0.05), -0.06 - 0.22 * au["AU17"])
    c.fill(_ellipse((0.0, p[8, 1] - 0.12), 0.13, 0.07), 0.14 * au["AU17"])
    c.fill(_ellipse((0.0, p[57, 1] - 0.035), 0.09, 0.025), 0.08)  # lower-lip highlight
    for side, corner in ((-1.0, 48), (1.0, 54)):
        c.fill(_ellipse(p[corner] + (side * 0.13, -0.12), 0.1, 0.09), 0.12 * au["AU12"])
        c.fill(_ellipse(p[corner] + (0.0, 0.08), 0.07, 0.07), -0.22 * au["AU15"])
        c.fill(_ellipse(p[corner] + (side * 0.06, 0.02), 0.05, 0.08), -0.16 * au["AU20"])


def _interp_brows(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    brows = p[17:27]
    order = np.argsort(brows[:, 0])
    return np.interp(x, brows[order, 0], brows[order, 1])


def _draw_wrinkles(c: _Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """The AUs' creases, furrows and wrinkles, deeper and longer as the intensity grows."""
    a1, a2, a4, a6, a9 = au["AU01"], au["AU02"], au["AU04"], au["AU06"], au["AU09"]
    a12, a15, a17, a20 = au["AU12"], au["AU15"], au["AU17"], au["AU20"]
    rest = 0.25 * f.age
    # AU1 central and AU2 lateral forehead lines, following the brows up.
    for k in range(3):
        fade, offset = 1.0 - 0.28 * k, 0.11 + 0.075 * k
        half = 0.1 + 0.17 * a1
        x = np.linspace(-half, half, 5)
        y = _interp_brows(p, x) - offset - 0.02 * np.cos(x / half * np.pi / 2)
        c.crease(np.stack([x, y], 1), fade * (0.75 * a1 + rest), 0.018)
        for side in (-1.0, 1.0):
            x = side * np.linspace(0.24, 0.36 + 0.32 * a2, 4)
            y = _interp_brows(p, x) - offset + 0.01
            c.crease(np.stack([x, y], 1), fade * (0.75 * a2 + rest), 0.018)
    # AU4 vertical glabellar furrows between the brows (closer as the brows come together).
    middle = (p[21] + p[22]) / 2
    gap = abs(p[22, 0] - p[21, 0]) / 2
    for side in (-1.0, 1.0):
        x = middle[0] + side * 0.3 * gap
        top = middle[1] - 0.05 - 0.08 * a4
        points = np.array([(x, top), (x + side * 0.012, middle[1] + 0.03), (x, middle[1] + 0.08)])
        c.crease(points, 0.9 * a4 + 0.3 * rest, 0.02)
    # AU6 crow's-feet fanning from the outer eye corners and the infraorbital furrow.
    for side, corner, lid in ((-1.0, 36, (39, 40, 41, 36)), (1.0, 45, (42, 47, 46, 45))):
        start = p[corner] + (side * 0.045, 0.0)
        length = 0.03 + 0.075 * a6
        lines = []
        for angle in (-0.5, 0.0, 0.5):
            direction = np.array([side * np.cos(angle), np.sin(angle)])
            begin = start + np.array([0.0, 0.03 * angle])
            lines.append(begin + np.outer(np.linspace(0.0, length, 3), direction))
        if a6 + rest > 0.02:
            c.stroke(lines, _darker(f.skin, 0.75 * a6 + 0.5 * rest), 0.014)
        furrow = p[list(lid)][1:3] + np.array([0.0, 0.075 - 0.01 * a6])
        furrow = np.concatenate(
            [[p[lid[0]] + (-side * 0.03, 0.06)], furrow, [p[corner] + (side * 0.02, 0.06)]]
        )
        c.crease(furrow, 0.5 * a6 + 0.3 * rest, 0.014)
    # AU9 wrinkles across the nose bridge and up its sides; the procerus crease.
    for j in range(3):
        y = p[27, 1] + (p[29, 1] - p[27, 1]) * (0.1 + 0.33 * j)
        half = 0.045 + 0.02 * j + 0.02 * a9
        c.crease(
            np.array([(-half, y + 0.012), (0.0, y - 0.004), (half, y + 0.012)]), 0.95 * a9, 0.016
        )
    for side, base in ((-1.0, 31), (1.0, 35)):
        c.crease(
            np.array([p[base] + (side * 0.005, -0.05), p[29] + (side * 0.06, 0.02)]),
            0.6 * a9,
            0.016,
        )
    c.crease(
        np.array([(-0.06, p[27, 1] - 0.03), (0.06, p[27, 1] - 0.03)]), 0.7 * a9 + 0.2 * a4, 0.018
    )
    # Nasolabial folds (deepened by AU12, AU6 and AU9); AU15 marionette lines; AU20 creases.
    fold = min(1.0, 0.12 + rest + 0.5 * a12 + 0.2 * a6 + 0.25 * a9)
    for side, base, corner in ((-1.0, 31, 48), (1.0, 35, 54)):
        start = p[base] + (side * 0.035, -0.075)
        end = p[corner] + (side * 0.06, 0.06)
        bend = start * 0.5 + end * 0.5 + (side * (0.03 + 0.015 * a12), -0.01)
        c.crease(np.array([start, bend, end]), fold, 0.014 + 0.008 * a12)
        c.crease(
            np.array(
                [
                    p[corner] + (side * 0.02, 0.025),
                    p[corner] + (side * 0.035, 0.08),
                    p[corner] + (side * 0.03, 0.09 + 0.08 * a15),
                ]
            ),
            0.9 * a15 + 0.3 * rest,
            0.018,
        )
        c.crease(
            np.array(
                [
                    p[corner] + (side * 0.05, -0.05),
                    p[corner] + (side * 0.075, 0.0),
                    p[corner] + (side * 0.055, 0.05),
                ]
            ),
            0.85 * a20,
            0.018,
        )
        c.crease(
            np.array(
                [p[corner] + (side * 0.02, 0.13), p[corner] + (side * 0.2, p[6, 1] - p[corner, 1])]
            ),
            0.6 * a20,
            0.016,
        )
    # AU17 mentolabial furrow below the lower lip and dimpling of the chin boss.
    top = p[57, 1] + 0.35 * (p[8, 1] - p[57, 1])
    width, curl = 0.12 + 0.04 * a17, 0.02 + 0.045 * a17
    c.crease(
        np.array([(-width, top - curl), (0.0, top), (width, top - curl)]), 0.25 + 0.65 * a17, 0.018
    )
    if a17 > 0.02:
        centre = np.array([0.0, (top + p[8, 1]) / 2])
        radius = np.array([0.14, 0.4 * (p[8, 1] - top)])
        dots = centre + np.asarray(f.chin_dots) * radius
        c.stroke(
            [np.stack([d, d + np.array([0.012, 0.004])]) for d in dots],
            _darker(f.skin, 0.8 * a17),
            0.012,
        )


def _draw_eye(
    c: _Canvas, f: Identity, p: np.ndarray, pose: Pose, au: dict[str, float], first: int
) -> None:
    """One eye: lid crease, sclera, iris and pupil clipped by the lids, lashes, lower lid."""
    upper = _curve(p[[first, first + 1, first + 2, first + 3]])
    lower = _curve(p[[first + 3, first + 4, first + 5, first]])
    opening = np.concatenate([upper, lower[1:-1]])
    # The crease sits on the orbit; AU5 pulls the lid up under it, closing the gap and hiding it.
    raised = 0.1 * f.expressivity * au["AU05"]
    crease = upper[3:-3] - (0.0, max(0.012, 0.05 - 0.7 * raised))
    c.stroke(crease, _darker(f.skin, 0.45 * (1.0 - 0.7 * au["AU05"])), 0.014)
    c.fill(opening, _SCLERA)
    left, right = upper[0, 0], upper[-1, 0]
    centre = np.array(
        [
            (left + right) / 2 + pose.gaze_x * 0.2 * (right - left) / 2,
            (p[first, 1] + p[first + 3, 1]) / 2 + pose.gaze_y * 0.25 * f.eye_height,
        ]
    )
    radius = 0.21 * f.eye_width

    def clipped(r: float) -> np.ndarray:
        circle = _ellipse(centre, r, r, 24)
        x = np.clip(circle[:, 0], left, right)
        top = np.interp(x, upper[:, 0], upper[:, 1])
        bottom = np.interp(x, lower[::-1, 0], lower[::-1, 1])
        return np.stack([x, np.clip(circle[:, 1], top, np.maximum(top, bottom))], 1)

    c.fill(clipped(radius), f.iris_colour)
    c.fill(clipped(0.42 * radius), _PUPIL)
    glint = centre + (-0.3, -0.35) * np.array(radius)
    if np.interp(glint[0], upper[:, 0], upper[:, 1]) < glint[1] - 0.01:
        c.fill(_ellipse(glint, 0.12 * radius, 0.12 * radius, 8), (250.0, 250.0, 250.0))
    c.stroke(upper, _tone(f.brow_colour, 0.6), 0.028)
    c.stroke(lower, _tone(f.skin, 0.7), 0.012)


def _draw_brows(c: _Canvas, f: Identity, p: np.ndarray) -> None:
    """Both brows: the landmarks are their upper edge; thickest at the inner end."""
    profile = f.brow_thickness * np.array([0.55, 0.85, 1.0, 1.05, 1.1])
    for indices, thickness in ((range(17, 22), profile), (range(22, 27), profile[::-1])):
        top = p[list(indices)]
        bottom = top + np.stack([np.zeros(5), thickness], 1)
        c.fill(np.concatenate([_curve(top, 4), _curve(bottom, 4)[::-1]]), f.brow_colour)


def _draw_nose(c: _Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """Nostrils (flared by AU9) and the alar creases."""
    flare = 1.0 + 0.4 * au["AU09"]
    for side, wing, inner in ((-1.0, 31, 32), (1.0, 35, 34)):
        nostril = (p[wing] * 0.45 + p[inner] * 0.55) - (0.0, 0.012)
        c.fill(_ellipse(nostril, 0.045 * flare, 0.018 * flare, 12), _tone(f.skin, 0.38))
        ala = p[wing] + np.array(
            [
                (side * -0.02, 0.0),
                (side * 0.02, -0.02),
                (side * 0.015, -0.06),
                (side * -0.02, -0.085),
            ]
        )
        c.stroke(_curve(ala, 4), _tone(f.skin, 0.72), 0.014)


def _draw_mouth(c: _Canvas, f: Identity, p: np.ndarray) -> None:
    """Lips; when parted, the dark interior with upper (and lower) teeth."""
    c.fill(_curve(p[48:60], 5, closed=True), f.lips)
    outer_upper = _curve(p[48:55])
    inner_upper = _curve(p[60:65])
    inner_lower = _curve(p[[60, 67, 66, 65, 64]])
    c.fill(np.concatenate([outer_upper, inner_upper[::-1]]), _tone(f.lips, 0.86))
    gap = inner_lower[:, 1] - inner_upper[:, 1]
    if gap.max() > 0.004:
        c.fill(np.concatenate([inner_upper, inner_lower[::-1]]), _MOUTH)
        middle = slice(2, -2)
        top = inner_upper[middle]
        teeth = top + np.stack([np.zeros(len(top)), np.minimum(0.05, 0.75 * gap[middle])], 1)
        c.fill(np.concatenate([top, teeth[::-1]]), _TEETH)
        if gap.max() > 0.1:
            bottom = inner_lower[middle]
            lower = bottom - np.stack(
                [np.zeros(len(bottom)), np.minimum(0.03, 0.25 * gap[middle])], 1
            )
            c.fill(np.concatenate([lower, bottom[::-1]]), _tone(_TEETH, 0.9))
        c.stroke(inner_lower, _tone(f.lips, 0.5), 0.012)
    c.stroke(inner_upper, _tone(f.lips, 0.45), 0.016)


def _draw_glasses(c: _Canvas, f: Identity) -> None:
    """Thin dark frames fixed to the face (not to the moving lids)."""
    frame = (28.0, 26.0, 26.0)
    corners = _unit_circle(24)
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


def _draw_occluder(
    canvases: tuple[_Canvas, _Canvas], f: Identity, rng: np.random.Generator
) -> None:
    """A hand, an object or a bar over part of the face (never all of it)."""
    face, light = canvases
    kind = int(rng.integers(3))
    target = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 1.0)])
    if kind == 0:  # a hand reaching in from below or the side
        angle = rng.uniform(0.2 * np.pi, 0.8 * np.pi) * rng.choice((-1.0, 1.0))
        away = np.array([np.cos(angle), abs(np.sin(angle))])
        palm = target + 0.45 * away
        colour = _tone(f.skin, rng.uniform(0.85, 1.05))
        shapes = [(_ellipse(palm, 0.26, 0.3), None)]
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
