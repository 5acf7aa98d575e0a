"""Resizing and augmenting face crops together with their 68 landmarks (Sec. 5.3).

Both paths take an RGB uint8 crop of side A (the store's) and its 68 x 2 float32 landmarks and
return an S x S crop (S, the network input side, any size) and the landmarks in its pixels.

- Evaluation: :class:`Resize`, the crop resized to S (area-averaged when shrinking).
- Training: :class:`TrainAugmentation`, the augmentation of Sec. 5.3 as one albumentations
  pipeline: :class:`FaceAffine`, a single ``cv2.warpAffine`` that flips (probability 0.5),
  rotates (uniform in +-30 degrees), scales (uniform in 0.8-1.2), optionally translates, and
  resizes to S; then colour jitter (``A.ColorJitter``) and random occlusion (one
  ``A.CoarseDropout`` rectangle of a random colour). The paper names the five augmentations and
  the rotation and scale ranges; the flip probability, jitter strength and occlusion size and
  probability are ours (:class:`AugmentConfig`).

Coordinates put pixel centres on integers (pixel row i, column j is x = j, y = i): the
convention of ``cv2.warpAffine``, of ``cv2.resize`` and of albumentations' keypoints, whose
horizontal flip maps x to A - 1 - x, exactly where the mirrored pixel goes. In it a resize from
side A to side S maps x to (x + 0.5) S / A - 0.5.

Flips: mirroring a face turns its left eye into the right one, so after mirroring the
coordinates the 68 points are re-indexed with :data:`aunet.aus.FLIP_PERMUTATION` (the step
albumentations' own ``HorizontalFlip`` lacks). AU labels need no change: every AU of these
datasets is scored for the whole face, and the left/right Gaussians of Table 1 are placed from
the re-indexed landmarks, so they swap with them.

All 68 points are kept wherever they land (``remove_invisible=False``), and unknown (NaN)
landmarks stay NaN through every step (``tests/data/test_augment.py`` checks both).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.type_definitions import Targets

from aunet.aus import FLIP_PERMUTATION

_FLIP = np.asarray(FLIP_PERMUTATION)


class Transform(Protocol):
    """What :class:`aunet.data.dataset.FrameDataset` calls on every crop."""

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map an RGB uint8 crop and its 68 x 2 landmarks to the network's input."""
        ...


