"""``python -m data_prep bp4d``: BP4D frames with the FERA2015 intensity labels.

Expected inputs::

    <images>/F001/T1/0001.jpg          frames <subject>/<task>/<frame>.jpg, any zero padding;
    <images>/F001.zip                  or one archive per subject holding the same tree
    <labels>/AU06/F001_T1_AU06.csv     rows `frame,intensity`, no header, 9 = unknown

``--images`` and ``--labels`` name the two folders; ``--root DIR`` finds them instead: labels in
``DIR/AU_INT``, ``DIR/AUCoding/AU_INT`` or ``DIR/AU Intensity Codes3.0`` (the FERA2015 release as
shipped), frames (subject folders or archives) in ``DIR``, ``DIR/Sequences``, ``DIR/images`` or
``DIR/BP4D-training`` (the release's). The labelled sequences (every ``<subject>_<task>`` with
label files) are converted, each AU file required; the store's ``sequence`` is
``<subject>_<task>`` and its ``partition`` comes from the official FERA2015 lists. BP4D ships no
68-point landmarks, so the detector places them. Label files may cover only part of a
sequence: frames without any label are left out (counted as ``unlabelled`` in the report),
frames with some labels are stored with NaN for the others.
"""

from __future__ import annotations

import argparse
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from aunet.aus import DATASET_AUS
from aunet.faces.images import decode_rgb, read_image
from data_prep.common import (
    ConversionError,
    SourceFrame,
    SubjectJob,
    SubjectReport,
    add_common_arguments,
    collect,
    convert_from_args,
    read_label_file,
    select_subjects,
)

AUS = DATASET_AUS["fera2015"]
#: FERA2015's "unknown" intensity code.
UNKNOWN = 9.0
#: The official FERA2015 partitions (the test subjects were never released).
TRAIN_SUBJECTS = tuple(f"F{n:03d}" for n in range(1, 24, 2)) + tuple(
    f"M{n:03d}" for n in range(1, 18, 2)
)
DEVEL_SUBJECTS = tuple(f"F{n:03d}" for n in range(2, 23, 2)) + tuple(
    f"M{n:03d}" for n in range(2, 19, 2)
)
#: Where ``--root`` looks for the intensity labels, in this order. The FERA2015 release ships them
#: as ``AU Intensity Codes3.0/`` beside ``AUCoding/`` (which there holds the occurrence codes), the
#: folder OpenFace's FERA2015 scripts read; the first two are other layouts in use.
LABEL_FOLDERS = ("AU_INT", "AUCoding/AU_INT", "AU Intensity Codes3.0")
#: Where ``--root`` looks for the frames, in this order (the release's are in ``BP4D-training/``);
#: ``--root`` itself comes first.
IMAGE_FOLDERS = (".", "Sequences", "images", "BP4D-training")
_SUBJECT = re.compile(r"[FM]\d{3}")
_LABEL_FILE = re.compile(r"(?P<subject>[A-Za-z]+\d+)_(?P<task>[^_]+)_(?P<au>AU\d+)\.csv", re.I)


def partition(subject: str) -> str:
    """``train`` or ``devel``, by the official FERA2015 lists.

    Raises:
        ConversionError: for a subject in neither list.
    """
    if subject in TRAIN_SUBJECTS:
        return "train"
    if subject in DEVEL_SUBJECTS:
        return "devel"
    raise ConversionError(
        f"{subject}: not in the FERA2015 training (F001, F003, ..., F023, M001, ..., M017) or "
        "development (F002, ..., F022, M002, ..., M018) lists"
    )


@dataclass
class LabelledSequence:
    """One labelled sequence: its frames with images, their image names and their labels.

    ``unseen`` counts the labelled frames that have no image.
    """

    task: str
    frames: np.ndarray
    names: list[str]
    labels: np.ndarray
    unseen: int


@dataclass
class Bp4dJob(SubjectJob):
    """One BP4D subject: where its frames are, and its labelled sequences."""

    archive: Path | None
    sequences: list[LabelledSequence]

    def frames(self, report: SubjectReport) -> Iterator[SourceFrame]:
        """Every frame with an image in the labelled sequences, sequence by sequence."""
        archive = open_archive(self.archive) if self.archive else None
        try:
            read: Callable[[str], np.ndarray] = (
                partial(_read_member, archive)
                if archive
                else lambda name: read_image(Path(name), ConversionError)
            )
            group = partition(self.subject)
            for sequence in self.sequences:
                name = f"{self.subject}_{sequence.task}"
                if sequence.unseen:
                    report.notes.append(
                        f"{name}: {sequence.unseen} labelled frame(s) without image"
                    )
                for frame, image, au in zip(
                    sequence.frames, sequence.names, sequence.labels, strict=True
                ):
                    yield SourceFrame(
                        partial(read, image),
                        int(frame),
                        au,
                        clip=name,
                        sequence=name,
                        partition=group,
                    )
        finally:
            if archive:
                archive.close()


