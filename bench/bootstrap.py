"""Subject-bootstrap intervals on a DISFA-sized cross-validation report.

A report's intervals (:func:`aunet.evaluation.bootstrap.intervals`: 2,000 resamples of 27 subjects)
and a table's paired comparison (:func:`aunet.evaluation.bootstrap.paired_difference`) on DISFA's
size: 27 subjects, 4,845 frames each (130,815 frames), 12 AUs, made-up predictions. Beside them, the
cost of the direct way, scoring each resample's frames with :func:`aunet.metrics.icc` (one
call measured, times the resamples), which the per-subject sufficient statistics avoid.

Run ``python -m bench.bootstrap [--resamples 2000]``; figures go to ``bench/BENCHMARKS.md``
under "Bootstrap intervals".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from aunet.aus import DATASET_AUS
from aunet.evaluation.bootstrap import BootstrapSettings, intervals, paired_difference
from aunet.evaluation.predictions import Predictions
from aunet.metrics import icc
from bench.common import best_time, record

SUBJECTS, FRAMES_PER_SUBJECT = 27, 4845


def disfa_sized(seed: int) -> Predictions:
    """Made-up predictions of DISFA's size: subjects with their own level, 12 AUs."""
    rng = np.random.default_rng(seed)
    n, k = SUBJECTS * FRAMES_PER_SUBJECT, len(DATASET_AUS["disfa"])
    level = np.repeat(rng.uniform(0, 2, (SUBJECTS, k)), FRAMES_PER_SUBJECT, axis=0)
    true = np.clip(np.round(level + rng.normal(0, 1, (n, k))), 0, 5)
    pred = true + rng.normal(0, 0.8, (n, k))
    subjects = np.repeat([f"SN{i:03d}" for i in range(1, SUBJECTS + 1)], FRAMES_PER_SUBJECT)
    return Predictions(tuple(DATASET_AUS["disfa"]), subjects.astype(object), np.arange(n),
                       np.full(n, "1", dtype=object), true, pred)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    """Time the intervals and the paired comparison; record them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    settings = BootstrapSettings(resamples=args.resamples)
    first, second = disfa_sized(0), disfa_sized(1)
    second.subject[:] = first.subject  # the same subjects, as two methods' reports have
    report = best_time(lambda: intervals(first, settings), repeats=3)
    paired = best_time(lambda: paired_difference(first, second, settings), repeats=3)
    pred, true = torch.from_numpy(first.pred), torch.from_numpy(first.true)
    one_icc = best_time(lambda: icc(pred, true), repeats=3)
    figures = {
        "frames x AUs": f"{len(first)} x {len(first.au_names)}, {SUBJECTS} subjects",
        "resamples": str(args.resamples),
        "a report's intervals": f"{report:.2f} s",
        "a paired comparison": f"{paired:.2f} s",
        "direct way (icc() per resample, estimated)": f"{one_icc * args.resamples:.0f} s",
    }
    record("Bootstrap intervals", figures)
    return figures


if __name__ == "__main__":
    main()
