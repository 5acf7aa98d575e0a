"""Run every benchmark in sequence: ``python -m bench [--quick] [--only NAME ...]``.

``make bench`` runs it (``make bench QUICK=1`` adds ``--quick``). Each benchmark is also a
module of its own (``python -m bench.<name>``) and records its rows in ``bench/BENCHMARKS.md``
itself; this runner calls them one after another in this process, with
``--quick`` where the benchmark has a quick mode (fewer frames, steps or a smaller batch, which
its rows' commands say), each starting with ``--threads`` torch threads (a benchmark that
measures per core sets one thread itself; every row states its thread count), and then records
how long each took under "Benchmark runs".
``--quick`` runs in under 5 minutes on a 2-core CPU; the full run takes much longer.
Every network rate printed (training step, inference) stands beside its limit P/F
(:class:`bench.common.Limit`). :mod:`bench.gpu` is not run here: it needs a CUDA GPU
(``make bench-gpu``).
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Sequence

import torch

from bench.common import record

#: Benchmark modules in running order, and whether each takes ``--quick``.
BENCHMARKS: dict[str, bool] = {
    "complexity": False,
    "heatmaps": False,
    "bootstrap": False,
    "storage": True,
    "synthetic_speed": True,
    "data_pipeline": True,
    "train_step": True,
    "inference": True,
}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the chosen benchmarks; returns the seconds each took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--only", nargs="+", choices=tuple(BENCHMARKS), help="just these")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="torch threads each benchmark starts with (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    seconds: dict[str, float] = {}
    for name in args.only or BENCHMARKS:
        print(f"\n=== bench.{name} ===", flush=True)
        start = time.perf_counter()
        torch.set_num_threads(args.threads)  # undo what the previous benchmark set
        importlib.import_module(f"bench.{name}").main(
            ["--quick"] if args.quick and BENCHMARKS[name] else []
        )
        seconds[name] = time.perf_counter() - start
    figures = {name: f"{value:.0f} s" for name, value in seconds.items()}
    figures["total"] = f"{sum(seconds.values()):.0f} s"
    command = f"python -m bench --threads {args.threads}" + " --quick" * args.quick
    if args.only:
        command += " --only " + " ".join(args.only)
    record("Benchmark runs", figures, command=command)
    return seconds


if __name__ == "__main__":
    main()
