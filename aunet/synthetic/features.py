"""The synthetic face's features, each drawn where FACS says its AUs act.

Eyes, brows, nose, mouth, the wrinkles and furrows of each AU, and the soft shading layer (the
table of :mod:`aunet.synthetic.render` says which AU shows where).
"""

from __future__ import annotations

import numpy as np

from aunet.synthetic.canvas import MOUTH, PUPIL, SCLERA, TEETH, Canvas, curve, darker, ellipse, tone
from aunet.synthetic.geometry import Pose
from aunet.synthetic.identity import Identity


def cranium(identity: Identity, scale: float, drop: float, count: int = 15) -> np.ndarray:
    """The skull's outline from the right temple over the top to the left (face frame)."""
    t = np.linspace(0.0, np.pi, count)
    top, bottom = identity.head_top - 0.06 * (scale - 1), identity.jaw_top - drop
    x = scale * identity.cheek_width * (1.0 - 0.05 * np.sin(t)) * np.cos(t)
    return np.stack([x, bottom + (top - bottom) * np.sin(t)], axis=1)


def head_outline(identity: Identity, p: np.ndarray) -> np.ndarray:
    """The head's outline: the jaw landmarks 0-16 closed by the skull."""
    return np.concatenate([p[0:17], cranium(identity, 1.0, 0.0)[1:-1]])


