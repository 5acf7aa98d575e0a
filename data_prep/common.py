"""What every converter shares: arguments, label files, per-subject parts, resume and the report.

A converter turns its raw folders into one :class:`SubjectJob` per subject (checking the cheap
things, labels and file lists, before any decoding starts) and hands them to
:func:`run_conversion`, which

- converts each subject in its own process (``--workers``) into a part file
  ``<out>.parts/<subject>.h5``: every frame's face is cropped from its landmarks (the dataset's,
  or the detector's where the dataset has none) with :func:`aunet.faces.crop.crop_face`;
- shows one progress bar over all frames;
- on a re-run, keeps the parts that finished with the same options (an interrupted or partly
  failed conversion resumes where it stopped);
- prints a report per subject, and merges the parts into ``--out`` atomically
  (``<out>.partial``, then a rename) once every subject has succeeded.

Frames that are left out: those without any AU label (when the dataset has AUs), and those for
which neither the dataset nor the detector gives landmarks. Both are counted in the report.
Within a clip (a video or an image sequence), a frame where the detector finds no face falls
back to the face box of the clip's previous frame, whether that came from the detector or from
the dataset's landmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import re
import shutil
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from aunet.aus import NUM_LANDMARKS
from aunet.data.store import (
    DEFAULT_ENCODING,
    DEFAULT_JPEG_QUALITY,
    ENCODINGS,
    MAX_INTENSITY,
    SCHEMA_VERSION,
    FrameStore,
    StoreError,
)
from aunet.data.store_writer import FrameStoreWriter, merge_stores
from aunet.faces.crop import DEFAULT_MARGIN, DEFAULT_SIZE, crop_face
from aunet.faces.detect import (
    DEFAULT_DETECT_SIDE,
    DetectorUnavailableError,
    FaceBox,
    LandmarkDetector,
    require_detector,
)
from aunet.faces.images import decode_rgb
from aunet.faces.video import VideoError
from aunet.locks import LockHeldError, advisory_lock, release_lock

#: Landmarks whose bounding box is smaller than this (pixels) are treated as missing: trackers
#: write all-zero or collapsed points for frames they lost.
MIN_FACE_SIDE = 8.0
#: The range of the int64 frame numbers label files are read into.
_INT64 = np.iinfo(np.int64)
#: Rows buffered per write to a part file.
_BLOCK = 64

T = TypeVar("T")


class ConversionError(ValueError):
    """Input a converter cannot use; the message names the file and what was expected."""


#: Errors that mean "fix the input": reported by their message (anything else also gets a
#: traceback, as it is a bug).
INPUT_ERRORS = (ConversionError, StoreError, VideoError, DetectorUnavailableError)


# ----------------------------------------------------------------------------- command line
def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[minimum, maximum]``, else argparse's exit-2 error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {value}")
        return value

    return parse


def finite_number(minimum: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number ``>= minimum`` (NaN and infinities refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a finite number >= {minimum}, got {text}")
        return value

    return parse


#: The smallest image side the converters and the synthetic renderer draw.
MIN_IMAGE_SIDE = 16


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def add_common_arguments(
    parser: argparse.ArgumentParser, root_help: str, root_required: bool
) -> None:
    """The arguments every converter takes: ``--root``, ``--out``, workers, crop, detector."""
    parser.add_argument("--root", type=Path, required=root_required, metavar="DIR", help=root_help)
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.h5", help="the frame store to write"
    )
    parser.add_argument(
        "--subjects", nargs="+", metavar="SUBJECT", help="convert only these subjects"
    )
    parser.add_argument(
        "--workers",
        type=whole_number(1),
        default=default_workers(),
        help="subjects converted at once, one process each (default: the CPU cores, %(default)s)",
    )
    crop = parser.add_argument_group("crop and storage (docs/data-format.md)")
    crop.add_argument(
        "--size",
        type=whole_number(MIN_IMAGE_SIDE),
        default=DEFAULT_SIZE,
        help="crop side in pixels (default %(default)s)",
    )
    crop.add_argument(
        "--margin",
        type=finite_number(0.0),
        default=DEFAULT_MARGIN,
        help="crop side = (1 + margin) x the landmarks' bounding box (default %(default)s)",
    )
    crop.add_argument(
        "--encoding", choices=ENCODINGS, default=DEFAULT_ENCODING, help="(default %(default)s)"
    )
    crop.add_argument(
        "--jpeg-quality",
        type=whole_number(1, 100),
        default=DEFAULT_JPEG_QUALITY,
        metavar="Q",
        help="(default %(default)s)",
    )
    detect = parser.add_argument_group("landmark detector, for frames without landmarks")
    detect.add_argument(
        "--detect-side",
        type=whole_number(0),
        default=DEFAULT_DETECT_SIDE,
        metavar="PIXELS",
        help="search faces on a copy at most this large (0: full size; default %(default)s)",
    )
    detect.add_argument(
        "--upsample",
        type=whole_number(0),
        default=0,
        help="dlib upsamplings (finds smaller faces, slower)",
    )


def select_subjects(
    available: Sequence[str], wanted: Sequence[str] | None, where: Path
) -> list[str]:
    """``available`` (sorted), or the ``wanted`` subset of it.

    Raises:
        ConversionError: if ``available`` is empty or ``wanted`` names an unknown subject.
    """
    if not available:
        raise ConversionError(f"{where}: no subjects found")
    if not wanted:
        return sorted(available)
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        found = ", ".join(sorted(available))
        raise ConversionError(f"--subjects {' '.join(unknown)}: not in {where} (found: {found})")
    return sorted(set(wanted))


def collect(items: Iterable[T], plan: Callable[[T], Any]) -> list[Any]:
    """``[plan(item) for item in items]``, but reporting every item's input error at once.

    Raises:
        ConversionError: listing every problem found, one per line.
    """
    results, problems = [], []
    for item in items:
        try:
            results.append(plan(item))
        except INPUT_ERRORS as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise ConversionError(problems[0])
    if problems:
        raise ConversionError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return results


# ----------------------------------------------------------------------------- label files
def read_label_file(path: Path, unknown: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a label file of ``frame,intensity`` rows (no header; commas or blanks separate).

    Args:
        path: the file.
        unknown: an intensity code meaning "not labelled" (FERA's 9), read as NaN.

    Returns:
        int64 frame numbers and float32 intensities (NaN = unknown), in file order.

    Raises:
        ConversionError: naming the file and line, for a missing or unreadable file, a row that
            is not two fields, a frame that is not a 64-bit integer or repeats, or an intensity
            that is not a number or lies outside 0-5.
    """
    if not path.is_file():
        raise ConversionError(f"{path}: label file missing")
    frames: list[int] = []
    values: list[float] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.replace(",", " ").split()
            if not fields:
                continue
            where = f"{path}, line {number}"
            if len(fields) != 2:
                raise ConversionError(f"{where}: expected 'frame,intensity', got {line.strip()!r}")
            frame, text = fields
            try:
                frames.append(int(frame))
            except ValueError:
                raise ConversionError(f"{where}: frame {frame!r} is not an integer") from None
            if not _INT64.min <= frames[-1] <= _INT64.max:  # else an OverflowError below
                raise ConversionError(f"{where}: frame {frame} does not fit 64 bits")
            values.append(parse_intensity(text, where, unknown))
    frame_array = np.array(frames, dtype=np.int64)
    unique, counts = np.unique(frame_array, return_counts=True)
    if (counts > 1).any():
        raise ConversionError(f"{path}: frame {unique[counts > 1][0]} appears more than once")
    return frame_array, np.array(values, dtype=np.float32)


