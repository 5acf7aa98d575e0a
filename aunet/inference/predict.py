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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aunet.cli.guards import DefaultsHelpFormatter, command_line
from aunet.faces.crop import DEFAULT_MARGIN, invert_affine, transform_points
from aunet.faces.detect import DetectorUnavailableError, LandmarkDetector
from aunet.faces.video import VideoError
from aunet.inference.face_finding import AllFaceFinder, Face, FaceFinder
from aunet.inference.outputs import (
    OVERLAY_CODECS,
    OverlaySink,
    atomic_folder,
    atomic_output,
    check_outputs,
    overlay_image,
    plot_csv,
)
from aunet.inference.prediction_csv import (
    FORMATS,
    OCCURRENCE_THRESHOLD,
    AunetLayout,
    OpenFaceLayout,
    csv_targets,
)
from aunet.inference.predictor import AUPredictor, load_predictor, resolve_device
from aunet.inference.sources import (
    DEFAULT_FPS,
    Frame,
    InputError,
    Source,
    Stopwatch,
    collect_sources,
    video_fps,
)
from aunet.training.checkpoint_io import CheckpointError
from aunet.training.precision import AUTO, BF16_MIXED, FLOAT32, choose_precision

#: How often (in frames) the face detector runs in a video by default; the face is followed
#: between (docs/inference.md, "Speed").
REDETECT_EVERY = 10


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
            frame (:class:`~aunet.inference.face_finding.AllFaceFinder`), instead of the one tracked
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
