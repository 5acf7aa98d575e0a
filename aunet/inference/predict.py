"""``aunet-predict``: AU intensities of the faces in videos and images, as an OpenFace-style CSV.

Usage::

    aunet-predict INPUT... --ckpt CKPT --out FILE.csv|FOLDER [--overlay PATH] [--plot FILE.png]
                  [--format openface|aunet] [--occurrence-threshold T] [--all-faces]
                  [--batch-size N] [--device auto|cpu|cuda] [--precision auto|32-true|bf16-mixed]
                  [--locations] [--margin M]

INPUT is any mix of video files, image files and folders of images. Per frame (Sec. 3.4: "crop
the face image according to some face detection and forward it to the trained network"):
dlib finds the best-scored face and its 68 landmarks (:mod:`aunet.faces.detect`); the face is
cropped exactly as the training data were (:func:`aunet.faces.crop.crop_face`, the model's input
size); crops are forwarded in batches (under bf16 autocast where the device computes bf16 natively,
float32 elsewhere: ``--precision auto``, :mod:`aunet.training.precision`); each AU's intensity
is the maximum of its map and its location the argmax (:mod:`aunet.inference.predictor`). Frames
stream through -- decode, detect, crop, a batch of ``N`` frames, forward, write -- so memory does
not grow with a video's length.

The CSVs (:mod:`aunet.inference.prediction_csv`, ``docs/inference.md``) are OpenFace 2.2's by
default: ``frame, face_id, timestamp, confidence, success``, every OpenFace AU's ``_r`` and ``_c``
columns, one row per frame, one CSV per input (``--format aunet``: the model's AUs only, one
CSV for all inputs with an ``input`` column). ``--overlay`` draws each frame's AU heatmaps over
its face with the intensities written beside them (Fig. 7), as a video (``.mp4``/``.avi``) or a
folder of PNGs; ``--plot`` draws every AU's intensity over time.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from aunet.cli.guards import DefaultsHelpFormatter, command_line
from aunet.faces.crop import DEFAULT_MARGIN, invert_affine, transform_points
from aunet.faces.detect import DetectorUnavailableError, LandmarkDetector
from aunet.faces.video import VideoError
from aunet.files import atomic_path
from aunet.inference.prediction_csv import (
    FORMATS,
    OCCURRENCE_THRESHOLD,
    AunetLayout,
    OpenFaceLayout,
    csv_targets,
)
from aunet.inference.predictor import (
    DEFAULT_FPS,
    AllFaceFinder,
    AUPredictor,
    Face,
    FaceFinder,
    Frame,
    InputError,
    Prediction,
    Source,
    Stopwatch,
    collect_sources,
    load_predictor,
    resolve_device,
    video_fps,
)
from aunet.training.checkpoint_io import CheckpointError
from aunet.training.precision import AUTO, BF16_MIXED, FLOAT32, choose_precision
from aunet.visualise import au_panel, frame_overlay, plot_intensities

#: Overlay videos: OpenCV codec per container.
OVERLAY_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
#: How often (in frames) the face detector runs in a video by default; the face is followed
#: between (docs/inference.md, "Speed").
REDETECT_EVERY = 10


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
        sources: the inputs (:func:`aunet.inference.predictor.collect_sources`).
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


@dataclass
class Summary:
    """What a run did and how fast (wall clock per stage, and CPU time of the process)."""

    frames: int
    faces: int
    seconds: float
    cpu_seconds: float
    stages: dict[str, float]
    #: One sentence per video that decoded another number of frames than it declares.
    length_mismatches: tuple[str, ...] = ()
    #: The CSVs written.
    outputs: tuple[Path, ...] = ()

    def line(self) -> str:
        """The closing line ``aunet-predict`` prints."""
        rate = self.frames / self.seconds if self.seconds else float("nan")
        cpu_rate = self.frames / self.cpu_seconds if self.cpu_seconds else float("nan")
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.stages.items())
        mismatches = "".join(f"; {sentence}" for sentence in self.length_mismatches)
        return (
            f"{self.frames} frames ({self.faces} with a face) in {self.seconds:.1f} s: "
            f"{rate:.1f} frames/s ({stages}); CPU time {self.cpu_seconds:.1f} s, "
            f"{cpu_rate:.1f} frames per CPU-second{mismatches}"
        )


def length_mismatch(source: Source, declared: int | None, decoded: int) -> str | None:
    """The sentence for a video that decoded ``decoded`` frames of ``declared``; None if equal.

    Images and videos whose container declares no count have nothing to compare.
    """
    if not source.is_video or declared is None or declared == decoded:
        return None
    return (
        f"WARNING: {source.path} decoded {decoded} of the {declared} frames it declares "
        "(truncated or damaged?)"
    )


class _Batch:
    """Frames waiting for the forward pass, written out in order once it is done.

    ``writer`` takes the rows: the open CSV's (set before the first frame of each CSV).
    """

    def __init__(
        self,
        predictor: AUPredictor,
        layout: AunetLayout | OpenFaceLayout,
        sink: OverlaySink | None,
        stopwatch: Stopwatch,
    ) -> None:
        self.predictor = predictor
        self.layout = layout
        self.writer: Callable[[list[str]], object] = lambda row: None
        self.sink = sink
        self.stopwatch = stopwatch
        self.pending: list[tuple[Frame, Face | None]] = []
        self.faces = 0

    def add(self, frame: Frame, faces: Sequence[Face]) -> None:
        """Queue a frame: a row for each of its faces, or one with no face."""
        self.pending += [(frame, face) for face in faces] or [(frame, None)]

    def flush(self) -> None:
        """Forward the queued faces in one batch and write every queued frame's row."""
        crops = [face.crop.image for _, face in self.pending if face is not None]
        prediction = None
        if crops:
            with self.stopwatch("forward"):
                prediction = self.predictor(np.stack(crops), heatmaps=self.sink is not None)
        with self.stopwatch("write"):
            index = 0
            for frame, face in self.pending:
                intensities = locations = None
                if face is not None and prediction is not None:
                    intensities = prediction.intensities[index]
                    to_frame = invert_affine(face.crop.affine)
                    locations = transform_points(prediction.locations[index], to_frame)
                self.writer(self.layout.row(frame, face, intensities, locations))
                if self.sink is not None:
                    names, size = self.predictor.au_names, self.predictor.image_size
                    self.sink.add(overlay_image(frame, face, prediction, index, names, size))
                index += face is not None
        self.faces += len(crops)
        self.pending.clear()


