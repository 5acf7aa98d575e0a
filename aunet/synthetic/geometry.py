"""Geometry of the synthetic faces: identities, the 68 landmarks, AU deformations and head pose.

Everything here lives in one canonical *face frame*: x to the image right, y down, z towards the
camera, in units of half the face width (landmarks 0 and 16 sit near x = -1 and x = +1). A face
is built in three steps, each a pure function so the renderer and the tests see the same points:

1. :func:`neutral_landmarks` places the 68 iBUG points (0-based) from an :class:`Identity`'s
   proportions;
2. :func:`face_landmarks` moves them by the 12 DISFA AU intensities, each AU displacing the points
   that FACS says its muscle moves (brows for AU1/2/4, upper lids for AU5, lower lids for AU6,
   nose and upper lip for AU9, lip corners for AU12/15/20, chin and lower lip for AU17, lips and
   jaw for AU25/26);
3. :func:`projection` turns a :class:`Pose` into one 2 x 4 matrix that maps face-frame points
   (x, y, z, 1) to output pixels: a rotation (yaw, pitch, roll), an orthographic projection, and
   the square crop that ``data_prep`` takes around real faces (the landmarks' bounding box
   enlarged by a margin, Sec. 5.3: "tightly cropped").

Pixel coordinates follow OpenCV: pixel (row i, column j) has its centre at (x, y) = (j, i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from aunet.aus import DATASET_AUS, FLIP_PERMUTATION, MAX_INTENSITY, NUM_LANDMARKS
from aunet.synthetic.identity import Identity

#: The AUs the synthetic faces carry, in label order (DISFA's twelve).
SYNTHETIC_AUS: tuple[str, ...] = DATASET_AUS["synthetic"]
#: Each synthetic AU's column in an intensity vector.
AU_INDEX = {name: k for k, name in enumerate(SYNTHETIC_AUS)}


@dataclass(frozen=True)
class Pose:
    """Head pose, crop and eye state of one frame.

    Attributes:
        roll: in-plane rotation, degrees (positive turns the face clockwise on screen).
        yaw: out-of-plane turn, degrees; the face frame is orthographically projected, so yaw
            squashes the far half of the face.
        pitch: nod, degrees.
        margin: side of the square crop over the larger side of the landmarks' bounding box.
        shift_x: crop centre offset from the box centre, in crop sides (moves the face in the
            image the other way).
        shift_y: as ``shift_x``, vertically.
        gaze_x: iris offset in the eye, -1 (image left) to 1 (image right).
        gaze_y: iris offset, -1 (up) to 1 (down).
        blink: eyelid closure, 0 (open) to 1 (closed); not an AU label (DISFA has no AU45).
    """

    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    margin: float = 1.3
    shift_x: float = 0.0
    shift_y: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    blink: float = 0.0


def _mirror(left: np.ndarray) -> np.ndarray:
    """Fill the image-right half of a 68 x 2 array from its image-left half (x negated)."""
    points = left.copy()
    for index, partner in enumerate(FLIP_PERMUTATION):
        if partner != index and left[index, 0] < 0:
            points[partner] = (-left[index, 0], left[index, 1])
    return points


def neutral_landmarks(identity: Identity) -> np.ndarray:
    """The 68 landmarks (face frame, 68 x 2 float64) of a face at rest (all AUs at 0)."""
    f = identity
    p = np.zeros((NUM_LANDMARKS, 2))
    # Jaw 0..8 (image left to chin): a superellipse quadrant from the ear to the chin.
    phi = np.linspace(0.0, np.pi / 2, 9)
    exponent = 2.0 / f.jaw_square
    p[0:9, 0] = -f.cheek_width * np.cos(phi) ** exponent
    p[0:9, 1] = f.jaw_top + (f.chin - f.jaw_top) * np.sin(phi) ** exponent
    p[8, 0] = 0.0
    # Left brow 17 (outer) .. 21 (inner), on the brow's upper edge; arch peaks over the iris.
    eye_x = -f.eye_gap
    outer = eye_x - f.eye_width / 2 - 0.07
    inner = eye_x + f.eye_width / 2 - 0.01
    p[17:22, 0] = np.linspace(outer, inner, 5)
    p[17:22, 1] = f.eye_y - f.brow_gap - f.brow_arch * np.array([-0.6, 0.5, 1.0, 0.8, 0.4])
    # Nose bridge 27..30 down the midline to the tip; base 31..33 (left half and centre).
    p[27:31, 1] = f.eye_y + (f.nose_tip - f.eye_y) * np.array([0.05, 0.35, 0.67, 1.0])
    p[31] = (-f.nose_width, f.nose_base - 0.03)
    p[32] = (-f.nose_width * 0.5, f.nose_base)
    p[33] = (0.0, f.nose_base + 0.015)
    # Left eye: 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid.
    half, h = f.eye_width / 2, f.eye_height
    p[36] = (eye_x - half, f.eye_y - f.eye_tilt)
    p[37] = (eye_x - half / 3, f.eye_y - 0.55 * h)
    p[38] = (eye_x + half / 3, f.eye_y - 0.55 * h)
    p[39] = (eye_x + half, f.eye_y)
    p[40] = (eye_x + half / 3, f.eye_y + 0.45 * h)
    p[41] = (eye_x - half / 3, f.eye_y + 0.45 * h)
    # Mouth: outer lip 48 (left corner), 49-51 upper, 57-59 lower; inner lip 60-62, 66-67.
    w, y = f.mouth_width, f.mouth_y
    p[48] = (-w, y)
    p[49] = (-0.55 * w, y - 0.75 * f.upper_lip)
    p[50] = (-0.22 * w, y - 1.05 * f.upper_lip)
    p[51] = (0.0, y - 0.88 * f.upper_lip)
    p[59] = (-0.55 * w, y + 0.75 * f.lower_lip)
    p[58] = (-0.22 * w, y + 1.0 * f.lower_lip)
    p[57] = (0.0, y + 1.05 * f.lower_lip)
    p[60] = (-0.86 * w, y + 0.003)
    p[61] = (-0.35 * w, y - 0.006)
    p[62] = (0.0, y - 0.004)
    p[67] = (-0.35 * w, y + 0.006)
    p[66] = (0.0, y + 0.004)
    return _mirror(p)


# How each AU moves the landmarks at intensity 5, in face-frame units: (landmark, dx, dy) for the
# image-left half and the midline; the right half mirrors it. Magnitudes are chosen so that a
# researcher sees intensity 1, 3 and 5 apart at 128 px (docs/synthetic-faces.md); directions are
# FACS's (Ekman, Friesen & Hager 2002), with "outward" = -x and "up" = -y on the left half.
_AU_SHIFTS: dict[str, tuple[tuple[int, float, float], ...]] = {
    # Inner brow raiser (frontalis, pars medialis): inner brow ends up, brows oblique.
    "AU01": ((21, 0.0, -0.15), (20, 0.0, -0.10), (19, 0.0, -0.05), (18, 0.0, -0.02)),
    # Outer brow raiser (frontalis, pars lateralis): outer brows up, arched.
    "AU02": ((17, -0.01, -0.12), (18, 0.0, -0.13), (19, 0.0, -0.085), (20, 0.0, -0.035)),
    # Brow lowerer (corrugator, procerus): brows down and together, upper lids slightly lowered.
    "AU04": (
        (21, 0.055, 0.10),
        (20, 0.035, 0.09),
        (19, 0.02, 0.07),
        (18, 0.01, 0.05),
        (17, 0.0, 0.03),
        (37, 0.0, 0.015),
        (38, 0.0, 0.02),
    ),
    # Upper lid raiser (levator palpebrae): upper lids up, sclera shows above the iris.
    "AU05": ((37, 0.0, -0.1), (38, 0.0, -0.1), (36, 0.0, -0.01), (39, 0.0, -0.01)),
    # Cheek raiser (orbicularis oculi, pars orbitalis): lower lids pushed up, cheeks bulge out.
    "AU06": (
        (40, 0.0, -0.045),
        (41, 0.0, -0.05),
        (36, 0.005, -0.01),
        (48, -0.01, -0.012),
        (1, -0.012, -0.01),
        (2, -0.015, -0.01),
    ),
    # Nose wrinkler (levator labii superioris alaeque nasi): nose base and upper lip up, nostrils
    # flared, inner brows pulled down a little.
    "AU09": (
        (31, -0.02, -0.05),
        (32, -0.01, -0.045),
        (33, 0.0, -0.04),
        (30, 0.0, -0.02),
        (29, 0.0, -0.01),
        (49, 0.0, -0.025),
        (50, 0.0, -0.04),
        (51, 0.0, -0.045),
        (61, 0.0, -0.035),
        (62, 0.0, -0.04),
        (21, 0.01, 0.035),
        (20, 0.0, 0.02),
    ),
    # Lip corner puller (zygomaticus major): corners up and out.
    "AU12": (
        (48, -0.075, -0.07),
        (60, -0.065, -0.06),
        (49, -0.03, -0.035),
        (59, -0.035, -0.03),
        (61, -0.02, -0.02),
        (67, -0.02, -0.02),
        (50, -0.01, -0.01),
        (58, -0.01, -0.01),
        (3, -0.015, 0.0),
        (4, -0.01, 0.0),
    ),
    # Lip corner depressor (depressor anguli oris): corners down.
    "AU15": (
        (48, 0.015, 0.075),
        (60, 0.012, 0.065),
        (49, 0.005, 0.03),
        (59, 0.005, 0.035),
        (61, 0.0, 0.015),
        (67, 0.0, 0.02),
        (58, 0.0, 0.015),
        (57, 0.0, 0.01),
    ),
    # Chin raiser (mentalis): chin boss up, lower lip pushed up against the upper one.
    "AU17": (
        (8, 0.0, -0.065),
        (7, 0.0, -0.05),
        (6, 0.0, -0.025),
        (57, 0.0, -0.065),
        (58, 0.0, -0.055),
        (59, 0.0, -0.03),
        (66, 0.0, -0.035),
        (67, 0.0, -0.03),
        (51, 0.0, -0.02),
        (50, 0.0, -0.018),
        (62, 0.0, -0.02),
        (61, 0.0, -0.018),
        (48, 0.0, 0.015),
        (60, 0.0, 0.012),
    ),
    # Lip stretcher (risorius, platysma): corners pulled sideways, lips flattened.
    "AU20": (
        (48, -0.10, 0.02),
        (60, -0.09, 0.02),
        (49, -0.045, 0.012),
        (59, -0.045, 0.0),
        (50, -0.015, 0.015),
        (51, 0.0, 0.015),
        (61, -0.02, 0.008),
        (67, -0.02, -0.005),
        (58, -0.015, -0.015),
        (57, 0.0, -0.02),
        (4, -0.01, 0.0),
        (5, -0.01, 0.0),
    ),
    # Lips part: inner lips separate, the lower lip drops a little with the chin.
    "AU25": (
        (61, 0.0, -0.025),
        (62, 0.0, -0.025),
        (67, 0.0, 0.085),
        (66, 0.0, 0.09),
        (59, 0.0, 0.05),
        (58, 0.0, 0.075),
        (57, 0.0, 0.075),
        (6, 0.0, 0.01),
        (7, 0.0, 0.02),
        (8, 0.0, 0.025),
    ),
    # Jaw drop: the mandible swings down about the ear; the lower lip rides on it.
    "AU26": (
        (8, 0.0, 0.20),
        (7, 0.0, 0.185),
        (6, 0.0, 0.15),
        (5, 0.0, 0.11),
        (4, 0.0, 0.07),
        (3, 0.0, 0.035),
        (2, 0.0, 0.012),
        (57, 0.0, 0.16),
        (58, 0.0, 0.155),
        (59, 0.0, 0.12),
        (66, 0.0, 0.16),
        (67, 0.0, 0.15),
        (48, 0.01, 0.04),
        (60, 0.01, 0.04),
    ),
}
_OUTER_LOWER_LIP = (55, 56, 57, 58, 59)
_INNER_LOWER_LIP = (65, 66, 67)


@cache
def _au_displacements() -> np.ndarray:
    """12 x 68 x 2 landmark displacements at intensity 5, in SYNTHETIC_AUS order."""
    shifts = np.zeros((len(SYNTHETIC_AUS), NUM_LANDMARKS, 2))
    for name, moves in _AU_SHIFTS.items():
        left = np.zeros((NUM_LANDMARKS, 2))
        for index, dx, dy in moves:
            left[index] = (dx, dy)
        right = np.zeros_like(left)
        for index, partner in enumerate(FLIP_PERMUTATION):
            right[partner] = (-left[index, 0], left[index, 1]) if partner != index else 0.0
        shifts[AU_INDEX[name]] = left + right
    shifts.setflags(write=False)
    return shifts


def check_intensities(intensities: np.ndarray | list[float]) -> np.ndarray:
    """Return ``intensities`` as a float64 array of the 12 synthetic AUs, checked.

    Raises:
        ValueError: for a wrong length or a value outside 0-5.
    """
    values = np.asarray(intensities, dtype=np.float64)
    if values.shape != (len(SYNTHETIC_AUS),):
        raise ValueError(
            f"intensities must hold the {len(SYNTHETIC_AUS)} AUs {SYNTHETIC_AUS}, got shape "
            f"{values.shape}"
        )
    if not np.all((values >= 0) & (values <= MAX_INTENSITY)):
        raise ValueError(f"intensities must lie in 0-5, got {values.tolist()}")
    return values


def face_landmarks(identity: Identity, intensities: np.ndarray, blink: float = 0.0) -> np.ndarray:
    """The 68 face-frame landmarks of ``identity`` showing the 12 AU ``intensities`` (0-5).

    Intensities act linearly (displacement = intensity / 5 x the AU's full displacement, scaled
    by the identity's expressivity), except that AU26 moves the lower lip fully only when AU25
    parts the lips: a jaw drop with closed lips stretches the lower lip instead of opening the
    mouth. Lips and lids never cross.
    """
    values = check_intensities(intensities)
    weights = values / MAX_INTENSITY
    shifts = _au_displacements()
    apart = min(1.0, values[AU_INDEX["AU25"]])  # lips fully apart from AU25 intensity 1
    jaw = np.ones(NUM_LANDMARKS)
    jaw[list(_OUTER_LOWER_LIP)] = 0.3 + 0.7 * apart
    jaw[list(_INNER_LOWER_LIP)] = apart
    k26 = AU_INDEX["AU26"]
    moved = np.tensordot(weights, shifts, axes=1) - weights[k26] * shifts[k26] * (1 - jaw)[:, None]
    p = neutral_landmarks(identity) + identity.expressivity * moved
    # The lips: inner lower at or below inner upper, each lip keeps some thickness.
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        p[lower, 1] = max(p[lower, 1], p[upper, 1])
    lower_pairs = ((66, 57, 0.55), (67, 58, 0.5), (65, 56, 0.5), (67, 59, 0.3), (65, 55, 0.3))
    for inner, outer, share in lower_pairs:
        p[outer, 1] = max(p[outer, 1], p[inner, 1] + share * identity.lower_lip)
    for inner, outer, share in ((62, 51, 0.45), (61, 50, 0.5), (63, 52, 0.5)):
        p[outer, 1] = min(p[outer, 1], p[inner, 1] - share * identity.upper_lip)
    # The lids: a blink lowers the upper lid onto the lower one; they never cross, and a raised
    # lid (AU5) stays below a lowered brow (AU4).
    for brow, lids in (
        (slice(17, 22), ((37, 41), (38, 40))),
        (slice(22, 27), ((43, 47), (44, 46))),
    ):
        order = np.argsort(p[brow, 0])
        for upper, lower in lids:
            closed = p[lower, 1] - 0.01
            above = np.interp(p[upper, 0], p[brow, 0][order], p[brow, 1][order])
            lowest = above + identity.brow_thickness + 0.02
            p[upper, 1] = min(max(p[upper, 1], lowest), closed)
            p[upper, 1] += blink * (closed - p[upper, 1])
    return p


def depth(points: np.ndarray, identity: Identity) -> np.ndarray:
    """Height of the face surface (z, towards the camera) under face-frame points (N x 2)."""
    x, y = points[:, 0], points[:, 1]
    head = 0.8 * np.sqrt(np.clip(1.0 - (x / 1.08) ** 2, 0.0, 1.0))
    # The nose: a ridge rising from the eyes to the tip, falling off below the base.
    span = identity.nose_tip - identity.eye_y
    rise = np.clip((y - identity.eye_y) / span, 0.0, 1.0)
    fall = np.clip(
        1.0 - (y - identity.nose_tip) / (identity.nose_base - identity.nose_tip + 0.04), 0, 1
    )
    ridge = 0.32 * np.where(y <= identity.nose_tip, rise, fall)
    nose = ridge * np.exp(-((x / (0.75 * identity.nose_width)) ** 2))
    return head + nose


def rotation(pose: Pose) -> np.ndarray:
    """3 x 3 rotation of the face frame: yaw about y, then pitch about x, then roll about z."""
    yaw, pitch, roll = (math.radians(a) for a in (pose.yaw, pose.pitch, pose.roll))
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return r_roll @ r_pitch @ r_yaw


def projection(landmarks: np.ndarray, identity: Identity, pose: Pose, size: int) -> np.ndarray:
    """The 2 x 4 matrix from face-frame (x, y, z, 1) to pixels of a ``size`` x ``size`` crop.

    The crop is the square of side ``pose.margin`` x the larger side of the bounding box of
    ``landmarks`` once rotated, centred on the box (offset by ``pose.shift_x``/``shift_y``), as
    ``data_prep`` crops real faces.
    """
    rotated = rotation(pose)[:2]
    xyz = np.column_stack([landmarks, depth(landmarks, identity)])
    flat = xyz @ rotated.T
    low, high = flat.min(axis=0), flat.max(axis=0)
    side = pose.margin * float(np.max(high - low))
    centre = (low + high) / 2 + side * np.array([pose.shift_x, pose.shift_y])
    scale = size / side
    matrix = np.empty((2, 4))
    matrix[:, :3] = scale * rotated
    matrix[:, 3] = (size - 1) / 2 - scale * centre
    return matrix


def to_pixels(points: np.ndarray, identity: Identity, matrix: np.ndarray) -> np.ndarray:
    """Map face-frame points (N x 2; z from :func:`depth`) to pixels with a :func:`projection`."""
    return points @ matrix[:, :2].T + np.outer(depth(points, identity), matrix[:, 2]) + matrix[:, 3]