def parse_intensity(text: str, where: str, unknown: float | None = None) -> float:
    """An AU intensity from text: a number in 0-5, or ``unknown`` (read as NaN).

    Raises:
        ConversionError: starting with ``where``, if the text is not a number or lies outside
            0-5.
    """
    allowed = f"0-5 ({unknown:g} = unknown)" if unknown is not None else "0-5"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ConversionError(f"{where}: intensity {text!r} is not a number; expected {allowed}")
    if unknown is not None and value == unknown:
        return math.nan
    if not 0 <= value <= MAX_INTENSITY:
        raise ConversionError(f"{where}: intensity {text} outside {allowed}")
    return value


def read_mat_points(path: Path, key: str, num_points: Sequence[int]) -> np.ndarray:
    """The P x 2 float32 points stored under ``key`` in a MATLAB file (2 x P is transposed).

    Raises:
        ConversionError: naming the file, for an unreadable file, a missing key, values that
            are not real numbers (text, cell, struct, complex), or a shape other than P x 2 with
            P in ``num_points``.
    """
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as error:  # scipy raises several types for damaged files
        raise ConversionError(f"{path}: not a readable MATLAB file ({error})") from None
    if key not in content:
        found = ", ".join(k for k in content if not k.startswith("__"))
        raise ConversionError(f"{path}: no {key!r} array (found: {found or 'none'})")
    points = np.asarray(content[key])
    if points.dtype.kind not in "biuf":  # text, cell or struct arrays; complex numbers
        raise ConversionError(
            f"{path}: {key!r} holds {points.dtype} values, expected real numbers (P x 2 points)"
        )
    points = points.astype(np.float32)
    if points.ndim == 2 and points.shape[0] == 2 and points.shape[1] in num_points:
        points = points.T
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] not in num_points:
        expected = " or ".join(f"{n} x 2" for n in num_points)
        raise ConversionError(f"{path}: {key!r} has shape {points.shape}, expected {expected}")
    return points


