"""The square face crop: the one definition shared by data preparation and inference.

A crop is fixed by 68 landmarks: a square box centred on the centre of the landmarks' bounding
box, whose side is the longer side of that bounding box times ``1 + margin``, resampled to
``size x size`` pixels by a single :func:`cv2.warpAffine` (bilinear), after a Gaussian
low-pass of the source when it shrinks by more than a little, so that fine texture (wrinkles,
furrows) does not alias. The paper (Sec. 5.3) only says the
faces are "tightly cropped to 256x256"; the default margin of 0.5 reproduces the scale of the
authors' released crop (their ``AUmaps.transform`` pins the chin and the outer eye corners to
fixed points of a 256 x 256 image; on ``skimage.data.astronaut()`` that makes the landmarks'
box 1.53 times smaller than the image) and keeps the jaw and brows inside the image under the
training augmentation (rotation up to 30 degrees, scale 0.8-1.2).

Coordinates are OpenCV's: (x, y) with the centre of pixel (i, j) at x = j, y = i. The box's
centre maps to the crop's centre ``(size - 1) / 2``; parts of the box outside the image are
black.

Example:
    >>> image = np.zeros((100, 120, 3), np.uint8)
    >>> landmarks = np.array([[40.0, 30.0], [80.0, 70.0]])
    >>> crop = crop_face(image, landmarks, size=64, margin=0.0)
    >>> crop.image.shape, crop.landmarks.tolist()
    ((64, 64, 3), [[-0.5, -0.5], [63.5, 63.5]])
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

#: Side of the stored face crops (Sec. 5.3: 256 x 256).
DEFAULT_SIZE = 256
#: Extra side length as a fraction of the landmarks' bounding box (see the module docstring).
DEFAULT_MARGIN = 0.5
# Below this anti-aliasing sigma (a shrink to about 2/3 size or less) the blur changes nothing
# visible and is skipped.
_MIN_SIGMA = 0.25


class CropBox(NamedTuple):
    """A square region of the source image: centre (x, y) and side, in source pixels."""

    x: float
    y: float
    side: float


class FaceCrop(NamedTuple):
    """A face crop, its landmarks in crop pixels, and the source -> crop affine map.

    ``affine`` is the 2 x 3 matrix A with ``crop_xy = A[:, :2] @ source_xy + A[:, 2]``;
    :func:`invert_affine` maps crop points (e.g. predicted AU locations) back to the source.
    """

    image: np.ndarray
    landmarks: np.ndarray
    affine: np.ndarray


def face_box(landmarks: np.ndarray, margin: float = DEFAULT_MARGIN) -> CropBox:
    """The crop box of a face from its landmarks (NaN points are ignored).

    Args:
        landmarks: P x 2 (x, y) points in source pixels, usually the 68 iBUG points.
        margin: extra side as a fraction of the longer side of the landmarks' bounding box.

    Raises:
        ValueError: if no landmark is finite or the margin is not above -1.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("cannot place a face crop: no finite landmark")
    if margin <= -1:
        raise ValueError(f"crop margin must be above -1, got {margin}")
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    # A single point (or a degenerate line) still gets a 1-pixel box rather than a zero division.
    side = max(float((high - low).max()), 1.0) * (1 + margin)
    return CropBox(float(centre[0]), float(centre[1]), side)


def crop_affine(box: CropBox, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The 2 x 3 affine map from source pixels to the pixels of a ``size x size`` crop of ``box``.

    The box's edges ``x ± side / 2`` land on the crop's outer pixel edges (-0.5 and
    ``size - 0.5``), so its centre lands on ``(size - 1) / 2``.
    """
    scale = size / box.side
    offset = (size - 1) / 2
    return np.array(
        [[scale, 0.0, offset - scale * box.x], [0.0, scale, offset - scale * box.y]],
        dtype=np.float64,
    )


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine map to (..., 2) points; NaN points stay NaN."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine map (crop -> source for a crop's ``affine``)."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    box: CropBox | None = None,
) -> FaceCrop:
    """Crop the face that ``landmarks`` outline to a ``size x size`` square.

    Args:
        image: H x W x C (or H x W) source image; RGB uint8 in aunet.
        landmarks: P x 2 source-pixel (x, y) points; NaN rows stay NaN in the result.
        size: side of the crop in pixels.
        margin: see :func:`face_box`.
        box: a crop box to use instead of the one the landmarks give (e.g. a perturbed box for
            a robustness study); ``margin`` is then ignored.

    Returns:
        The crop, the landmarks in crop pixels (float32) and the source -> crop affine map.
    """
    if box is None:
        box = face_box(landmarks, margin)
    affine = crop_affine(box, size)
    source, origin = _antialiased_region(image, box, size / box.side)
    shifted = affine.copy()
    shifted[:, 2] += affine[:, :2] @ origin  # the region's pixel (0, 0) is the source's `origin`
    pixels = cv2.warpAffine(
        source,
        shifted,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    points = transform_points(landmarks, affine).astype(np.float32)
    return FaceCrop(pixels, points, affine)


def _antialiased_region(
    image: np.ndarray, box: CropBox, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` under ``box``, low-passed for a resampling by ``scale``.

    Bilinear sampling below half size skips pixels and aliases; a Gaussian of
    sigma = (1 / scale - 1) / 2 (scikit-image's anti-aliasing rule) removes the frequencies the
    crop cannot hold. Only the region the crop reads is filtered, so a small face in a large
    frame costs little. Returns the region and the source (x, y) of its pixel (0, 0).
    """
    sigma = (1 / scale - 1) / 2
    if sigma < _MIN_SIGMA:
        return image, np.zeros(2)
    pad = box.side / 2 + 3 * sigma + 2
    height, width = image.shape[:2]
    x0, x1 = max(int(box.x - pad), 0), min(int(np.ceil(box.x + pad)) + 1, width)
    y0, y1 = max(int(box.y - pad), 0), min(int(np.ceil(box.y + pad)) + 1, height)
    if x0 >= x1 or y0 >= y1:  # the box lies wholly outside the image: the crop is black
        return image, np.zeros(2)
    region = cv2.GaussianBlur(image[y0:y1, x0:x1], (0, 0), sigma)
    return region, np.array([x0, y0], dtype=np.float64)
