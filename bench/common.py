"""Shared helpers for benchmarks: timing and recording results in BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).with_name("BENCHMARKS.md")


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, accelerator."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def best_time(function: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Best wall-clock seconds of ``repeats`` calls after ``warmup`` calls (least noise)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def record(section: str, figures: dict[str, str], command: str | None = None) -> None:
    """Print ``figures`` and append them as a dated row under ``## section`` in BENCHMARKS.md.

    The row holds the date, the command that produced it and the machine, so every figure in
    the file can be traced and re-measured, and torch's thread count and the load average: the
    machine's cores may be shared with other jobs, which slows wall-clock figures.
    """
    script = Path(sys.argv[0]).with_suffix("")
    # `python -m bench.x` runs bench/x.py: name the module as the user typed it.
    module = f"bench.{script.name}" if script.parent.name == "bench" else script.name
    command = command or " ".join(["python -m", module, *map(shlex.quote, sys.argv[1:])])
    date = datetime.date.today().isoformat()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()[:2])
    figures = {
        **figures,
        "torch threads": str(torch.get_num_threads()),
        "load average (1, 5 min)": load,
    }
    values = "; ".join(f"{key}: {value}" for key, value in figures.items())
    for key, value in figures.items():
        print(f"{key:>40}: {value}")
    row = f"| {date} | `{command}` | {machine()} | {values} |\n"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    header = f"## {section}"
    if header not in text:
        text += f"\n{header}\n\n| date | command | machine | figures |\n|---|---|---|---|\n"
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    while end > start and not lines[end - 1].strip():
        end -= 1  # insert right after the section's last table row
    lines.insert(end, row)
    temporary = BENCHMARKS_MD.with_suffix(".md.tmp")
    temporary.write_text("".join(lines))
    temporary.replace(BENCHMARKS_MD)  # atomic: never a half-written BENCHMARKS.md