def decode_image(data: bytes, name: str | os.PathLike) -> np.ndarray:
    """Decode image file bytes (JPEG, PNG, ...) to RGB uint8.

    Raises:
        ConversionError: naming ``name``, if OpenCV cannot decode them.
    """
    image = decode_rgb(data)
    if image is None:
        raise ConversionError(f"{name}: not a readable image")
    return image


def landmark_box(points: np.ndarray) -> FaceBox:
    """The bounding box of the finite landmarks, as a detector face box."""
    finite = points[np.isfinite(points).all(axis=1)]
    left, top = np.floor(finite.min(axis=0)).astype(int).tolist()
    right, bottom = np.ceil(finite.max(axis=0)).astype(int).tolist()
    return FaceBox(left, top, right, bottom)


def check_face_in_image(box: FaceBox, image: np.ndarray, source: SourceFrame) -> None:
    """The dataset's landmarks must put the face in the image: their box's centre inside it.

    A face may reach past the border (a chin below the frame), but landmarks centred outside
    the image were made for another image size or in other units, and would crop a black box.

    Raises:
        ConversionError: naming where the landmarks come from, the frame, and the image size.
    """
    height, width = image.shape[:2]
    x, y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    if 0 <= x < width and 0 <= y < height:
        return
    raise ConversionError(
        f"{source.landmarks_from or 'the dataset'}: landmarks of frame {source.frame} centred "
        f"at ({x:.0f}, {y:.0f}), outside its {width} x {height} image; expected (x, y) in that "
        "image's pixels (landmarks made for another image size, or in other units?)"
    )


def usable_landmarks(points: np.ndarray | None) -> bool:
    """Whether landmarks can place a crop: 68 x 2, at least half finite, a real extent."""
    if points is None or points.shape != (NUM_LANDMARKS, 2):
        return False
    finite = points[np.isfinite(points).all(axis=1)]
    if len(finite) < NUM_LANDMARKS // 2:
        return False
    return float((finite.max(axis=0) - finite.min(axis=0)).max()) >= MIN_FACE_SIDE


# ----------------------------------------------------------------------------- jobs and reports
@dataclass
class SourceFrame:
    """One raw frame, as a converter yields it.

    Attributes:
        image: the RGB uint8 source frame, or a function that reads it (so a frame that is left
            out for having no label is never decoded).
        frame: the frame number as the dataset's label files give it.
        au: K intensities (NaN = unknown).
        landmarks: 68 x 2 (x, y) source pixels, or None to use the detector.
        clip: frames of one clip (a video or an image sequence) come in order under one name;
            the detector falls back to the previous frame's box only within a clip. None: the
            frame stands alone.
        sequence: the store's ``sequence`` value, if the dataset has sequences.
        partition: the store's ``partition`` value, if the dataset has partitions.
        landmarks_from: where ``landmarks`` come from (a file, a CSV line), for messages.
    """

    image: np.ndarray | Callable[[], np.ndarray]
    frame: int
    au: np.ndarray
    landmarks: np.ndarray | None = None
    clip: str | None = None
    sequence: str | None = None
    partition: str | None = None
    landmarks_from: str | None = None