def predict(
    inputs: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    overlay: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str = "auto",
    precision: str = AUTO,
    locations: bool = False,
    margin: float | None = None,
    image_size: int | None = None,
    progress: bool = True,
    strict_length: bool = False,
    all_faces: bool = False,
    csv_format: str = "openface",
    occurrence_threshold: float = OCCURRENCE_THRESHOLD,
    redetect_every: int = REDETECT_EVERY,
) -> Summary:
    """Run a trained AU model over videos and images and write the CSV (and pictures).

    Args:
        inputs: video files, image files and folders of images.
        checkpoint: an ``aunet fit`` checkpoint.
        out: the CSV to write (atomically: a failed run leaves no partial file); in OpenFace's
            format with several inputs (or a name without ``.csv``), the folder of the
            inputs' CSVs (:func:`aunet.inference.prediction_csv.csv_targets`).
        overlay: a ``.mp4``/``.avi`` video or a folder of PNGs of Fig. 7-style overlays.
        plot: a PNG of each AU's intensity over time.
        batch_size: frames per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 autocast where the device computes bf16 natively, else
            float32; the choice is printed), ``32-true`` or ``bf16-mixed``.
        locations: add AU location columns (frame pixels).
        margin: the crop margin the training data were cropped with (``data_prep --margin``);
            default: the one the checkpoint records, else ``aunet.faces.crop.DEFAULT_MARGIN``.
        image_size: the network's input side; default: the one it was trained at.
        progress: show a progress bar.
        strict_length: a video that decodes another number of frames than it declares is an
            error (nothing written) instead of a warning on stderr and in the summary line.
        all_faces: a row for every face of each frame, numbered by ``face_id`` from frame to
            frame (:class:`~aunet.inference.predictor.AllFaceFinder`), instead of the one tracked
            face. Not with ``overlay`` or ``plot``, which draw one face per frame.
        csv_format: ``openface`` (OpenFace 2.2's layout, one CSV per input) or ``aunet``
            (:mod:`aunet.inference.prediction_csv`).
        occurrence_threshold: the intensity from which OpenFace's ``AU.._c`` is 1.
        redetect_every: in a video, run the face detector on one frame in this many and follow
            the face between (:class:`~aunet.faces.detect.FaceTracker`); 1 searches every frame.
            Images and ``all_faces`` search every frame.

    Returns:
        Frame counts and timings.

    Raises:
        InputError, CheckpointError, VideoError, DetectorUnavailableError: naming the file.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if redetect_every < 1:
        raise InputError(f"--redetect-every must be at least 1, got {redetect_every}")
    if all_faces and (overlay is not None or plot is not None):
        flag = "--overlay" if overlay is not None else "--plot"
        raise InputError(
            f"--all-faces with {flag}: the overlay and the plot show one face per frame; run "
            "once with --all-faces for the CSV, and once without it for the pictures"
        )
    sources = collect_sources(inputs)
    targets = csv_targets(sources, Path(out), csv_format)
    if plot is not None and len(targets) > 1:
        raise InputError(
            f"--plot {plot}: draws the AUs of one CSV, and {len(targets)} inputs give "
            f"{len(targets)}; give one input, or --format aunet for one CSV of all inputs"
        )
    csv_flags = {"--out": targets[0][0]} if len(targets) == 1 else {
        f"--out ({sources[members[0]].path.name})": target for target, members in targets
    }  # fmt: skip
    check_outputs(sources, checkpoint, {**csv_flags, "--overlay": overlay, "--plot": plot})
    try:
        torch_device = resolve_device(device)
    except ValueError as error:  # CUDA asked for but missing
        raise InputError(str(error)) from None
    choice = choose_precision(precision, torch_device.type, setting="--precision")
    print(choice, flush=True)
    predictor = load_predictor(checkpoint, torch_device, image_size, choice.precision)
    stopwatch = Stopwatch()
    if margin is None:
        margin = predictor.crop_margin if predictor.crop_margin is not None else DEFAULT_MARGIN
    cropping = (LandmarkDetector(), predictor.image_size, margin, stopwatch, predictor.framing)
    if all_faces:
        finder: AllFaceFinder | FaceFinder = AllFaceFinder(*cropping)
    else:
        finder = FaceFinder(*cropping, redetect_every=redetect_every)
    single_video = len(sources) == 1 and sources[0].is_video
    layout = (
        OpenFaceLayout(predictor.au_names, locations, occurrence_threshold)
        if csv_format == "openface"
        else AunetLayout(predictor.au_names, locations, with_input=not single_video)
    )
    counts = [source.count() for source in sources]
    total = None if None in counts else sum(counts)
    start, cpu_start = time.perf_counter(), time.process_time()
    frames = 0
    mismatches: list[str] = []
    with contextlib.ExitStack() as stack:
        # Every output under a temporary name until all succeeded (the overlay's check last):
        # a failure leaves none of them.
        temporaries = [stack.enter_context(atomic_output(target)) for target, _ in targets]
        sink = None
        if overlay is not None:
            overlay = Path(overlay)
            if overlay.suffix.lower() in OVERLAY_CODECS:
                overlay = stack.enter_context(atomic_output(overlay))
            else:
                overlay = stack.enter_context(atomic_folder(overlay))
            fps = next((video_fps(s.path) for s in sources if s.is_video), DEFAULT_FPS)
            sink = stack.enter_context(OverlaySink(overlay, fps))
        batch = _Batch(predictor, layout, sink, stopwatch)
        bar = stack.enter_context(tqdm(total=total, unit="frame", disable=not progress))
        for temporary, (_, members) in zip(temporaries, targets, strict=True):
            with open(temporary, "w", newline="") as file:
                writer = csv.writer(file, lineterminator="\n")
                writer.writerow(layout.header())
                batch.writer = writer.writerow
                for index in members:
                    source, declared = sources[index], counts[index]
                    finder.reset()
                    decoded = 0
                    for frame in stopwatch.iterate(source.frames(), "decode"):
                        if not source.is_video:
                            finder.reset()  # images are unrelated: no box carries over
                        batch.add(frame, finder.faces(frame.image))
                        if len(batch.pending) >= batch_size:
                            batch.flush()
                        bar.update()
                        decoded += 1
                    frames += decoded
                    mismatch = length_mismatch(source, declared, decoded)
                    if mismatch is not None and strict_length:
                        raise InputError(mismatch.removeprefix("WARNING: ") + "; nothing written")
                    if mismatch is not None:
                        tqdm.write(mismatch, file=sys.stderr)
                        mismatches.append(mismatch)
                batch.flush()  # this CSV's last rows, before it is closed
    if plot is not None:
        with atomic_output(Path(plot)) as temporary:
            plot_csv(targets[0][0], temporary)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return Summary(
        frames,
        batch.faces,
        seconds,
        cpu_seconds,
        stopwatch.seconds,
        tuple(mismatches),
        tuple(target for target, _ in targets),
    )


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


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``aunet-predict``."""
    parser = argparse.ArgumentParser(
        prog="aunet-predict",
        description="AU intensities of the faces in videos and images (OpenFace-style CSV).",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, images, folders")
    parser.add_argument("--ckpt", required=True, help="checkpoint of `aunet fit` (.ckpt)")
    parser.add_argument(
        "--out",
        required=True,
        help="the CSV (one input), or a folder for one CSV per input (<input>.csv)",
    )
    parser.add_argument("--overlay", help="heatmap overlays: a .mp4/.avi video or a PNG folder")
    parser.add_argument("--plot", help="PNG of each AU's intensity over time")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--precision",
        choices=(AUTO, FLOAT32, BF16_MIXED),
        default=AUTO,
        help="bf16 autocast or float32; auto: bf16 where the device computes it natively",
    )
    parser.add_argument(
        "--locations", action="store_true", help="add AU location columns (frame pixels)"
    )
    parser.add_argument(
        "--margin",
        type=float,
        help=f"crop margin of the training data (default: the checkpoint's, else {DEFAULT_MARGIN})",
    )
    parser.add_argument(
        "--image-size", type=int, help="network input side (default: from the checkpoint)"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for the network (default: torch's choice)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="openface",
        help="openface: OpenFace 2.2's CSV, one per input (--out: a .csv for one input, else a "
        "folder); aunet: the model's AUs only, one CSV with an input column",
    )
    parser.add_argument(
        "--occurrence-threshold",
        type=float,
        default=OCCURRENCE_THRESHOLD,
        help="intensity from which OpenFace's AU.._c columns say 1 (DISFA's convention: 2)",
    )
    parser.add_argument(
        "--all-faces",
        action="store_true",
        help="a row for every face of a frame, numbered by face_id (default: one tracked face)",
    )
    parser.add_argument(
        "--redetect-every",
        type=int,
        default=REDETECT_EVERY,
        metavar="N",
        help="in a video, run the face detector on one frame in N and follow the face between "
        "(a followed face that no longer looks like the detected one is searched again); 1: "
        "search every frame",
    )
    parser.add_argument(
        "--strict-length",
        action="store_true",
        help="a video decoding fewer (or more) frames than it declares is an error, not a warning",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``aunet-predict``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        summary = predict(
            args.inputs,
            args.ckpt,
            args.out,
            overlay=args.overlay,
            plot=args.plot,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            locations=args.locations,
            margin=args.margin,
            image_size=args.image_size,
            progress=not args.no_progress,
            strict_length=args.strict_length,
            all_faces=args.all_faces,
            csv_format=args.format,
            occurrence_threshold=args.occurrence_threshold,
            redetect_every=args.redetect_every,
        )
    except (InputError, CheckpointError, VideoError, DetectorUnavailableError, OSError) as error:
        parser.exit(2, f"aunet-predict: error: {error}\n")
    written = (
        str(summary.outputs[0])
        if len(summary.outputs) == 1
        else f"{len(summary.outputs)} CSVs into {args.out}"
    )
    print(f"wrote {written}: {summary.line()}")


#: The console script: Ctrl-C or SIGTERM removes the partial outputs, then exits 130 or 143.
predict_command = command_line("aunet-predict", stop_hint="; its partial outputs were removed")(
    main
)


if __name__ == "__main__":
    predict_command()
