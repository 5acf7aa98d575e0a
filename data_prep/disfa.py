"""``python -m data_prep disfa --root DIR --out FILE.h5``: DISFA, left camera.

Expected layout under ``--root`` (as DISFA ships)::

    Videos_LeftCamera/LeftVideoSN001_comp.avi
    ActionUnit_Labels/SN001/SN001_au1.txt      one per AU: 1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26
    Landmark_Points/SN001/tmp_frame_lm/*.mat   66 x 2 `pts`, one file per frame (also found
                                               under Landmark_Points/Landmark_Points/)

Each label file has one ``frame,intensity`` row per video frame, frame numbers from 1; label
frame i is the i-th decoded video frame, and the store's ``frame`` is that number. Landmark files
are named ``l0001_lm.mat`` (frame 1) or ``SN001_0000_lm.mat`` (frame 1, counted from 0); frames
whose file is missing get landmarks from the detector, but a subject without any landmark file is
refused (DISFA ships them with its subjects, so that means a layout aunet does not know). The 66
points become 68 by :func:`landmarks_66_to_68`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aunet.aus import DATASET_AUS, INNER_LIP_66_TO_68, NUM_LANDMARKS
from aunet.faces.video import frame_count, read_frames
from data_prep.common import (
    ConversionError,
    SourceFrame,
    SubjectJob,
    SubjectReport,
    add_common_arguments,
    collect,
    convert_from_args,
    read_label_file,
    read_mat_points,
    select_subjects,
)

VIDEOS = "Videos_LeftCamera"
LABELS = "ActionUnit_Labels"
LANDMARKS = "Landmark_Points"
#: Where a subject's landmark folder may be, under ``--root``: as DISFA ships it, or one level
#: deeper, a layout that public DISFA scripts read.
LANDMARK_FOLDERS = (LANDMARKS, f"{LANDMARKS}/{LANDMARKS}")
LAYOUT = (
    f"<root>/{VIDEOS}/LeftVideoSN001_comp.avi, <root>/{LABELS}/SN001/SN001_au1.txt, "
    f"<root>/{LANDMARKS}/SN001/tmp_frame_lm/l0001_lm.mat"
)
#: Landmark file names: (pattern, number of the first frame in it).
_LANDMARK_NAMES = ((re.compile(r"^l(\d+)_lm\.mat$"), 1), (re.compile(r"^.+_(\d+)_lm\.mat$"), 0))
# The inner mouth corners 60 and 64, which the 66-point scheme lacks, are placed a quarter of the
# way from the outer corner towards the middle of the two neighbouring inner-lip points.
_OUTER_CORNER_WEIGHT = 0.75


def landmarks_66_to_68(points: np.ndarray) -> np.ndarray:
    """Convert 66-point iBUG landmarks (DISFA, iCCR) to the 68-point scheme.

    The 66-point scheme is the 68-point one without the inner mouth corners 60 and 64 (see
    ``aunet.aus``): points 0-59 are shared, and the 66-point inner-lip points 60-65 are the
    68-point 61, 62, 63, 65, 66, 67. Each missing inner corner is filled in as
    ``0.75 * outer corner + 0.25 * mean(the two inner-lip points beside it)`` (48 with 61 and
    67; 54 with 63 and 65): on closed and open mouths alike the lips meet a little inside the
    outer corner, half-way between the upper and lower inner lip. On dlib's 68 points for
    ``skimage.data.astronaut()`` this lands within 2 pixels (4% of the eye-corner distance) of
    the annotated inner corners. Table 1's AU locations do not use points 60 and 64.

    Args:
        points: 66 x 2 landmarks (68 x 2 are returned unchanged).
    """
    points = np.asarray(points, dtype=np.float32)
    if points.shape == (NUM_LANDMARKS, 2):
        return points
    if points.shape != (66, 2):
        raise ValueError(f"expected 66 x 2 landmarks, got shape {points.shape}")
    full = np.empty((NUM_LANDMARKS, 2), dtype=np.float32)
    full[:60] = points[:60]
    full[list(INNER_LIP_66_TO_68)] = points[60:]
    w = _OUTER_CORNER_WEIGHT
    full[60] = w * full[48] + (1 - w) * (full[61] + full[67]) / 2
    full[64] = w * full[54] + (1 - w) * (full[63] + full[65]) / 2
    return full


@dataclass
class DisfaJob(SubjectJob):
    """One DISFA subject: its video, its K x N labels and its landmark files by frame."""

    video: Path
    labels: np.ndarray
    landmark_files: dict[int, Path]

    def frames(self, report: SubjectReport) -> Iterator[SourceFrame]:
        """Decode the video; frame i (from 1) takes label row i and landmark file i."""
        count = self.labels.shape[0]
        decoded = 0
        for decoded, image in enumerate(read_frames(self.video), 1):
            if decoded > count:
                break
            landmarks_file = self.landmark_files.get(decoded)
            landmarks = None
            if landmarks_file is not None:
                landmarks = landmarks_66_to_68(read_mat_points(landmarks_file, "pts", (66, 68)))
            yield SourceFrame(
                image,
                decoded,
                self.labels[decoded - 1],
                landmarks,
                clip=self.subject,
                landmarks_from=str(landmarks_file) if landmarks_file else None,
            )
        if decoded != count:
            what = f"more than {count}" if decoded > count else str(decoded)
            raise ConversionError(
                f"{self.video}: decodes {what} frames, but the label files in "
                f"{self.video.parent.parent / LABELS / self.subject} have {count} rows; DISFA "
                "label frame i is the i-th video frame, so the two counts must agree"
            )
        missing = count - len(self.landmark_files)
        if missing:
            report.notes.append(f"{missing} frame(s) without a landmark file: detector used")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the DISFA converter's arguments."""
    add_common_arguments(
        parser,
        root_help=f"the DISFA folder, holding {VIDEOS}, {LABELS} and {LANDMARKS}",
        root_required=True,
    )