@dataclass
class SubjectReport:
    """What happened to one subject's frames.

    Attributes:
        written: frames stored.
        detected: stored frames whose landmarks came from the detector.
        no_landmarks: frames left out: no usable landmarks in the dataset, no face detected.
        unlabelled: frames left out: no AU label at all.
        unknown_labels: stored frames with at least one unknown (NaN) AU label.
        status: ``converted``, ``resumed`` (kept from an earlier run) or ``failed``.
        notes: anything else worth knowing (e.g. the error of a failed subject).
    """

    subject: str
    written: int = 0
    detected: int = 0
    no_landmarks: int = 0
    unlabelled: int = 0
    unknown_labels: int = 0
    status: str = "converted"
    notes: list[str] = field(default_factory=list)


@dataclass
class SubjectJob(ABC):
    """One subject's conversion; plain data, so it can be sent to a worker process.

    Attributes:
        subject: the subject's name (``SN001``, ``F001``).
        num_frames: how many frames :meth:`frames` will yield (for the progress bar).
        needs_detector: whether some frames come without landmarks.
    """

    subject: str
    num_frames: int
    needs_detector: bool

    @abstractmethod
    def frames(self, report: SubjectReport) -> Iterator[SourceFrame]:
        """Yield the subject's frames in order (notes for the report go to ``report``)."""


@dataclass(frozen=True)
class Settings:
    """Everything, besides the subject, that decides what a part file contains."""

    dataset: str
    au_names: tuple[str, ...]
    source: str
    image_size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN
    encoding: str = DEFAULT_ENCODING
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    detect_side: int | None = DEFAULT_DETECT_SIDE
    upsample: int = 0

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, dataset: str, au_names: Sequence[str], source: str
    ) -> Settings:
        """Settings from the parsed :func:`add_common_arguments` arguments."""
        return cls(
            dataset=dataset,
            au_names=tuple(au_names),
            source=source,
            image_size=args.size,
            margin=args.margin,
            encoding=args.encoding,
            jpeg_quality=args.jpeg_quality,
            detect_side=args.detect_side or None,
            upsample=args.upsample,
        )

    def fingerprint(self) -> str:
        """A JSON string that changes whenever these settings would change a part file."""
        return json.dumps({**asdict(self), "schema_version": SCHEMA_VERSION}, sort_keys=True)


def convert_subject(
    job: SubjectJob, settings: Settings, part: Path, progress: Callable[[int], Any]
) -> SubjectReport:
    """Convert one subject into the part file ``part`` (atomically) and report on it."""
    report = SubjectReport(job.subject)
    detector: LandmarkDetector | None = None
    clip: str | None = None
    previous: FaceBox | None = None  # the face's box in the clip's previous frame
    rows: list[tuple[SourceFrame, np.ndarray, np.ndarray]] = []
    attrs = {
        "prep_options": settings.fingerprint(),
        "crop_margin": settings.margin,
        "source": settings.source,
    }
    with FrameStoreWriter(
        part,
        settings.dataset,
        settings.au_names,
        settings.image_size,
        encoding=settings.encoding,
        jpeg_quality=settings.jpeg_quality,
        attrs=attrs,
    ) as writer:
        for source in job.frames(report):
            progress(1)
            if settings.au_names and np.isnan(source.au).all():
                report.unlabelled += 1
                continue
            image = source.image() if callable(source.image) else source.image
            if source.clip is None or source.clip != clip:
                previous = None  # a box never carries over into another clip
            clip = source.clip
            landmarks = source.landmarks if usable_landmarks(source.landmarks) else None
            if landmarks is None:
                detector = detector or LandmarkDetector(settings.detect_side, settings.upsample)
                detection = detector.detect(image, fallback=previous)
                if detection is None:
                    report.no_landmarks += 1
                    continue
                landmarks, previous = detection.landmarks, detection.box
                report.detected += 1
            else:
                previous = landmark_box(landmarks)
                check_face_in_image(previous, image, source)
            crop = crop_face(image, landmarks, settings.image_size, settings.margin)
            rows.append((source, crop.image, crop.landmarks))
            report.unknown_labels += int(np.isnan(source.au).any())
            if len(rows) == _BLOCK:
                _append(writer, job.subject, rows)
        _append(writer, job.subject, rows)
        report.written = len(writer)
        writer.attrs["prep_report"] = json.dumps(asdict(report))
    return report


