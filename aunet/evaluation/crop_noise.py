"""Test-time crop noise (BMVC 2018): the face crop misaligned by landmark or face-box noise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from torch.utils.data import Dataset

from aunet.data.augment import Resize
from aunet.data.dataset import FrameDataset
from aunet.data.framing import Reframe
from aunet.data.store import FrameStore
from aunet.faces.crop import CropBox, crop_affine, transform_points

if TYPE_CHECKING:
    pass

REFERENCE_SIDE = 256


class RobustnessError(RuntimeError):
    """A study that cannot run as asked; the message names the file and the fix."""


#: The BMVC registration's anchor landmarks: chin, outer corners of the two eyes.
ANCHORS: tuple[int, ...] = (8, 36, 45)


NoiseMode = Literal["landmarks", "box"]


NOISE_MODES: tuple[str, ...] = ("landmarks", "box")


#: Each noise model in words, for titles.
NOISE_NAMES = {"landmarks": "landmark noise", "box": "face-box noise"}


_MIN_SIDE_FRACTION = 0.25


def unit_noise(row: int, seed: int, mode: NoiseMode) -> np.ndarray:
    """A frame's standard-normal noise: 3 x 2 anchor moves (``landmarks``) or 3 box moves."""
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
    rng = np.random.default_rng((seed, row))
    return rng.standard_normal((3, 2)) if mode == "landmarks" else rng.standard_normal(3)


def anchor_affine(anchors: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """The 2 x 3 map from a crop registered by moved anchors to the clean crop's pixels.

    A registration sends its anchors to fixed points; had the anchors been found at
    ``anchors + moves``, the crop would have sent those points where the clean anchors are
    now. Warping the clean crop by this map therefore makes the noisy crop.
    """
    noisy = np.asarray(anchors, np.float64) + moves
    return cv2.getAffineTransform(noisy.astype(np.float32), np.float32(anchors)).astype(np.float64)


def box_affine(side: int, moves: np.ndarray) -> np.ndarray:
    """The 2 x 3 map from a ``side``-pixel crop to the crop of its box moved by ``moves``.

    ``moves`` = (centre x, centre y, side) changes in crop pixels; the crop is its own box.
    """
    centre = (side - 1) / 2
    box = CropBox(
        centre + moves[0], centre + moves[1], max(side + moves[2], _MIN_SIDE_FRACTION * side)
    )
    return crop_affine(box, side)


def perturb_crop(
    image: np.ndarray,
    landmarks: np.ndarray,
    noise: np.ndarray,
    noise_px: float,
    mode: NoiseMode,
    fallback_anchors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A stored crop and its landmarks as a registration with ``noise_px`` noise crops them.

    Args:
        image: A x A x 3 stored crop.
        landmarks: its 68 x 2 landmarks (crop pixels, NaN unknown).
        noise: the frame's :func:`unit_noise`.
        noise_px: the noise standard deviation in pixels of a 256 x 256 crop.
        mode: ``landmarks`` or ``box``.
        fallback_anchors: 3 x 2 anchors for a frame whose own are unknown (``landmarks``).

    Returns:
        The perturbed A x A crop and its landmarks (float32), or the inputs for ``noise_px=0``.
    """
    if noise_px == 0:
        return image, landmarks
    side = image.shape[0]
    moves = noise * (noise_px * side / REFERENCE_SIDE)
    if mode == "box":
        affine = box_affine(side, moves)
    else:
        anchors = landmarks[list(ANCHORS)]
        if not np.isfinite(anchors).all():
            if fallback_anchors is None:
                raise ValueError("the frame's anchor landmarks are unknown and no fallback given")
            anchors = fallback_anchors
        affine = anchor_affine(anchors, moves)
    pixels = cv2.warpAffine(
        image, affine, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return pixels, transform_points(landmarks, affine).astype(np.float32)


def store_fallback_anchors(store: FrameStore) -> np.ndarray:
    """The median anchors (3 x 2) of the store's frames that have them, for those without.

    Raises:
        RobustnessError: naming the store, when no frame has the anchor landmarks.
    """
    anchors = store.read_all("landmarks")[:, list(ANCHORS)]
    known = np.isfinite(anchors).all(axis=(1, 2))
    if not known.any():
        raise RobustnessError(f"{store.path}: no frame has the anchor landmarks")
    store.close()  # DataLoader workers fork: each opens its own handle
    return np.median(anchors[known], axis=0)


class PerturbedFrames(Dataset):
    """Store rows as evaluation samples, each crop perturbed at one noise level.

    The samples are those of :class:`aunet.data.dataset.FrameDataset` with the evaluation
    transform (:class:`aunet.data.augment.Resize`), the perturbation applied before the resize.

    Args:
        store: the frame store.
        rows: the store rows, in order.
        image_size: the network's input side.
        noise_px: noise standard deviation, pixels at 256 x 256.
        mode: ``landmarks`` or ``box``.
        seed: the noise seed.
        fallback_anchors: :func:`store_fallback_anchors` of ``store`` when already known (a
            study builds one dataset per level); read from the store when needed and not given.
        framing: the run's framing (:mod:`aunet.data.framing`), applied before the
            perturbation, so the noise moves the crop the network was trained on.
    """

    def __init__(
        self,
        store: FrameStore,
        rows: np.ndarray,
        image_size: int,
        noise_px: float,
        mode: NoiseMode,
        seed: int,
        fallback_anchors: np.ndarray | None = None,
        framing: str = "store",
    ) -> None:
        self.frames = FrameDataset(store, rows, Reframe(framing))
        self.resize = Resize(image_size)
        self.noise_px = float(noise_px)
        self.mode = mode
        self.seed = seed
        self.fallback_anchors = None
        if mode == "landmarks" and noise_px > 0:
            self.fallback_anchors = (
                store_fallback_anchors(store) if fallback_anchors is None else fallback_anchors
            )

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, item: int) -> dict[str, Any]:
        sample = self.frames[item]
        noise = unit_noise(sample["index"], self.seed, self.mode)
        image, landmarks = perturb_crop(
            sample["image"],
            sample["landmarks"],
            noise,
            self.noise_px,
            self.mode,
            self.fallback_anchors,
        )
        sample["image"], sample["landmarks"] = self.resize(image, landmarks)
        return sample