#: What reading a damaged member raises: a bad CRC-32 or header (BadZipFile), deflated data
#: that does not inflate (zlib.error) or ends early (EOFError), a failed read (OSError).
_DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def open_archive(path: Path) -> zipfile.ZipFile:
    """Open a subject's zip archive.

    Raises:
        ConversionError: naming the file, if it is not a zip archive (cut short before its
            table of contents, or another kind of file).
    """
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ConversionError(
            f"{path}: not a readable zip archive ({error}); re-extract or re-download the archive"
        ) from None


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """Decode one frame of an archive.

    Raises:
        ConversionError: naming the archive and the member, if the member is damaged (its
            data do not match its CRC-32 or cannot be unpacked) or is not an image. Raised
            while converting, it fails the subject only (docs/errors.md, E43).
    """
    try:
        data = archive.read(name)
    except _DAMAGED_MEMBER as error:
        raise _damaged(archive, name, str(error)) from None
    image = decode_rgb(data)
    if image is None:
        raise _damaged(archive, name, "not a readable image")
    return image


def _damaged(archive: zipfile.ZipFile, name: str, reason: str) -> ConversionError:
    return ConversionError(
        f"{archive.filename}: member {name} is damaged ({reason}); re-extract or re-download "
        "the archive"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the BP4D converter's arguments."""
    add_common_arguments(
        parser,
        root_help="a folder holding the frames (subject folders or <subject>.zip, in it or in "
        "Sequences/, images/ or BP4D-training/) and the intensity labels (AU_INT/, "
        "AUCoding/AU_INT/ or AU Intensity Codes3.0/), e.g. the FERA2015 release as shipped",
        root_required=False,
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="the frames, <subject>/<task>/<frame>.jpg or <subject>.zip (overrides --root)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="DIR",
        help="the FERA2015 intensity labels (AU_INT or AU Intensity Codes3.0), "
        "AU06/F001_T1_AU06.csv ... (overrides --root)",
    )


def main(args: argparse.Namespace) -> None:
    """Convert BP4D / FERA2015 as the parsed arguments say."""
    images, labels = find_folders(args.root, args.images, args.labels)
    jobs = plan(images, labels, args.subjects)
    convert_from_args(
        args, jobs, "bp4d", AUS, f"images={images.resolve()} labels={labels.resolve()}"
    )


def find_folders(root: Path | None, images: Path | None, labels: Path | None) -> tuple[Path, Path]:
    """The frames and intensity label folders, from ``--images``/``--labels`` or ``--root``.

    ``--root`` may be the FERA2015 release as shipped (``BP4D-training/`` and
    ``AU Intensity Codes3.0/``) or one of the re-packed layouts (:data:`LABEL_FOLDERS`,
    :data:`IMAGE_FOLDERS`); the first candidate that holds what is needed wins.

    Raises:
        ConversionError: if neither is given, or ``--root`` holds no candidate for one of them:
            one sentence listing every layout looked for (docs/errors.md, E53).
    """
    if images is not None and labels is not None:
        return images, labels
    if root is None:
        raise ConversionError("bp4d: give --root DIR, or both --images DIR and --labels DIR")
    if not root.is_dir():
        raise ConversionError(
            f"{root}: folder missing; expected the BP4D frames and intensity labels in it"
        )
    if labels is None:
        # A candidate with per-AU folders wins; failing that, an existing one, whose missing AU
        # folders plan() then names one by one.
        existing = [p for p in (root / name for name in LABEL_FOLDERS) if p.is_dir()]
        with_aus = [p for p in existing if _has_au_folders(p)]
        labels = (with_aus or existing or [None])[0]
    if images is None:
        candidates = [root / name for name in IMAGE_FOLDERS]
        images = next((p for p in candidates if p.is_dir() and _subject_sources(p)), None)
    # Both halves are named at once, so that one run shows everything a wrong --root lacks.
    missing = []
    if labels is None:
        missing.append(
            "no FERA2015 intensity labels (looked for "
            + _listing(LABEL_FOLDERS)
            + f" in it, each holding {AUS[0]}/F001_T1_{AUS[0]}.csv ...; or give --labels DIR)"
        )
    if images is None:
        missing.append(
            "no BP4D frames (looked in it and in "
            + _listing(IMAGE_FOLDERS[1:])  # [0] is "." itself, "it" above
            + " for subject folders F001/T1/0001.jpg or archives F001.zip; or give --images DIR)"
        )
    if images is None or labels is None:
        raise ConversionError(f"{root}: " + " and ".join(missing))
    return images, labels


def _has_au_folders(folder: Path) -> bool:
    """Whether ``folder`` holds one of the per-AU label folders (``AU06/`` ...)."""
    return any((folder / au).is_dir() for au in AUS)


def _listing(names: tuple[str, ...]) -> str:
    """``a, b and c``: folder names for a message."""
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def _subject_sources(folder: Path) -> dict[str, Path]:
    """Subject -> its frames folder or zip archive (a folder wins over an archive)."""
    sources: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() == ".zip" and _SUBJECT.fullmatch(path.stem):
            sources.setdefault(path.stem, path)
        elif path.is_dir() and _SUBJECT.fullmatch(path.name):
            sources[path.name] = path
    return sources


def plan(images: Path, labels: Path, subjects: list[str] | None = None) -> list[Bp4dJob]:
    """Check the labels and frame lists and make one job per labelled subject.

    Raises:
        ConversionError: listing every problem found (missing folder, AU folder or label file,
            bad intensities, labelled sequences without frames, non-numeric frame names, a
            subject outside the FERA2015 lists).
    """
    for folder, what in ((images, "frames"), (labels, "AU_INT labels")):
        if not folder.is_dir():
            raise ConversionError(f"{folder}: folder missing; expected the BP4D {what} there")
    label_files = _label_files(labels)
    available = sorted({subject for subject, _ in label_files})
    chosen = select_subjects(available, subjects, labels)
    sources = _subject_sources(images)

    def plan_subject(subject: str) -> Bp4dJob:
        partition(subject)  # fail early for a subject outside the official lists
        tasks = sorted(task for s, task in label_files if s == subject)
        source = sources.get(subject)
        if source is None:
            raise ConversionError(
                f"{images}: no frames of {subject}; expected {images / subject}/<task>/<frame>.jpg"
                f" or {images / subject}.zip"
            )
        available_frames = _list_frames(source)
        sequences = [
            _plan_sequence(subject, task, label_files[subject, task], available_frames, source)
            for task in tasks
        ]
        return Bp4dJob(
            subject=subject,
            num_frames=sum(len(s.frames) for s in sequences),
            needs_detector=True,
            archive=None if source.is_dir() else source,
            sequences=sequences,
        )

    return collect(chosen, plan_subject)


def _label_files(labels: Path) -> dict[tuple[str, str], list[Path]]:
    """(subject, task) -> its label file per AU, in :data:`AUS` order; every one must exist."""
    found: dict[tuple[str, str], dict[str, Path]] = {}
    for au in AUS:
        folder = labels / au
        if not folder.is_dir():
            raise ConversionError(
                f"{folder}: folder missing; expected one folder per FERA2015 AU "
                f"({', '.join(AUS)}) holding <subject>_<task>_{au}.csv files"
            )
        for path in folder.iterdir():
            match = _LABEL_FILE.fullmatch(path.name)
            if match and match["au"].upper() == au:
                found.setdefault((match["subject"], match["task"]), {})[au] = path
    if not found:
        raise ConversionError(f"{labels}: no label files such as {AUS[0]}/F001_T1_{AUS[0]}.csv")
    missing = [
        labels / au / f"{subject}_{task}_{au}.csv"
        for (subject, task), files in sorted(found.items())
        for au in AUS
        if au not in files
    ]
    if missing:
        raise ConversionError(
            f"{missing[0]}: label file missing ({len(missing)} in all); every labelled "
            f"sequence needs one file per AU ({', '.join(AUS)})"
        )
    return {key: [files[au] for au in AUS] for key, files in found.items()}


def _list_frames(source: Path) -> dict[str, dict[int, str]]:
    """Task -> frame number -> image (a file path, or the member name in an archive)."""
    if source.is_dir():
        entries = [
            (path.parent.name, path.stem, str(path))
            for path in source.glob("*/*")
            if path.suffix.lower() == ".jpg"
        ]
    else:
        with open_archive(source) as archive:
            names = archive.namelist()
        entries = []
        for name in names:
            path = PurePosixPath(name)
            if path.suffix.lower() == ".jpg" and len(path.parts) >= 2:
                entries.append((path.parts[-2], path.stem, name))
    frames: dict[str, dict[int, str]] = {}
    for task, stem, name in entries:
        if not stem.isdigit():
            where = name if source.is_dir() else f"{source}:{name}"
            raise ConversionError(
                f"{where}: a frame file not named by its frame number (expected e.g. 0001.jpg)"
            )
        frames.setdefault(task, {})[int(stem)] = name
    return frames


def _plan_sequence(
    subject: str,
    task: str,
    files: list[Path],
    available: dict[str, dict[int, str]],
    source: Path,
) -> LabelledSequence:
    images = available.get(task)
    if not images:
        raise ConversionError(
            f"{source}: no frames of the labelled sequence {subject}_{task} (expected "
            f"{subject}/{task}/<frame>.jpg; labels in {files[0].parent.parent})"
        )
    frames = np.array(sorted(images), dtype=np.int64)
    row = {int(frame): i for i, frame in enumerate(frames)}
    labels = np.full((len(frames), len(files)), np.nan, dtype=np.float32)
    unseen: set[int] = set()
    for k, path in enumerate(files):
        label_frames, values = read_label_file(path, unknown=UNKNOWN)
        for frame, value in zip(label_frames.tolist(), values.tolist(), strict=True):
            if frame in row:
                labels[row[frame], k] = value
            else:
                unseen.add(frame)
    names = [images[int(frame)] for frame in frames]
    return LabelledSequence(task, frames, names, labels, len(unseen))
