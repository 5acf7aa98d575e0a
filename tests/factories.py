"""Test data makers: plausible 68-point faces and tiny frame stores, as plain functions.

Shared by the data, model and training tests (``from factories import write_store``; pytest puts
``tests/`` on the import path). Everything is small and deterministic given a seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from aunet.aus import DATASET_AUS, FLIP_PERMUTATION
from aunet.data.store_writer import FrameStoreWriter

# The face's left half (image left) and midline in unit coordinates (x right, y down), iBUG
# order; the right half is its mirror image through FLIP_PERMUTATION.
_HALF_FACE: dict[int, tuple[float, float]] = {
    **{
        i: (0.5 - 0.4 * np.cos(np.pi * i / 16), 0.4 + 0.55 * np.sin(np.pi * i / 16))
        for i in range(9)  # jaw, 0 (left temple) to 8 (chin)
    },
    17: (0.18, 0.33), 18: (0.23, 0.29), 19: (0.29, 0.28), 20: (0.35, 0.29), 21: (0.41, 0.31),
    27: (0.5, 0.38), 28: (0.5, 0.45), 29: (0.5, 0.51), 30: (0.5, 0.58),
    31: (0.42, 0.63), 32: (0.46, 0.645), 33: (0.5, 0.65),
    36: (0.24, 0.42), 37: (0.29, 0.39), 38: (0.35, 0.39), 39: (0.40, 0.42), 40: (0.35, 0.45),
    41: (0.29, 0.45),
    48: (0.36, 0.78), 49: (0.41, 0.75), 50: (0.46, 0.73), 51: (0.5, 0.74), 57: (0.5, 0.86),
    58: (0.45, 0.85), 59: (0.40, 0.83),
    60: (0.39, 0.78), 61: (0.45, 0.77), 62: (0.5, 0.77), 66: (0.5, 0.80), 67: (0.45, 0.80),
}  # fmt: skip


def _unit_face() -> np.ndarray:
    face = np.full((68, 2), np.nan)
    for index, point in _HALF_FACE.items():
        face[index] = point
    for index, mirror in enumerate(FLIP_PERMUTATION):
        if np.isnan(face[index]).any():
            face[index] = (1.0 - face[mirror][0], face[mirror][1])
    return face


_UNIT_FACE = _unit_face()


def template_landmarks(size: int) -> np.ndarray:
    """A frontal, left-right symmetric 68-point face filling a ``size`` x ``size`` crop.

    Symmetric under the flip: mirroring x to ``size - 1 - x`` and re-indexing by
    ``FLIP_PERMUTATION`` gives the same points (so a flip test must move the face off-centre).
    """
    return (_UNIT_FACE * (size - 1)).astype(np.float32)


def face_landmarks(
    size: int, rng: np.random.Generator, jitter: float = 0.01, shift: float = 0.05
) -> np.ndarray:
    """The template moved by up to ``shift`` and each point by ``jitter`` (fractions of size)."""
    offset = rng.uniform(-shift, shift, size=2)
    noise = rng.normal(0.0, jitter, size=(68, 2))
    return ((_UNIT_FACE + offset + noise) * (size - 1)).astype(np.float32)


def draw_face(landmarks: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A simple RGB face: skin-coloured jaw-and-brow polygon, dark eyes, red lips, grey noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 110, size=(size, size, 3), dtype=np.uint8)
    points = np.nan_to_num(landmarks, nan=-1.0)

    def polygon(indices: Iterable[int], colour: tuple[int, int, int]) -> None:
        outline = np.round(points[list(indices)]).astype(np.int32)
        cv2.fillPoly(image, [outline], colour, lineType=cv2.LINE_AA)

    polygon([*range(17), *range(26, 16, -1)], (205, 160, 135))
    polygon(range(36, 42), (40, 30, 30))
    polygon(range(42, 48), (40, 30, 30))
    polygon(range(48, 60), (180, 60, 70))
    return image


def write_store(
    path: str | Path,
    subjects: Sequence[str],
    frames_per_subject: int = 2,
    *,
    dataset: str = "synthetic",
    au_names: Sequence[str] | None = None,
    image_size: int = 32,
    encoding: str = "raw",
    partitions: Mapping[str, str] | None = None,
    no_landmarks: Iterable[int] = (),
    no_labels: Iterable[int] = (),
    seed: int = 0,
) -> Path:
    """Write a tiny frame store: ``frames_per_subject`` drawn faces per subject, in order.

    Args:
        path: the ``.h5`` file to write.
        subjects: subject names; rows are grouped by subject in this order.
        frames_per_subject: frames per subject, numbered 1, 2, ...
        dataset: the store's dataset attribute (decides the DataModule protocol).
        au_names: AU columns (default: the dataset's, or none for an unknown dataset).
        image_size: crop side.
        encoding: ``"raw"`` (fast) or ``"jpeg"``.
        partitions: subject -> ``train``/``devel``/``test``; writes the ``partition`` field.
        no_landmarks: rows whose 68 landmarks are all unknown (NaN).
        no_labels: rows whose intensities are all unknown (NaN).
        seed: for the faces and the intensities (integers 0-5).

    Returns:
        ``path`` as a ``Path``.
    """
    rng = np.random.default_rng(seed)
    names = tuple(DATASET_AUS.get(dataset, ()) if au_names is None else au_names)
    rows = [(subject, frame) for subject in subjects for frame in range(1, frames_per_subject + 1)]
    landmarks = np.stack([face_landmarks(image_size, rng) for _ in rows])
    images = np.stack(
        [draw_face(points, image_size, seed + i) for i, points in enumerate(landmarks)]
    )
    landmarks[list(no_landmarks)] = np.nan
    au = rng.integers(0, 6, size=(len(rows), len(names))).astype(np.float32)
    au[list(no_labels)] = np.nan
    with FrameStoreWriter(path, dataset, names, image_size, encoding=encoding) as writer:
        writer.append(
            images=images,
            landmarks=landmarks,
            au=au,
            subject=[subject for subject, _ in rows],
            frame=[frame for _, frame in rows],
            partition=None if partitions is None else [partitions[s] for s, _ in rows],
        )
    return Path(path)
