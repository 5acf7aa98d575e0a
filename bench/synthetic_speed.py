"""Time the synthetic face generator.

Frames/s of one process at 64, 128 and 256 pixels, and of a whole store written with every core.

Run ``python -m bench.synthetic_speed`` (``--quick`` for a short run); the figures go to
``bench/BENCHMARKS.md`` under "Synthetic faces".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aunet.synthetic.draw import generate, write_store
from bench.common import best_time, record


def frames_per_second(size: int, frames: int) -> float:
    """Frames/s of :func:`generate` in this process (rendering only), best of 3."""
    seconds = best_time(lambda: list(generate(["SN001", "SN002"], frames // 2, size)), repeats=3)
    return frames / seconds


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames (noisier figures)")
    args = parser.parse_args(argv)
    frames = 100 if args.quick else 400
    figures = {
        f"{size} px, 1 process": f"{frames_per_second(size, frames):.0f} frames/s"
        for size in (64, 128, 256)
    }
    workers = os.cpu_count() or 1
    per_subject = 20 if args.quick else 100
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = write_store(
            Path(folder) / "synthetic.h5", 27, per_subject, size=128, workers=workers
        )
        seconds = time.perf_counter() - start
    figures[f"store, 27 x {per_subject} frames, 128 px, JPEG, {workers} workers"] = (
        f"{seconds:.1f} s ({summary.frames / seconds:.0f} frames/s, start-up included)"
    )
    record("Synthetic faces", figures, command="python -m bench.synthetic_speed")


if __name__ == "__main__":
    main()