def _append(
    writer: FrameStoreWriter, subject: str, rows: list[tuple[SourceFrame, np.ndarray, np.ndarray]]
) -> None:
    if not rows:
        return
    sources = [source for source, _, _ in rows]
    writer.append(
        images=np.stack([image for _, image, _ in rows]),
        landmarks=np.stack([points for _, _, points in rows]),
        au=np.stack([s.au for s in sources]).reshape(len(rows), len(writer.au_names)),
        subject=[subject] * len(rows),
        frame=[s.frame for s in sources],
        sequence=None if sources[0].sequence is None else [s.sequence for s in sources],
        partition=None if sources[0].partition is None else [s.partition for s in sources],
    )
    rows.clear()


# ----------------------------------------------------------------------------- the run
def parts_folder(out: Path) -> Path:
    """Where the per-subject part files of a conversion into ``out`` live until the merge."""
    return out.with_name(out.name + ".parts")


def part_path(out: Path, subject: str) -> Path:
    """The part file of one subject."""
    return parts_folder(out) / (re.sub(r"[^A-Za-z0-9_.-]", "_", subject) + ".h5")


def lock_path(out: Path) -> Path:
    """The lock file that the conversion writing ``out`` holds (:func:`one_writer`)."""
    return out.with_name(out.name + ".lock")


