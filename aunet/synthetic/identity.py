"""A synthetic subject's identity: face shape, skin, hair, eyes and accessories, drawn at random."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Colour = tuple[float, float, float]


# Skin tones from light to dark (RGB), interpolated by Identity sampling.
_SKIN_TONES = np.array(
    [
        (250, 221, 196),
        (236, 192, 160),
        (220, 170, 130),
        (196, 136, 98),
        (160, 108, 74),
        (118, 78, 52),
        (84, 56, 40),
    ],
    dtype=np.float64,
)


_HAIR_COLOURS = np.array(
    [(28, 24, 22), (58, 40, 30), (96, 66, 44), (176, 146, 98), (150, 148, 146), (136, 70, 40)],
    dtype=np.float64,
)


_IRIS_COLOURS = np.array(
    [(84, 56, 38), (48, 34, 26), (78, 108, 146), (88, 110, 78), (108, 114, 120)],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Identity:
    """One synthetic subject's face: proportions (face-frame units) and appearance.

    Sample one with :func:`sample_identity`; :func:`mean_identity` is the average face.
    """

    # Face outline.
    cheek_width: float = 1.0  # x of landmarks 0/16
    jaw_top: float = -0.24  # y of landmarks 0/16
    chin: float = 1.06  # y of landmark 8
    jaw_square: float = 2.5  # superellipse exponent of the jaw line (2 = ellipse)
    head_top: float = -1.42  # y of the top of the skull
    # Eyes and brows.
    eye_y: float = -0.30
    eye_gap: float = 0.44  # x of each eye's centre
    eye_width: float = 0.42
    eye_height: float = 0.155
    eye_tilt: float = 0.01  # outer corner above the inner one
    brow_gap: float = 0.23  # brow top above the eye centre
    brow_arch: float = 0.05
    brow_thickness: float = 0.06
    # Nose and mouth.
    nose_tip: float = 0.11
    nose_base: float = 0.20
    nose_width: float = 0.20
    mouth_y: float = 0.47
    mouth_width: float = 0.37  # half width, corner to centre
    upper_lip: float = 0.075
    lower_lip: float = 0.10
    # How far the AUs move this face (people differ in how strongly an AU shows).
    expressivity: float = 1.0
    # Appearance.
    skin: Colour = (220.0, 170.0, 130.0)
    lips: Colour = (190.0, 110.0, 100.0)
    brow_colour: Colour = (60.0, 42.0, 32.0)
    hair_colour: Colour = (58.0, 40.0, 30.0)
    iris_colour: Colour = (84.0, 56.0, 38.0)
    clothes: Colour = (60.0, 80.0, 120.0)
    hair_style: int = 1  # 0 none, 1 short, 2 long
    hairline: float = -1.02
    glasses: bool = False
    age: float = 0.2  # 0-1: depth of the wrinkles a face shows at rest
    # AU17's chin dimpling pattern: points in the unit disc, fixed per subject.
    chin_dots: tuple[tuple[float, float], ...] = field(default=((0.0, 0.0),))


def mean_identity() -> Identity:
    """The average face: every proportion at the middle of its range, no glasses."""
    rng = np.random.default_rng(0)
    return Identity(chin_dots=_chin_dots(rng))


def _chin_dots(rng: np.random.Generator, count: int = 14) -> tuple[tuple[float, float], ...]:
    radius = np.sqrt(rng.uniform(0.05, 1.0, count))
    angle = rng.uniform(0.0, 2 * np.pi, count)
    points = np.round(np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), 4)
    return tuple((float(x), float(y)) for x, y in points)


def _pick_colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> Colour:
    colour = palette[rng.integers(len(palette))] + rng.normal(0.0, jitter, 3)
    return tuple(float(c) for c in np.clip(colour, 0, 255))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a random face: shape, feature proportions, skin tone, hair, glasses, age."""
    u = rng.uniform
    tone = u(0.0, len(_SKIN_TONES) - 1)
    low = int(tone)
    high = min(low + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[low] + (tone - low) * (_SKIN_TONES[high] - _SKIN_TONES[low])
    skin = np.clip(skin * u(0.94, 1.06, 3), 0, 255)
    lips = np.clip(skin * np.array([0.92, 0.62, 0.62]) + np.array([20.0, 0.0, 4.0]), 0, 255)
    hair = np.array(_pick_colour(rng, _HAIR_COLOURS, 8.0))
    # Brows darker than the skin whatever the hair colour, as real brows read against skin.
    brow = np.minimum(hair * 0.85, skin * 0.45)
    nose_tip = u(0.07, 0.15)
    mouth_base = nose_tip + u(0.07, 0.10)
    return Identity(
        cheek_width=u(0.95, 1.04),
        jaw_top=u(-0.30, -0.18),
        chin=u(0.98, 1.14),
        jaw_square=u(2.1, 3.0),
        head_top=u(-1.50, -1.36),
        eye_y=u(-0.34, -0.26),
        eye_gap=u(0.41, 0.47),
        eye_width=u(0.38, 0.46),
        eye_height=u(0.13, 0.18),
        eye_tilt=u(-0.02, 0.035),
        brow_gap=u(0.20, 0.26),
        brow_arch=u(0.025, 0.07),
        brow_thickness=u(0.045, 0.075),
        nose_tip=nose_tip,
        nose_base=mouth_base,
        nose_width=u(0.17, 0.24),
        mouth_y=mouth_base + u(0.24, 0.30),
        mouth_width=u(0.32, 0.42),
        upper_lip=u(0.06, 0.09),
        lower_lip=u(0.08, 0.12),
        expressivity=u(0.9, 1.1),
        skin=tuple(float(c) for c in skin),
        lips=tuple(float(c) for c in lips),
        brow_colour=tuple(float(c) for c in brow),
        hair_colour=tuple(float(c) for c in hair),
        iris_colour=_pick_colour(rng, _IRIS_COLOURS, 6.0),
        clothes=tuple(float(c) for c in u(20, 235, 3)),
        hair_style=int(rng.choice(3, p=(0.15, 0.55, 0.30))),
        hairline=u(-1.15, -0.95),
        glasses=bool(rng.random() < 0.15),
        age=u(0.0, 0.5),
        chin_dots=_chin_dots(rng),
    )