def main(args: argparse.Namespace) -> None:
    """Convert DISFA as the parsed arguments say."""
    jobs = plan(args.root, args.subjects)
    convert_from_args(args, jobs, "disfa", DATASET_AUS["disfa"], str(args.root.resolve()))


def plan(root: Path, subjects: list[str] | None = None) -> list[DisfaJob]:
    """Check the DISFA folders and labels and make one job per subject.

    Raises:
        ConversionError: listing every problem found (missing folder, video or label file,
            label files that disagree with each other or with the video's frame count, bad
            intensities, unrecognised landmark file names, a subject without landmark files).
    """
    for folder in (root, root / VIDEOS, root / LABELS):
        if not folder.is_dir():
            raise ConversionError(f"{folder}: folder missing; expected the DISFA layout {LAYOUT}")
    available = [p.name for p in (root / LABELS).iterdir() if re.fullmatch(r"SN\d+", p.name)]
    chosen = select_subjects(available, subjects, root / LABELS)
    return collect(chosen, lambda subject: _plan_subject(root, subject))


def _plan_subject(root: Path, subject: str) -> DisfaJob:
    video = root / VIDEOS / f"LeftVideo{subject}_comp.avi"
    if not video.is_file():
        raise ConversionError(f"{video}: video missing for {subject}; expected the layout {LAYOUT}")
    labels = _read_labels(root / LABELS / subject, subject)
    declared = frame_count(video)
    if declared is not None and declared != len(labels):
        raise ConversionError(
            f"{video}: {declared} frames, but the label files in {root / LABELS / subject} have "
            f"{len(labels)} rows; DISFA label frame i is the i-th video frame, so the two "
            "counts must agree"
        )
    landmark_files = _subject_landmarks(root, subject, len(labels))
    return DisfaJob(
        subject=subject,
        num_frames=len(labels),
        needs_detector=len(landmark_files) < len(labels),
        video=video,
        labels=labels,
        landmark_files=landmark_files,
    )


def _read_labels(folder: Path, subject: str) -> np.ndarray:
    """The N x K intensities of a subject; every AU file must cover frames 1..N in order."""
    if not folder.is_dir():
        raise ConversionError(f"{folder}: label folder missing; expected the layout {LAYOUT}")
    columns = []
    first: Path | None = None
    for au in DATASET_AUS["disfa"]:
        path = folder / f"{subject}_au{int(au[2:])}.txt"
        if not path.is_file():
            raise ConversionError(
                f"{path}: label file missing; DISFA has one per AU, "
                f"{subject}_au1.txt ... {subject}_au26.txt"
            )
        frames, values = read_label_file(path)
        if not np.array_equal(frames, np.arange(1, len(frames) + 1)):
            raise ConversionError(f"{path}: frame numbers must run 1, 2, ..., N, one per row")
        if columns and len(values) != len(columns[0]):
            raise ConversionError(
                f"{path}: {len(values)} rows, but {first} has {len(columns[0])}; every AU file "
                "of a subject labels the same frames"
            )
        first = first or path
        columns.append(values)
    return np.stack(columns, axis=1)


def _subject_landmarks(root: Path, subject: str, count: int) -> dict[int, Path]:
    """A subject's landmark files by 1-based frame.

    They come from the first of :data:`LANDMARK_FOLDERS` that holds any ``.mat`` file for it.

    Raises:
        ConversionError: if none of its ``count`` frames has a landmark file (docs/errors.md,
            E54). DISFA ships landmark files with its subjects, so none at all means a layout
            this converter does not know, not frames to send to the detector; a subject with
            some files keeps the per-frame fallback for the rest.
    """
    folders = [root / name / subject for name in LANDMARK_FOLDERS]
    folder = next((f for f in folders if f.is_dir() and any(f.rglob("*.mat"))), folders[0])
    files = _landmark_files(folder, count)
    if not files:
        raise ConversionError(
            f"{subject}: no landmark file for any of its {count} frames (looked in "
            f"{' and '.join(map(str, folders))} for tmp_frame_lm/l0001_lm.mat or "
            f"tmp_frame_lm/{subject}_0000_lm.mat); DISFA ships one per frame, so check the layout"
        )
    return files


def _landmark_files(folder: Path, count: int) -> dict[int, Path]:
    """Landmark files by 1-based frame number (an absent folder means none)."""
    files: dict[int, Path] = {}
    if not folder.is_dir():
        return files
    unrecognised = []
    for path in sorted(folder.rglob("*.mat")):
        for pattern, first_frame in _LANDMARK_NAMES:
            match = pattern.match(path.name)
            if match:
                frame = int(match.group(1)) + 1 - first_frame
                if frame in files:
                    raise ConversionError(
                        f"{path}: frame {frame} again (also {files[frame]}); one landmark file "
                        "per frame"
                    )
                files[frame] = path
                break
        else:
            unrecognised.append(path.name)
    if unrecognised and not files:
        raise ConversionError(
            f"{folder}: landmark file names such as {unrecognised[0]!r} not understood; "
            "expected l0001_lm.mat (frames from 1) or SN001_0000_lm.mat (frames from 0)"
        )
    return {frame: path for frame, path in files.items() if 1 <= frame <= count}
