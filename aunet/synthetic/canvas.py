"""The synthetic faces' drawing primitives: curves, ellipses, tones, an anti-aliased canvas."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from aunet.synthetic.geometry import to_pixels
from aunet.synthetic.identity import Colour, Identity

SHIFT = 4  # OpenCV fixed-point bits: coordinates at 1/16 pixel


AA = cv2.LINE_AA


SCLERA = (238.0, 234.0, 226.0)


TEETH = (236.0, 232.0, 216.0)


MOUTH = (62.0, 20.0, 24.0)


PUPIL = (18.0, 14.0, 14.0)


@cache
def spline_matrix(count: int, samples: int, closed: bool) -> np.ndarray:
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


def curve(points: np.ndarray, samples: int = 5, closed: bool = False) -> np.ndarray:
    """A smooth curve through ``points`` (N x 2), ``samples`` points per segment."""
    return spline_matrix(len(points), samples, closed) @ points


@cache
def unit_circle(count: int) -> np.ndarray:
    """``count`` points evenly spaced on the unit circle."""
    angle = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def ellipse(centre: np.ndarray, rx: float, ry: float, count: int = 20) -> np.ndarray:
    """An ellipse's outline of ``count`` points, radii ``rx`` and ``ry`` about ``centre``."""
    return np.asarray(centre) + unit_circle(count) * (rx, ry)


def tone(colour: Colour, factor: float) -> Colour:
    """``colour`` scaled by ``factor`` (darker below 1, lighter above)."""
    return (colour[0] * factor, colour[1] * factor, colour[2] * factor)


def darker(colour: Colour, strength: float) -> Colour:
    """``colour`` darkened for a crease of ``strength`` 0-1 (1 = the deepest furrow)."""
    return tone(colour, 1.0 - 0.62 * min(strength, 1.0))


class Canvas:
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
            self.stroke(curve(points, 4), darker(self.identity.skin, strength), width)

    def flush(self) -> None:
        """Project every recorded shape and draw them, in the order they were recorded."""
        if not self._shapes:
            return
        arrays = [points for lines, *_ in self._shapes for points in lines]
        pixels = to_pixels(np.concatenate(arrays), self.identity, self.matrix)
        fixed = np.round(pixels * (1 << SHIFT)).astype(np.int32)
        parts = iter(np.split(fixed, np.cumsum([len(a) for a in arrays])[:-1]))
        for lines, colour, thickness, closed in self._shapes:
            polygons = [next(parts) for _ in lines]
            if thickness == 0:
                cv2.fillPoly(self.image, polygons, colour, AA, SHIFT)
            else:
                cv2.polylines(self.image, polygons, closed, colour, thickness, AA, SHIFT)
        self._shapes.clear()
