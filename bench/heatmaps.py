"""Time drawing a batch of AU target heatmaps (12 DISFA AUs, 64 x 64 maps) on this machine."""

from __future__ import annotations

import torch

from aunet.aus import DATASET_AUS
from aunet.heatmaps import au_targets
from bench.common import best_time, record


def main() -> None:
    """Draw 256 samples' targets, best of 5, and record it."""
    generator = torch.Generator().manual_seed(0)
    landmarks = 60 + 130 * torch.rand(256, 68, 2, generator=generator)
    intensities = torch.randint(0, 6, (256, 12), generator=generator).float()
    seconds = best_time(lambda: au_targets(landmarks, intensities, DATASET_AUS["disfa"], 256, 64))
    record(
        "Heatmap targets",
        {
            "batch 256 x 12 AUs x 64x64, CPU": f"{seconds * 1e3:.0f} ms",
            "samples/s": f"{256 / seconds:.0f}",
        },
        command="python -m bench.heatmaps",
    )


if __name__ == "__main__":
    main()
