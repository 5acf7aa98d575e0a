"""AU target heatmaps: drawn for the whole batch in one call vs per sample in numpy.

The training module draws the targets of a batch on the batch's device in one batched call
(:func:`aunet.heatmaps.au_targets`, 12 DISFA AUs, 64 x 64 maps for 256 x 256 inputs). The naive
way, :func:`numpy_targets`, draws them one sample at a time in the ``Dataset`` with numpy, as a
per-sample pipeline would, and the DataLoader then collates them. Both run on the same batch in
the same process; the ratio is naive time over batched time.

:func:`numpy_targets` is written from Table 1 (:data:`aunet.aus.AU_LOCATIONS`) and Eq. 1 as
:mod:`aunet.heatmaps` reads it, without any of that module's code, so that
``tests/bench/test_bench.py`` can use it as an independent reference for
:func:`aunet.heatmaps.au_targets`.

Run ``python -m bench.heatmaps [--batch-size 48]``; figures go to ``bench/BENCHMARKS.md``
under "Heatmap targets".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from aunet.aus import AU_LOCATIONS, DATASET_AUS
from aunet.heatmaps import SIGMA_AT_1, SIGMA_AT_5, au_targets
from bench.common import best_time, record

AUS = DATASET_AUS["disfa"]
IMAGE_SIZE = 256
HEATMAP_SIZE = 64


def numpy_targets(
    landmarks: np.ndarray,
    intensities: np.ndarray,
    au_names: Sequence[str],
    image_size: int,
    heatmap_size: int,
    sigma_at_1: float = SIGMA_AT_1,
    sigma_at_5: float = SIGMA_AT_5,
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's K x H x W target maps and K-mask, drawn Gaussian by Gaussian in numpy.

    Each AU's map is the pixel-wise maximum of ``a * exp(-d^2 / (2 sigma(a)^2))`` over its
    Table 1 slots whose landmarks are all known, centred on the slot's landmark mean scaled to
    the map and rounded to the nearest pixel; ``sigma(a)`` is the line through
    ``(1, sigma_at_1)`` and ``(5, sigma_at_5)``, at least 1e-3. The mask is False for an
    unknown (NaN) label and for an active AU with no drawable slot.
    """
    scale = heatmap_size / image_size
    ys, xs = np.mgrid[0:heatmap_size, 0:heatmap_size].astype(np.float32)
    maps = np.zeros((len(au_names), heatmap_size, heatmap_size), np.float32)
    mask = np.zeros(len(au_names), bool)
    for k, name in enumerate(au_names):
        label = float(intensities[k])
        amplitude = 0.0 if np.isnan(label) else label
        sigma = max(sigma_at_1 + (amplitude - 1.0) * (sigma_at_5 - sigma_at_1) / 4.0, 1e-3)
        drawn = False
        for slot in AU_LOCATIONS[name].slots():
            points = landmarks[list(slot)]
            if not slot or np.isnan(points).any():
                continue
            cx, cy = np.round(points.mean(axis=0) * scale)
            gaussian = amplitude * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
            maps[k] = np.maximum(maps[k], gaussian)
            drawn = True
        mask[k] = not np.isnan(label) and (drawn or amplitude == 0)
    return maps, mask


def per_sample_targets(
    landmarks: np.ndarray,
    intensities: np.ndarray,
    image_size: int = IMAGE_SIZE,
    heatmap_size: int = HEATMAP_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive way: each sample's targets drawn in numpy, then collated as a DataLoader does."""
    samples = [
        numpy_targets(points, labels, AUS, image_size, heatmap_size)
        for points, labels in zip(landmarks, intensities, strict=True)
    ]
    maps, mask = default_collate(samples)
    return maps, mask


def batched_targets(landmarks: torch.Tensor, intensities: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The project's way: one :func:`au_targets` call for the batch (what the module does)."""
    return au_targets(landmarks, intensities, AUS, IMAGE_SIZE, HEATMAP_SIZE)


def random_labels(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks spread over a 256 x 256 face crop and 0-5 intensities, some unknown."""
    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(60, 190, (batch, 68, 2)).astype(np.float32)
    intensities = rng.integers(0, 6, (batch, len(AUS))).astype(np.float32)
    intensities[rng.random(intensities.shape) < 0.05] = np.nan
    return landmarks, intensities


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    """Time both ways on one batch, best of 5, and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=48, help="the training batch")
    args = parser.parse_args(argv)
    landmarks, intensities = random_labels(args.batch_size)
    as_tensors = torch.from_numpy(landmarks), torch.from_numpy(intensities)
    batched = best_time(lambda: batched_targets(*as_tensors))
    naive = best_time(lambda: per_sample_targets(landmarks, intensities))
    batch = f"batch {args.batch_size} x {len(AUS)} AUs x {HEATMAP_SIZE}x{HEATMAP_SIZE}"
    figures = {
        f"{batch}, batched au_targets, CPU": f"{batched * 1e3:.1f} ms",
        f"{batch}, per sample in numpy + collate": f"{naive * 1e3:.1f} ms",
        "naive / batched": f"{naive / batched:.1f}x",
        "batched samples/s": f"{args.batch_size / batched:,.0f}",
    }
    record(
        "Heatmap targets",
        figures,
        command=f"python -m bench.heatmaps --batch-size {args.batch_size}",
    )
    return figures


if __name__ == "__main__":
    main()
