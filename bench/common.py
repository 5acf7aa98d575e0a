"""Shared helpers for benchmarks: timing, the physical limit of a rate, recording results.

The limit of a network's rate: on a device of peak P GFLOP/s, a network of F GFLOP per image
cannot run faster than P/F images per second (:class:`Limit`). P is the best matrix product of
the arithmetic the figure runs in (:func:`cpu_peaks` on a CPU), F the network's FLOPs
counted by ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs; forward + backward for a
training step).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from aunet.training.precision import BF16_MIXED, FLOAT32, cpu_bf16

BENCHMARKS_MD = Path(__file__).with_name("BENCHMARKS.md")
#: The CPU flags that decide how fast convolutions run (float32 SIMD width, native bf16).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
#: Side of the square matrices whose product measures a CPU's peak.
PEAK_SIDE = 2048


def machine() -> str:
    """A one-line description of this machine: CPU model and flags, cores, accelerator."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    # Every core repeats the same fields: the first of each describes the CPU.
    fields: dict[str, str] = {}
    for key, _, value in (line.partition(":") for line in lines):
        fields.setdefault(key.strip(), value.strip())
    cpu = fields.get("model name", platform.processor() or platform.machine())
    flags = set(fields.get("flags", "").split())
    present = [flag for flag in CPU_FLAGS if flag in flags]
    missing = [flag for flag in CPU_FLAGS if flag not in flags]
    features = ", ".join(present) or "none of " + "/".join(CPU_FLAGS)
    if present and missing:
        features += "; no " + ", ".join(missing)
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu} ({features}), {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; a CPU has none queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    side: int = PEAK_SIDE,
    repeats: int = 5,
) -> float:
    """GFLOP/s of the best ``side x side`` matrix product in ``dtype`` on ``device``."""
    device = torch.device(device)
    a = torch.rand(side, side, dtype=dtype, device=device)
    b = torch.rand(side, side, dtype=dtype, device=device)

    def product() -> None:
        torch.mm(a, b)
        synchronize(device)

    return 2 * side**3 / best_time(product, repeats=repeats) / 1e9


def cpu_peaks() -> dict[str, float]:
    """P of this process's CPU threads per precision (``32-true``, ``bf16-mixed``), in GFLOP/s.

    Each is the best matrix product of its arithmetic. Without native bf16 (no AVX512_BF16 or
    AMX, :func:`aunet.training.precision.cpu_bf16`) oneDNN computes bf16 convolutions in
    float32, so float32's peak bounds them too; bf16's own matrix product is then emulated
    element by element (0.2 GFLOP/s at 2048 on an AVX2-only EPYC: 100 s a product) and not
    measured.
    """
    fp32 = matmul_gflops()
    bf16 = fp32
    if cpu_bf16().precision == BF16_MIXED:
        bf16 = max(fp32, matmul_gflops(torch.bfloat16))
    return {FLOAT32: fp32, BF16_MIXED: bf16}


def flop_rate(gflops_per_s: float) -> str:
    """A FLOP rate in GFLOP/s, or TFLOP/s from 10,000 GFLOP/s on (GPUs)."""
    if gflops_per_s >= 1e4:
        return f"{gflops_per_s / 1e3:,.0f} TFLOP/s"
    return f"{gflops_per_s:.0f} GFLOP/s"


def images_rate(images_per_s: float, unit: str = "img/s") -> str:
    """A rate with about three significant digits (1.35, 14.2, 143, 12,345)."""
    digits = 2 if images_per_s < 10 else 1 if images_per_s < 100 else 0
    return f"{images_per_s:,.{digits}f} {unit}"


@dataclass(frozen=True)
class Limit:
    """The physical limit of a network's rate on a device: P/F images per second.

    Args:
        peak_gflops: P, the device's peak in GFLOP/s for the arithmetic the network runs in.
        gflops_per_image: F, the network's counted GFLOPs per image (forward + backward when
            training).
    """

    peak_gflops: float
    gflops_per_image: float

    @property
    def images_per_s(self) -> float:
        """P/F: the rate at which the network would keep the device's arithmetic busy."""
        return self.peak_gflops / self.gflops_per_image

    def share(self, images_per_s: float) -> float:
        """The fraction of the limit that ``images_per_s`` reaches (also its share of P)."""
        return images_per_s / self.images_per_s

    def describe(self, images_per_s: float, unit: str = "img/s") -> str:
        """``images_per_s`` beside the limit: ``14.2 img/s = 66% of P/F = 195 GFLOP/s / ...``."""
        return (
            f"{images_rate(images_per_s, unit)} = {self.share(images_per_s):.0%} of the limit "
            f"P/F = {flop_rate(self.peak_gflops)} / {self.gflops_per_image:.2f} GFLOP "
            f"= {images_rate(self.images_per_s, unit)}"
        )


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


def record(
    section: str, figures: dict[str, str], command: str | None = None, write: bool = True
) -> None:
    """Print ``figures`` and append them as a dated row under ``## section`` in BENCHMARKS.md.

    The row holds the date, the command that produced it and the machine, so every figure in
    the file can be traced and re-measured, and torch's thread count and the load average: the
    machine's cores may be shared with other jobs, which slows wall-clock figures. ``write``
    False prints the figures only (a dry run).
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
    if not write:
        return
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
