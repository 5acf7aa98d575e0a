"""Inference inputs: videos, image files and folders of images, decoded one frame at a time."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from aunet.faces.images import read_image
from aunet.faces.video import frame_count, read_frames

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


#: Timestamps of a video whose container declares no frame rate (OpenFace's default too).
DEFAULT_FPS = 30.0


class InputError(ValueError):
    """A bad input file, folder or option; the message names it."""


class Frame(NamedTuple):
    """One decoded frame: 1-based number within its source, time (s), file and RGB pixels."""

    number: int
    timestamp: float
    file: Path
    image: np.ndarray


@dataclass(frozen=True)
class Source:
    """A video, or a sequence of images (a folder's, or one image file given alone)."""

    path: Path
    images: tuple[Path, ...] | None = None

    @property
    def is_video(self) -> bool:
        """True for a video file."""
        return self.images is None

    def count(self) -> int | None:
        """Frames to expect (a video's declared count, which may be missing)."""
        return frame_count(self.path) if self.images is None else len(self.images)

    def frames(self) -> Iterator[Frame]:
        """Decode the frames in order, one at a time.

        Videos: ``timestamp = (frame - 1) / fps`` as OpenFace writes it. Images: timestamp 0.
        """
        if self.images is None:
            fps = video_fps(self.path)
            for index, image in enumerate(read_frames(self.path)):
                yield Frame(index + 1, index / fps, self.path, image)
        else:
            for index, path in enumerate(self.images):
                yield Frame(index + 1, 0.0, path, read_image(path, InputError))


def video_fps(path: Path) -> float:
    """The frame rate the container declares, or :data:`DEFAULT_FPS`."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS


def _natural_key(path: Path) -> list[int | str]:
    """Sort ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def collect_sources(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    """Check the inputs and make each a :class:`Source`.

    A folder is its images (:data:`IMAGE_SUFFIXES`, not recursive) in natural name order.

    Raises:
        InputError: for a missing input, a file that is neither an image nor a video, an
            image or video that cannot be opened, or a folder without images.
    """
    if not inputs:
        raise InputError("no input given: pass video files, image files or folders")
    sources = []
    for given in map(Path, inputs):
        suffix = given.suffix.lower()
        if given.is_dir():
            images = sorted(
                (p for p in given.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                key=_natural_key,
            )
            if not images:
                raise InputError(
                    f"{given}: folder holds no images (expected {', '.join(IMAGE_SUFFIXES)}; "
                    "pass videos as inputs themselves)"
                )
            sources.append(Source(given, tuple(images)))
        elif not given.exists():
            raise InputError(f"{given}: no such file or folder")
        elif suffix in VIDEO_SUFFIXES:
            frame_count(given)  # opens it: a damaged video fails here, before any work
            sources.append(Source(given))
        elif suffix in IMAGE_SUFFIXES:
            if not cv2.haveImageReader(str(given)):
                raise InputError(f"{given}: not a readable image (damaged or unsupported)")
            sources.append(Source(given, (given,)))
        else:
            raise InputError(
                f"{given}: neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
    return sources


#: The stages whose time the final line reports.
STAGES = ("decode", "detect", "crop", "forward", "write")


@dataclass
class Stopwatch:
    """Seconds spent per stage (:data:`STAGES`), wall clock."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def iterate(self, items: Iterator[Frame], stage: str) -> Iterator[Frame]:
        """Yield from ``items``, timing each ``next`` (decoding happens there) as ``stage``."""
        while True:
            with self(stage):
                item = next(items, None)
            if item is None:
                return
            yield item
