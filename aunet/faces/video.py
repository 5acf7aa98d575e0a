"""Video frames with OpenCV, in decoding order, as RGB uint8 arrays.

Frame k of :func:`read_frames` (counting from 1) is the frame that 1-based label files such as
DISFA's call frame k.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np


class VideoError(ValueError):
    """A video that cannot be opened or decoded; the message names the file."""


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(
            f"{path}: OpenCV cannot open this video (unknown or damaged container/codec)"
        )
    return capture


def frame_count(path: str | os.PathLike) -> int | None:
    """The number of frames the container declares, or None where it declares none.

    This is metadata, cheap to read but only as good as the file; :func:`read_frames` counts
    what actually decodes.

    Raises:
        VideoError: if the file is missing or cannot be opened.
    """
    capture = _open(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return count if count > 0 else None


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield every frame of a video as H x W x 3 RGB uint8, in decoding order.

    Raises:
        VideoError: if the file is missing, cannot be opened, or yields no frame at all.
    """
    capture = _open(path)
    try:
        decoded = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            decoded += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if decoded == 0:
            raise VideoError(f"{path}: OpenCV opened the video but decoded no frame")
    finally:
        capture.release()
