"""``python -m data_prep 300w-lp --root DIR --out FILE.h5``: 300W-LP faces for FAN pre-training.

Expected layout under ``--root`` (as 300W-LP ships)::

    AFW/AFW_134212_1_0.jpg
    landmarks/AFW/AFW_134212_1_0_pts.mat     `pts_2d`, 68 x 2 (x, y) image pixels

Every folder beside ``landmarks`` is a subset (AFW, HELEN, IBUG, LFPW and their ``_Flip``
mirrors). The store has no AUs; its ``subject`` is the subset, its ``sequence`` the image name
and its ``frame`` the image's 1-based position in its subset (by name). Landmarks here are
training targets, so an image without its landmark file is left out (never given detector
landmarks), and a subset without a landmark folder (300W-LP ships none for the ``_Flip``
subsets; training flips images anyway) is skipped with a note.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from aunet.faces.images import read_image
from data_prep.common import (
    ConversionError,
    SourceFrame,
    SubjectJob,
    SubjectReport,
    add_common_arguments,
    convert_from_args,
    read_mat_points,
    select_subjects,
    usable_landmarks,
)

LANDMARKS = "landmarks"
LAYOUT = f"<root>/AFW/<name>.jpg with <root>/{LANDMARKS}/AFW/<name>_pts.mat"


@dataclass
class SubsetJob(SubjectJob):
    """One 300W-LP subset: its images and, for each, its landmark file or None."""

    images: list[Path]
    landmark_files: list[Path | None]

    def frames(self, report: SubjectReport) -> Iterator[SourceFrame]:
        """Images with usable landmarks, in name order; the others are counted and skipped."""
        for number, (image, points_file) in enumerate(
            zip(self.images, self.landmark_files, strict=True), 1
        ):
            points = read_mat_points(points_file, "pts_2d", (68,)) if points_file else None
            if not usable_landmarks(points):
                report.no_landmarks += 1
                continue
            yield SourceFrame(
                partial(read_image, image, ConversionError),
                number,
                np.zeros(0, np.float32),
                points,
                sequence=image.stem,
                landmarks_from=str(points_file),
            )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the 300W-LP converter's arguments."""
    add_common_arguments(
        parser,
        root_help=f"the 300W-LP folder: subset folders and {LANDMARKS}/",
        root_required=True,
    )


def main(args: argparse.Namespace) -> None:
    """Convert 300W-LP as the parsed arguments say."""
    convert_from_args(args, plan(args.root, args.subjects), "300w-lp", (), str(args.root.resolve()))


def plan(root: Path, subsets: list[str] | None = None) -> list[SubsetJob]:
    """One job per subset that has a landmark folder (those without are printed and skipped).

    Raises:
        ConversionError: for a missing root or landmarks folder, or no subset with landmarks.
    """
    for folder in (root, root / LANDMARKS):
        if not folder.is_dir():
            raise ConversionError(f"{folder}: folder missing; expected the 300W-LP layout {LAYOUT}")
    found = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name != LANDMARKS and any(p.glob("*.jpg"))
    )
    unmarked = [name for name in found if not (root / LANDMARKS / name).is_dir()]
    if unmarked:
        print(f"skipping subsets without a {LANDMARKS}/ folder: {', '.join(unmarked)}")
    available = [name for name in found if name not in unmarked]
    jobs = []
    for subset in select_subjects(available, subsets, root):
        images = sorted((root / subset).glob("*.jpg"))
        points = [root / LANDMARKS / subset / f"{image.stem}_pts.mat" for image in images]
        landmark_files = [path if path.is_file() else None for path in points]
        with_landmarks = sum(path is not None for path in landmark_files)
        jobs.append(
            SubsetJob(
                subject=subset,
                num_frames=with_landmarks,
                needs_detector=False,
                images=images,
                landmark_files=landmark_files,
            )
        )
    return jobs