def draw_shading(c: Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """Soft light and shadow (blurred later): face relief and the AUs' bulges and shadows."""
    chin = f.chin
    c.fill(np.array([(-0.56, 0.3), (-0.58, chin + 0.3), (0.58, chin + 0.3), (0.56, 0.3)]), -0.3)
    # The face darkens towards its edges (it turns away from the camera there).
    head = head_outline(f, p)
    c.fill(head, -0.12)
    c.fill(head * (0.82, 0.86), 0.0)
    for eye, corner in ((range(36, 42), 31), (range(42, 48), 35)):
        middle = p[list(eye)].mean(axis=0)
        # AU4: the lowered brows shade the upper lids.
        c.fill(
            ellipse(middle - (0, 0.04 + 0.02 * au["AU04"]), 0.25, 0.13), -0.08 - 0.22 * au["AU04"]
        )
        # AU6 raises and lifts the cheek; AU12 bulges it.
        cheek = (middle * 0.55 + p[corner] * 0.45) + (0.0, 0.08 - 0.06 * au["AU06"])
        c.fill(ellipse(cheek, 0.17, 0.11), 0.03 + 0.1 * au["AU06"] + 0.05 * au["AU12"])
    for side, base in ((-1.0, 31), (1.0, 35)):
        bridge = (p[28] + p[base]) / 2 + (side * 0.02, -0.02)
        c.fill(ellipse(bridge, 0.035, 0.16 * (p[base, 1] - p[27, 1]) / 0.45), -0.1)
    c.fill(ellipse(p[28], 0.06, 0.05), -0.12 * au["AU09"])
    c.fill(ellipse(p[30] - (0, 0.02), 0.05, 0.04), 0.1)
    c.fill(ellipse((0.0, (p[57, 1] + p[8, 1]) / 2 - 0.04), 0.16, 0.05), -0.06 - 0.22 * au["AU17"])
    c.fill(ellipse((0.0, p[8, 1] - 0.12), 0.13, 0.07), 0.14 * au["AU17"])
    c.fill(ellipse((0.0, p[57, 1] - 0.035), 0.09, 0.025), 0.08)  # lower-lip highlight
    for side, corner in ((-1.0, 48), (1.0, 54)):
        c.fill(ellipse(p[corner] + (side * 0.13, -0.12), 0.1, 0.09), 0.12 * au["AU12"])
        c.fill(ellipse(p[corner] + (0.0, 0.08), 0.07, 0.07), -0.22 * au["AU15"])
        c.fill(ellipse(p[corner] + (side * 0.06, 0.02), 0.05, 0.08), -0.16 * au["AU20"])


def interp_brows(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The brows' height at the face-frame abscissae ``x`` (landmarks 17-26, interpolated)."""
    brows = p[17:27]
    order = np.argsort(brows[:, 0])
    return np.interp(x, brows[order, 0], brows[order, 1])


def draw_wrinkles(c: Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """The AUs' creases, furrows and wrinkles, deeper and longer as the intensity grows."""
    a1, a2, a4, a6, a9 = au["AU01"], au["AU02"], au["AU04"], au["AU06"], au["AU09"]
    a12, a15, a17, a20 = au["AU12"], au["AU15"], au["AU17"], au["AU20"]
    rest = 0.25 * f.age
    # AU1 central and AU2 lateral forehead lines, following the brows up.
    for k in range(3):
        fade, offset = 1.0 - 0.28 * k, 0.11 + 0.075 * k
        half = 0.1 + 0.17 * a1
        x = np.linspace(-half, half, 5)
        y = interp_brows(p, x) - offset - 0.02 * np.cos(x / half * np.pi / 2)
        c.crease(np.stack([x, y], 1), fade * (0.75 * a1 + rest), 0.018)
        for side in (-1.0, 1.0):
            x = side * np.linspace(0.24, 0.36 + 0.32 * a2, 4)
            y = interp_brows(p, x) - offset + 0.01
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
            c.stroke(lines, darker(f.skin, 0.75 * a6 + 0.5 * rest), 0.014)
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
            darker(f.skin, 0.8 * a17),
            0.012,
        )


def draw_eye(
    c: Canvas, f: Identity, p: np.ndarray, pose: Pose, au: dict[str, float], first: int
) -> None:
    """One eye: lid crease, sclera, iris and pupil clipped by the lids, lashes, lower lid."""
    upper = curve(p[[first, first + 1, first + 2, first + 3]])
    lower = curve(p[[first + 3, first + 4, first + 5, first]])
    opening = np.concatenate([upper, lower[1:-1]])
    # The crease sits on the orbit; AU5 pulls the lid up under it, closing the gap and hiding it.
    raised = 0.1 * f.expressivity * au["AU05"]
    crease = upper[3:-3] - (0.0, max(0.012, 0.05 - 0.7 * raised))
    c.stroke(crease, darker(f.skin, 0.45 * (1.0 - 0.7 * au["AU05"])), 0.014)
    c.fill(opening, SCLERA)
    left, right = upper[0, 0], upper[-1, 0]
    centre = np.array(
        [
            (left + right) / 2 + pose.gaze_x * 0.2 * (right - left) / 2,
            (p[first, 1] + p[first + 3, 1]) / 2 + pose.gaze_y * 0.25 * f.eye_height,
        ]
    )
    radius = 0.21 * f.eye_width

    def clipped(r: float) -> np.ndarray:
        circle = ellipse(centre, r, r, 24)
        x = np.clip(circle[:, 0], left, right)
        top = np.interp(x, upper[:, 0], upper[:, 1])
        bottom = np.interp(x, lower[::-1, 0], lower[::-1, 1])
        return np.stack([x, np.clip(circle[:, 1], top, np.maximum(top, bottom))], 1)

    c.fill(clipped(radius), f.iris_colour)
    c.fill(clipped(0.42 * radius), PUPIL)
    glint = centre + (-0.3, -0.35) * np.array(radius)
    if np.interp(glint[0], upper[:, 0], upper[:, 1]) < glint[1] - 0.01:
        c.fill(ellipse(glint, 0.12 * radius, 0.12 * radius, 8), (250.0, 250.0, 250.0))
    c.stroke(upper, tone(f.brow_colour, 0.6), 0.028)
    c.stroke(lower, tone(f.skin, 0.7), 0.012)


def draw_brows(c: Canvas, f: Identity, p: np.ndarray) -> None:
    """Both brows: the landmarks are their upper edge; thickest at the inner end."""
    profile = f.brow_thickness * np.array([0.55, 0.85, 1.0, 1.05, 1.1])
    for indices, thickness in ((range(17, 22), profile), (range(22, 27), profile[::-1])):
        top = p[list(indices)]
        bottom = top + np.stack([np.zeros(5), thickness], 1)
        c.fill(np.concatenate([curve(top, 4), curve(bottom, 4)[::-1]]), f.brow_colour)


def draw_nose(c: Canvas, f: Identity, p: np.ndarray, au: dict[str, float]) -> None:
    """Nostrils (flared by AU9) and the alar creases."""
    flare = 1.0 + 0.4 * au["AU09"]
    for side, wing, inner in ((-1.0, 31, 32), (1.0, 35, 34)):
        nostril = (p[wing] * 0.45 + p[inner] * 0.55) - (0.0, 0.012)
        c.fill(ellipse(nostril, 0.045 * flare, 0.018 * flare, 12), tone(f.skin, 0.38))
        ala = p[wing] + np.array(
            [
                (side * -0.02, 0.0),
                (side * 0.02, -0.02),
                (side * 0.015, -0.06),
                (side * -0.02, -0.085),
            ]
        )
        c.stroke(curve(ala, 4), tone(f.skin, 0.72), 0.014)


def draw_mouth(c: Canvas, f: Identity, p: np.ndarray) -> None:
    """Lips; when parted, the dark interior with upper (and lower) teeth."""
    c.fill(curve(p[48:60], 5, closed=True), f.lips)
    outer_upper = curve(p[48:55])
    inner_upper = curve(p[60:65])
    inner_lower = curve(p[[60, 67, 66, 65, 64]])
    c.fill(np.concatenate([outer_upper, inner_upper[::-1]]), tone(f.lips, 0.86))
    gap = inner_lower[:, 1] - inner_upper[:, 1]
    if gap.max() > 0.004:
        c.fill(np.concatenate([inner_upper, inner_lower[::-1]]), MOUTH)
        middle = slice(2, -2)
        top = inner_upper[middle]
        teeth = top + np.stack([np.zeros(len(top)), np.minimum(0.05, 0.75 * gap[middle])], 1)
        c.fill(np.concatenate([top, teeth[::-1]]), TEETH)
        if gap.max() > 0.1:
            bottom = inner_lower[middle]
            lower = bottom - np.stack(
                [np.zeros(len(bottom)), np.minimum(0.03, 0.25 * gap[middle])], 1
            )
            c.fill(np.concatenate([lower, bottom[::-1]]), tone(TEETH, 0.9))
        c.stroke(inner_lower, tone(f.lips, 0.5), 0.012)
    c.stroke(inner_upper, tone(f.lips, 0.45), 0.016)