def resize_points(points: np.ndarray, source: int, target: int) -> np.ndarray:
    """Landmarks of a square crop of side ``source`` in the same crop resized to ``target``."""
    if source == target:
        return points
    return (points + 0.5) * np.float32(target / source) - 0.5


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """A square crop resized to ``size``: area-averaged when shrinking, else bilinear."""
    side = image.shape[0]
    if side == size:
        return image
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def face_affine(
    source: int,
    target: int,
    angle: float = 0.0,
    scale: float = 1.0,
    flip: bool = False,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The 2 x 3 matrix taking a crop of side ``source`` to the augmented crop of side ``target``.

    About the crop centres: mirror x (if ``flip``), rotate by ``angle`` degrees (counter-clockwise
    on screen, as ``cv2.getRotationMatrix2D``), zoom by ``scale`` (> 1 enlarges the face), resize
    by ``target / source``, then move by ``shift`` output pixels. With the defaults it is the
    exact resize ``x -> (x + 0.5) target / source - 0.5``.
    """
    radians = math.radians(angle)
    cos, sin = math.cos(radians), math.sin(radians)
    linear = scale * target / source * np.array([[cos, sin], [-sin, cos]])
    if flip:
        linear[:, 0] *= -1.0  # mirror first: x - c -> c - x about the source centre
    source_centre = np.full(2, (source - 1) / 2.0)
    offset = (target - 1) / 2.0 + np.asarray(shift, dtype=float) - linear @ source_centre
    return np.hstack([linear, offset[:, None]])


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (Sec. 5.3); ``0`` switches one augmentation off.

    Args:
        flip: probability of a horizontal flip (with the landmark re-indexing).
        rotation: largest rotation, degrees; the angle is uniform in ``[-rotation, rotation]``
            (the paper: 30).
        scale: range of the uniform zoom factor (the paper: 0.8-1.2).
        translation: largest shift on each axis as a fraction of the side (the paper lists no
            translation, so none by default).
        color_jitter: brightness, contrast and saturation factors are drawn uniformly from
            ``[1 - color_jitter, 1 + color_jitter]`` (torchvision's ``ColorJitter`` semantics).
        hue: largest hue shift as a fraction of the colour circle (0 by default: hue shifts turn
            skin unnatural colours, and they double the jitter's cost).
        occlusion: probability of one occluding rectangle of a random colour.
        occlusion_size: range of the rectangle's height and width, fractions of the side.
    """

    flip: float = 0.5
    rotation: float = 30.0
    scale: tuple[float, float] = (0.8, 1.2)
    translation: float = 0.0
    color_jitter: float = 0.2
    hue: float = 0.0
    occlusion: float = 0.5
    occlusion_size: tuple[float, float] = (0.1, 0.4)

    def __post_init__(self) -> None:
        checks = {
            "flip": 0.0 <= self.flip <= 1.0,
            "rotation": 0.0 <= self.rotation <= 180.0,
            "scale": 0.0 < self.scale[0] <= self.scale[1],
            "translation": 0.0 <= self.translation < 0.5,
            "color_jitter": 0.0 <= self.color_jitter < 1.0,
            "hue": 0.0 <= self.hue <= 0.5,
            "occlusion": 0.0 <= self.occlusion <= 1.0,
            "occlusion_size": 0.0 < self.occlusion_size[0] <= self.occlusion_size[1] <= 1.0,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"augmentation settings out of range: {', '.join(bad)} (flip and occlusion are "
                "probabilities, 0 < scale low <= high, translation < 0.5, color_jitter < 1, "
                "hue <= 0.5, 0 < occlusion_size low <= high <= 1, rotation in degrees)"
            )


class FaceAffine(A.DualTransform):
    """Flip, rotation, zoom, shift and resize to ``size`` x ``size`` in one warp (Sec. 5.3).

    One ``cv2.warpAffine`` (bilinear, black border) does all the geometry, so the crop is
    interpolated once. A crop larger than ``size`` is first shrunk to ``size`` by area
    averaging, as the evaluation path does, because a bilinear warp that shrinks aliases.
    Landmarks go through the same matrix and, on a flip, are re-indexed by
    :data:`aunet.aus.FLIP_PERMUTATION`; all of them are kept wherever they land.

    Args:
        size: output side S.
        flip: probability of a horizontal flip.
        rotation: largest rotation, degrees.
        scale: zoom factor range.
        translation: largest shift, fraction of ``size``.
        p: probability of applying the transform; keep 1, since it also resizes.
    """

    _targets = (Targets.IMAGE, Targets.KEYPOINTS)

    def __init__(
        self,
        size: int,
        flip: float = 0.5,
        rotation: float = 30.0,
        scale: Sequence[float] = (0.8, 1.2),
        translation: float = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.size = int(size)
        self.flip = float(flip)
        self.rotation = float(rotation)
        self.scale = (float(scale[0]), float(scale[1]))
        self.translation = float(translation)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Draw one flip, angle, zoom and shift; return the warp for this crop's size."""
        side = params["shape"][0]
        warped_side = min(side, self.size)
        flip = self.py_random.random() < self.flip
        angle = self.py_random.uniform(-self.rotation, self.rotation)
        scale = self.py_random.uniform(*self.scale)
        reach = self.translation * self.size
        shift = (self.py_random.uniform(-reach, reach), self.py_random.uniform(-reach, reach))
        matrix = face_affine(warped_side, self.size, angle, scale, flip, shift)
        return {"matrix": matrix, "flip": flip, "warped_side": warped_side}

    def apply(
        self, img: np.ndarray, matrix: np.ndarray, warped_side: int, **params: Any
    ) -> np.ndarray:
        """Warp the (shrunk, if larger than the output) crop to ``size`` x ``size``."""
        return cv2.warpAffine(
            resize_image(img, warped_side),
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )

    def apply_to_keypoints(
        self,
        keypoints: np.ndarray,
        matrix: np.ndarray,
        flip: bool,
        warped_side: int,
        **params: Any,
    ) -> np.ndarray:
        """Move the points with the image and, on a flip, swap left and right indices."""
        points = resize_points(keypoints[:, :2], params["shape"][0], warped_side)
        moved = keypoints.copy()
        moved[:, :2] = points @ matrix[:, :2].T + matrix[:, 2]
        return moved[_FLIP] if flip else moved

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names shown by ``repr`` and used by albumentations' serialisation."""
        return ("size", "flip", "rotation", "scale", "translation")


class TrainAugmentation:
    """The training transform of Sec. 5.3: :class:`FaceAffine`, colour jitter, occlusion.

    Albumentations keeps its own random state, which ignores ``torch``/``numpy``/``random``
    seeding and which every forked ``DataLoader`` worker would inherit identically (all workers
    drawing the same augmentations). So the pipeline is reseeded once in each process, on its
    first call, from ``torch.initial_seed()``: in a worker that is the per-worker seed that
    PyTorch (or Lightning's ``seed_everything(workers=True)``, which also mixes in the rank)
    derives from the main process's seed; in the main process it is that seed. Runs are then
    reproducible given the seed, and workers differ. One generator is shared by the whole
    pipeline: albumentations' ``set_random_seed`` would give every transform its own generator
    with the same seed, so that, e.g., the flip and the jitter would draw the same numbers.

    Args:
        size: output side S.
        config: the augmentation settings.
    """

    def __init__(self, size: int, config: AugmentConfig | None = None) -> None:
        config = config or AugmentConfig()
        self.size = int(size)
        self.config = config
        transforms: list[A.BasicTransform] = [
            FaceAffine(size, config.flip, config.rotation, config.scale, config.translation)
        ]
        if config.color_jitter or config.hue:
            strength = (max(0.0, 1.0 - config.color_jitter), 1.0 + config.color_jitter)
            transforms.append(
                A.ColorJitter(strength, strength, strength, (-config.hue, config.hue), p=1.0)
            )
        if config.occlusion:
            transforms.append(
                A.CoarseDropout(
                    num_holes_range=(1, 1),
                    hole_height_range=config.occlusion_size,
                    hole_width_range=config.occlusion_size,
                    fill="random_uniform",
                    p=config.occlusion,
                )
            )
        self.pipeline = A.Compose(
            transforms, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)
        )
        self._seeded_in: int | None = None

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment one crop and its landmarks; returns an S x S uint8 crop and 68 x 2 float32."""
        if self._seeded_in != os.getpid():
            self.seed(torch.initial_seed())
        out = self.pipeline(image=image, keypoints=landmarks)
        return out["image"], np.asarray(out["keypoints"], dtype=np.float32)

    def seed(self, seed: int) -> None:
        """Restart the pipeline's random stream from ``seed`` (in this process)."""
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        self._seeded_in = os.getpid()


class Resize:
    """The evaluation transform: the crop resized to ``size`` x ``size``, landmarks with it.

    Args:
        size: output side S.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize one crop; landmarks follow the pixel centres."""
        side = image.shape[0]
        return resize_image(image, self.size), resize_points(landmarks, side, self.size)
