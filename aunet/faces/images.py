"""Image files to RGB arrays: one decoder for stored crops, dataset frames and inference inputs."""

from __future__ import annotations

import os

import cv2
import numpy as np

# OpenCV >= 4.11 decodes straight to RGB, saving a BGR -> RGB pass over every image.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_rgb(data: np.ndarray | bytes) -> np.ndarray | None:
    """Decode image file bytes (JPEG, PNG, ...) to RGB uint8; None if OpenCV cannot."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    buffer = np.asarray(buffer, dtype=np.uint8)
    if not buffer.size:
        return None
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if image is None or _IMREAD_RGB is not None:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, error: type[Exception] = ValueError) -> np.ndarray:
    """An image file as RGB uint8 (grey and 16-bit images converted).

    Read as bytes and decoded, because OpenCV's ``imread`` fails on non-ASCII paths.

    Raises:
        error: (the caller's error class) naming the file, when it cannot be read or decoded.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as failure:
        raise error(f"{path}: cannot read image ({failure.strerror or failure})") from None
    image = decode_rgb(data)
    if image is None:
        raise error(f"{path}: not a readable image")
    return image