@contextlib.contextmanager
def one_writer(out: Path) -> Iterator[None]:
    """Make this the one conversion writing ``out`` until the block ends, or refuse.

    Two conversions into one ``out`` would resume from each other's unfinished parts, fail on
    the part the other is writing, and the first to finish deletes the parts folder under the
    second. So each holds an advisory lock on ``<out>.lock`` (naming its pid and host), removed
    when the block ends however it ends; a killed conversion's lock is taken over by the next
    (:mod:`aunet.locks`). Folders created to hold the lock file are removed again if nothing
    else went into them (a conversion refused while planning leaves nothing behind).

    Raises:
        ConversionError: naming ``out`` and the conversion that holds it.
    """
    out = Path(out)
    # The folder resolved, so that two spellings of one output (a symlinked folder, a relative
    # path) meet at one lock file; the parts and the partial store go into that folder too.
    path = lock_path(out.parent.resolve() / out.name)
    created = [folder for folder in path.parents if not folder.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = advisory_lock(path, f"--out {out}", "conversion into this file")
    except LockHeldError as held:
        holder = f" ({held.holder})" if held.holder else ""
        raise ConversionError(
            f"--out {out}: another conversion{holder} is writing it; wait for it to end or "
            "choose another --out"
        ) from None
    try:
        yield
    finally:
        if handle is not None:
            release_lock(handle, remove=True)
        else:  # no flock here (warned): nothing to hand over, just tidy up
            path.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the store, its parts, or someone else's files
                break


def _finished_part(part: Path, settings: Settings) -> SubjectReport | None:
    """The report of a part a previous run completed with the same settings, else None."""
    if not part.is_file():
        return None
    try:
        store = FrameStore(part)
    except StoreError:
        return None  # damaged: convert the subject again
    if store.attrs.get("prep_options") != settings.fingerprint():
        return None
    report = SubjectReport(**json.loads(store.attrs["prep_report"]))
    report.status = "resumed"
    return report


def run_conversion(
    jobs: Sequence[SubjectJob], settings: Settings, out: Path, workers: int = 1
) -> list[SubjectReport]:
    """Convert every subject, print the report, and merge the parts into ``out``.

    Args:
        jobs: one job per subject, in the order the rows should have in the store.
        settings: dataset, AU names, crop, storage and detector options.
        out: the frame store to write.
        workers: subjects converted at once, each in its own process (1: in this process).

    Returns:
        The per-subject reports, in job order.

    Raises:
        ConversionError: if a subject failed (after the report, which says why); the finished
            subjects stay in ``<out>.parts`` and a re-run of the same command converts only
            the rest. Also if the detector is needed but not installed.
    """
    out = Path(out)
    names = [job.subject for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"subjects repeat among the jobs: {names}")
    parts_folder(out).mkdir(parents=True, exist_ok=True)
    reports: dict[str, SubjectReport] = {}
    todo = []
    for job in jobs:
        finished = _finished_part(part_path(out, job.subject), settings)
        if finished is None:
            todo.append(job)
        else:
            reports[job.subject] = finished
    if any(job.needs_detector for job in todo):
        require_detector()
    with tqdm(
        total=sum(job.num_frames for job in todo),
        desc=f"{settings.dataset}: {len(todo)} subject(s)",
        unit="frame",
        dynamic_ncols=True,
    ) as bar:
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                reports[job.subject] = _guarded(
                    job.subject,
                    convert_subject,
                    job,
                    settings,
                    part_path(out, job.subject),
                    bar.update,
                )
        else:
            reports.update(_run_pool(todo, settings, out, workers, bar))
    ordered = [reports[name] for name in names]
    print(format_report(ordered), flush=True)
    failed = [report.subject for report in ordered if report.status == "failed"]
    if failed:
        kept = len(ordered) - len(failed)
        raise ConversionError(
            f"{len(failed)} of {len(ordered)} subject(s) failed ({', '.join(failed)}; see the "
            f"report above). {out} was not written; the {kept} finished subject(s) are kept in "
            f"{parts_folder(out)}, so re-running the same command converts only the rest"
        )
    report_json = json.dumps([asdict(report) for report in ordered])
    total = merge_stores(
        [part_path(out, name) for name in names], out, attrs={"prep_report": report_json}
    )
    shutil.rmtree(parts_folder(out))
    size = out.stat().st_size / 2**20
    print(f"wrote {total} frames of {len(names)} subject(s) to {out} ({size:.1f} MiB)", flush=True)
    return ordered


def convert_from_args(
    args: argparse.Namespace,
    jobs: Sequence[SubjectJob],
    dataset: str,
    au_names: Sequence[str],
    source: str,
) -> list[SubjectReport]:
    """:func:`run_conversion` with the options of :func:`add_common_arguments`.

    Args:
        args: the parsed command line.
        jobs: one job per subject.
        dataset: the store's dataset name.
        au_names: the store's AU columns.
        source: where the raw data came from (provenance; part of the resume check).
    """
    settings = Settings.from_args(args, dataset, au_names, source)
    return run_conversion(jobs, settings, args.out, args.workers)


def _guarded(subject: str, function: Callable[..., SubjectReport], *args: Any) -> SubjectReport:
    """``function(*args)``, or a failed report that says why."""
    try:
        return function(*args)
    except Exception as error:  # one subject's failure must not stop the others
        return _failure(subject, error)


def _failure(subject: str, error: BaseException) -> SubjectReport:
    if isinstance(error, INPUT_ERRORS):
        note = str(error)
    else:
        note = "unexpected error:\n" + "".join(traceback.format_exception(error))
    return SubjectReport(subject, status="failed", notes=[note])


# A worker process's handle on the shared frame counter that drives the progress bar.
_frames_done: Any = None


def _init_worker(counter: Any) -> None:
    global _frames_done
    _frames_done = counter
    cv2.setNumThreads(1)  # the parallelism is one subject per process; no oversubscription


def _count_frames(n: int) -> None:
    with _frames_done.get_lock():
        _frames_done.value += n


def _convert_in_worker(job: SubjectJob, settings: Settings, part: Path) -> SubjectReport:
    return convert_subject(job, settings, part, _count_frames)


def _run_pool(
    jobs: Sequence[SubjectJob], settings: Settings, out: Path, workers: int, bar: tqdm
) -> dict[str, SubjectReport]:
    # spawn, not fork: a forked child would share the parent's HDF5 and OpenCV state.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    reports = {}
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(counter,),
    ) as pool:
        futures: dict[Future, str] = {
            pool.submit(_convert_in_worker, job, settings, part_path(out, job.subject)): job.subject
            for job in jobs
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                if counter.value > bar.n:
                    bar.update(counter.value - bar.n)
                for future in done:
                    subject = futures[future]
                    error = future.exception()
                    reports[subject] = (
                        future.result() if error is None else _failure(subject, error)
                    )
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return reports


def format_report(reports: Sequence[SubjectReport]) -> str:
    """The per-subject report as an aligned text table, a total row, then any notes."""
    columns = ("written", "detected", "no_landmarks", "unlabelled", "unknown_labels")
    header = ("subject", *columns, "status")
    rows = [
        (
            r.subject,
            *(str(getattr(r, c)) if r.status != "failed" else "-" for c in columns),
            r.status,
        )
        for r in reports
    ]
    totals = [sum(getattr(r, c) for r in reports if r.status != "failed") for c in columns]
    rows.append(("total", *(str(t) for t in totals), ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            text.ljust(width) if i in (0, len(header) - 1) else text.rjust(width)
            for i, (text, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    for report in reports:
        lines += [f"{report.subject}: {note}" for note in report.notes]
    return "\n".join(lines)
