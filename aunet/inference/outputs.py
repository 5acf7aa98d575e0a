"""aunet-predict's outputs: checked against its inputs, written atomically; overlays, plots."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from aunet.faces.crop import invert_affine, transform_points
from aunet.files import atomic_path
from aunet.inference.face_finding import Face
from aunet.inference.predictor import Prediction
from aunet.inference.sources import (
    Frame,
    InputError,
    Source,
)
from aunet.visualise import au_panel, frame_overlay, plot_intensities

#: Overlay videos: OpenCV codec per container.
OVERLAY_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same path, through links, or a hard link."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_outputs(
    sources: Sequence[Source], checkpoint: str | os.PathLike, outputs: dict[str, str | None]
) -> None:
    """Refuse, before any work, an output that would overwrite an input or another output.

    Args:
        sources: the inputs (:func:`aunet.inference.sources.collect_sources`).
        checkpoint: the ``--ckpt`` file.
        outputs: flag (``--out``, ``--overlay``, ``--plot``) -> path, None where not given.
            An ``--overlay`` without a video suffix is a folder of PNGs: it may not hold an
            input image or the ``--plot``.

    Raises:
        InputError: naming both flags and the path.
    """
    read = {f"input {path}": path for source in sources for path in source.images or (source.path,)}
    read[f"--ckpt {checkpoint}"] = Path(checkpoint)
    given = {flag: Path(path) for flag, path in outputs.items() if path is not None}
    for flag, path in given.items():
        for name, other in read.items():
            if _same_file(path, other):
                raise InputError(
                    f"{flag} {path}: is the {name}, which writing it would destroy; "
                    "choose another output name"
                )
    flags = list(given)
    for i, first in enumerate(flags):
        for second in flags[i + 1 :]:
            if _same_file(given[first], given[second]):
                raise InputError(
                    f"{first} and {second} are the same file {given[first]}; give each its own"
                )
    folder = given.get("--overlay")
    if folder is not None and folder.suffix.lower() not in OVERLAY_CODECS:
        images = (path for source in sources for path in source.images or ())
        inside = [f"input {path}" for path in images if _same_file(path.parent, folder)]
        if "--plot" in given and _same_file(given["--plot"].parent, folder):
            inside.append(f"--plot {given['--plot']}")
        if inside:
            raise InputError(
                f"--overlay {folder}: is the folder of the {inside[0]}, where the overlay PNGs "
                "would overwrite or mix with it; choose another folder"
            )


class OutputError(OSError):
    """An output that could not be written; the message names it."""


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed to it on success and removed on failure.

    The temporary name keeps the suffix (OpenCV picks a video container from it). Before the
    rename the file is synced to disk, so a write error that the system reports late (a full
    disk, a quota, a network file system) fails the run instead of leaving a damaged file.
    Any failure, Ctrl-C and SIGTERM (:func:`aunet.cli.guards.command_line`) included, removes it.

    Raises:
        InputError: ``target`` is a folder.
        OutputError: naming ``target`` and the system's reason, when it cannot be written.
    """
    if target.is_dir():
        raise InputError(f"{target}: is a folder; expected a file name")
    try:
        with atomic_path(target) as temporary:
            yield temporary
    except OutputError:  # another output's failure, which names that output
        raise
    except OSError as error:
        raise OutputError(
            f"{target}: cannot be written ({error.strerror or error}); nothing is left under "
            "that name"
        ) from error


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` whose files move into it on success.

    A failed or interrupted run removes the temporary folder, so ``target`` never holds a
    run's first frames only. ``target`` may exist; its other files stay.

    Raises:
        InputError: ``target`` is a file.
    """
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: is a file; expected a folder for the overlay PNGs")
    temporary = target.parent / f".{target.name}.partial{os.getpid()}"
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    target.mkdir(exist_ok=True)
    for image in sorted(temporary.iterdir()):
        os.replace(image, target / image.name)
    temporary.rmdir()


class OverlaySink:
    """Overlay images to a video (``.mp4``: mp4v, ``.avi``: MJPG) or to numbered PNGs in a folder.

    Args:
        path: the video file or the folder, each a temporary one (:func:`atomic_output`,
            :func:`atomic_folder`).
        fps: frame rate of a video.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.count = 0
        self._video: cv2.VideoWriter | None = None
        self.codec = OVERLAY_CODECS.get(path.suffix.lower())
        if self.codec is None:
            path.mkdir(parents=True, exist_ok=True)

    def add(self, image: np.ndarray) -> None:
        """Append one RGB uint8 image (every image of a video has the first one's size)."""
        self.count += 1
        bgr = np.ascontiguousarray(image[..., ::-1])
        if self.codec is None:
            target = self.path / f"{self.count:06d}.png"
            if not cv2.imwrite(str(target), bgr):
                raise InputError(f"{target}: OpenCV could not write this PNG")
            return
        if self._video is None:
            fourcc = cv2.VideoWriter_fourcc(*self.codec)
            size = (image.shape[1], image.shape[0])
            self._video = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self._video.isOpened():
                raise InputError(f"{self.path}: OpenCV cannot write a {self.codec} video here")
        self._video.write(bgr)

    def __enter__(self) -> OverlaySink:
        return self

    def __exit__(self, failure: type[BaseException] | None, *args: object) -> None:
        """Finish the video file and, unless the run failed, check that it reads back whole.

        OpenCV's VideoWriter reports no write error (a full disk leaves a file that does not
        play), so the frames are counted again from the file.

        Raises:
            OSError: the video holds fewer frames than were written.
        """
        if self._video is None:
            return
        self._video.release()
        self._video = None
        if failure is not None:
            return
        reader = cv2.VideoCapture(str(self.path))
        readable = int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) if reader.isOpened() else 0
        reader.release()
        if readable != self.count:
            raise OSError(
                f"{self.count} frames written but {readable} read back from the video file"
            )


def overlay_image(
    frame: Frame,
    face: Face | None,
    prediction: Prediction | None,
    index: int,
    au_names: Sequence[str],
    image_size: int,
) -> np.ndarray:
    """Fig. 7 for one frame: the frame with its crop outlined beside one panel per AU.

    Each panel is the face crop with that AU's regressed map upsampled and blended over it and
    the intensity written on top (:func:`aunet.visualise.au_panel`).
    """
    k = len(au_names)
    caption = f"{frame.file.name} #{frame.number}"
    if frame.timestamp:
        caption += f" {frame.timestamp:.2f}s"
    if face is None or prediction is None:
        blank = np.zeros((image_size, image_size, 3), np.uint8)
        panel = au_panel(blank, np.zeros((k, 1, 1)), au_names, [np.nan] * k)
        return frame_overlay(frame.image, panel, caption=caption + " no face")
    maps = prediction.heatmaps[index] if prediction.heatmaps is not None else np.zeros((k, 1, 1))
    panel = au_panel(face.crop.image, maps, au_names, prediction.intensities[index].tolist())
    edge = (-0.5, image_size - 0.5)
    corners = np.array(
        [(edge[0], edge[0]), (edge[1], edge[0]), (edge[1], edge[1]), (edge[0], edge[1])]
    )
    outline = transform_points(corners, invert_affine(face.crop.affine))
    return frame_overlay(frame.image, panel, outline, caption)


def plot_csv(csv_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Plot the ``AU.._r`` columns of an aunet-predict (or OpenFace) CSV over time.

    x is ``timestamp`` for a single video's CSV and the row number when an ``input`` column
    shows several files. Frames without a face (``success`` 0, whose AU cells OpenFace's layout
    fills with 0; empty cells in aunet's) are gaps, and AUs without a number in any row (the
    ``nan`` columns of AUs the model does not estimate) get no row, unless no AU has one.
    """
    with open(csv_path, newline="") as file:
        rows = list(csv.reader(file, skipinitialspace=True))  # OpenFace writes ", "
    header, body = [name.strip() for name in rows[0]], rows[1:]
    au_columns = [i for i, name in enumerate(header) if re.fullmatch(r"AU\d+_r", name)]

    def column(index: int) -> np.ndarray:
        return np.array([float(row[index]) if row[index] else np.nan for row in body])

    intensities = np.stack([column(i) for i in au_columns], axis=1).reshape(len(body), -1)
    if "success" in header:
        intensities[column(header.index("success")) != 1] = np.nan
    estimated = ~np.isnan(intensities).all(axis=0)
    if estimated.any():
        au_columns = [i for i, keep in zip(au_columns, estimated, strict=True) if keep]
        intensities = intensities[:, estimated]
    if "input" in header:
        x, xlabel = np.arange(1, len(body) + 1), "row (frames in input order)"
    else:
        x, xlabel = column(header.index("timestamp")), "time (s)"
    names = [header[i].removesuffix("_r") for i in au_columns]
    plot_intensities(x, intensities, names, png_path, xlabel)
