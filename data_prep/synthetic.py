"""``python -m data_prep synthetic --out FILE.h5``: render the built-in synthetic face dataset.

Procedural faces with exact 68-point landmarks and the 12 DISFA AU intensities, under DISFA's
subject names so the DISFA folds apply (see ``docs/synthetic-faces.md``). With
``--landmark-only`` it writes the wider-pose, label-free variant for FAN pre-training.
"""

from __future__ import annotations

import argparse
import os

from tqdm import tqdm

from aunet.data.store import DEFAULT_ENCODING, ENCODINGS
from aunet.synthetic.draw import subject_names, write_store
from data_prep.common import MIN_IMAGE_SIDE, whole_number


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the synthetic generator's arguments to ``parser``."""
    parser.add_argument("--out", required=True, help="the .h5 frame store to write")
    parser.add_argument(
        "--subjects",
        type=whole_number(1),
        default=27,
        help="number of subjects; up to 27 take DISFA's names in turn from its three folds "
        "(default: 27)",
    )
    parser.add_argument(
        "--frames-per-subject",
        type=whole_number(1),
        default=200,
        help="frames per subject (default: 200)",
    )
    parser.add_argument(
        "--size",
        type=whole_number(MIN_IMAGE_SIDE),
        default=128,
        help="image side in pixels (default: 128)",
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument(
        "--landmark-only",
        action="store_true",
        help="the FAN pre-training variant: wider poses, random expressions, no AU labels",
    )
    parser.add_argument(
        "--workers",
        type=whole_number(1),
        default=min(os.cpu_count() or 1, 8),
        help="rendering processes; the output is the same for any number (default: CPU cores)",
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=DEFAULT_ENCODING,
        help=f"image encoding in the store (default: {DEFAULT_ENCODING})",
    )


def main(args: argparse.Namespace) -> None:
    """Render the dataset described by ``args`` and print a summary."""
    names = subject_names(args.subjects)
    total = len(names) * args.frames_per_subject
    with tqdm(total=total, unit="frame", desc="synthetic faces") as bar:
        summary = write_store(
            args.out,
            subjects=names,
            frames_per_subject=args.frames_per_subject,
            size=args.size,
            seed=args.seed,
            landmark_only=args.landmark_only,
            workers=args.workers,
            encoding=args.encoding,
            progress=bar.update,
        )
    counts = sorted(set(summary.frames_per_subject.values()))
    per_subject = counts[0] if len(counts) == 1 else summary.frames_per_subject
    print(
        f"wrote {summary.frames} frames ({len(names)} subjects x {per_subject} frames, "
        f"{args.size} px) to {summary.path} in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.0f} frames/s, {args.workers} worker(s))"
    )
    if summary.positive_rate:
        rates = ", ".join(f"{name} {rate:.2f}" for name, rate in summary.positive_rate.items())
        print(f"share of frames with intensity > 0: {rates}")
