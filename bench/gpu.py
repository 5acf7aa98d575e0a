"""One-shot GPU benchmark: training, inference and loader images/s per strategy, against the peak.

Made for a short window on one CUDA GPU (``python -m bench.gpu``, ``make bench-gpu``; under 8
minutes): every measurement has a time budget, and a total limit skips what would run past it,
the most wanted figures first. Per strategy (every key of :data:`aunet.models.STRATEGIES`,
each built as ``experiments/<name>.yaml`` says over a randomly initialised FAN of
``experiments/fan.yaml``'s architecture, as :mod:`bench.train_step` builds it; no download),
at 256 px, in bf16 autocast with the network channels-last:

* training images/s (Lightning's ``training_step``, backward and Adam's step on a device-resident
  random batch) at batch 48 (the paper's) and at the largest batch that fits, found by doubling
  from 48 until the GPU runs out of memory (``torch.cuda.OutOfMemoryError`` caught, memory
  freed) or ``--max-batch``; eager, then with the network under ``torch.compile`` (its first
  step, which compiles, timed apart);
* inference images/s (the deployed network, reparametrisation folded, and the decoding of its
  maps, under ``torch.inference_mode``) at batch 48 and the largest that fits;
* each rate beside its limit P/F (:class:`bench.common.Limit`): F the counted GFLOPs per image
  (forward + backward when training, by ``torch.utils.flop_counter``), P the GPU's dense bf16
  peak from :data:`BF16_PEAK_TFLOPS` by device name (else the measured bf16 matrix product,
  which is printed beside it in any case).

Then the loader: images/s reaching the GPU from ``DataLoader`` workers (as ``AUDataModule``
builds it: JPEG frame store, ``TrainAugmentation``, pinned memory) with each ``--workers`` count,
against the fastest training rate. Device decode is not measured: aunet has no device-decode
path yet (issue 16, item 3), and the output says so.

Timing: warm-up steps are excluded, every timed step ends in ``torch.cuda.synchronize`` (so the
clock sees the GPU's work, not its queue), and a rate is the steps that fit in
``--seconds`` (at least 3) over their time. Rows go to ``bench/BENCHMARKS.md``
under "GPU" with the command, date, device and torch version (``--no-record``: print only).

``--device cpu --quick`` is the dry run that the test suite runs: 64 px, batch 2 (largest
searched up to 4), one step each, ``torch.compile`` with its ``eager`` backend (graph capture
without code generation, which takes minutes on a CPU), one loader worker: every code path but
the CUDA-only calls.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from aunet.data.augment import TrainAugmentation
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.models import STRATEGIES, ReparametrisedFAN
from aunet.models.complexity import inference_flops
from aunet.training import AUHeatmapModule
from aunet.training.precision import AUTO, BF16_MIXED, FLOAT32, choose_precision
from bench.common import (
    Limit,
    cpu_peaks,
    flop_rate,
    images_rate,
    matmul_gflops,
    record,
    synchronize,
)
from bench.data_pipeline import write_store
from bench.storage import face_crops
from bench.train_step import build_module, random_batch, step_function, step_gflops

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, by a part of the CUDA device name,
#: most specific first, and where each number comes from.
BF16_PEAK_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("H200", 790.0, "issue 16's figure; NVIDIA's H200 SXM datasheet gives 989"),
    ("H100 PCIe", 756.0, "NVIDIA H100 datasheet, PCIe"),
    ("H100", 989.0, "NVIDIA H100 datasheet, SXM"),
    ("A100", 312.0, "NVIDIA A100 datasheet"),
    ("L40S", 362.0, "NVIDIA L40S datasheet"),
)
PAPER_BATCH = 48
#: The strategies timed under ``torch.compile`` by default, in order: the issue's target
#: (adapt) first. The others build one of these networks again (finetune: scratch's light FAN;
#: random_backbone and adapt_finetune: adapt's), and each compilation takes up to a minute.
COMPILED = ("adapt", "reparam", "scratch", "attention", "resnet18")
#: What a compiled measurement may take (compilation included): none starts with less left.
COMPILE_SECONDS = 60.0
#: Distinct face crops in the loader's store (repeated up to its size).
DISTINCT_CROPS = 240
#: Side of the square matrices whose product a GPU's peak is checked with.
GPU_PEAK_SIDE = 8192


@dataclass(frozen=True)
class Settings:
    """What one run measures and how long it may take.

    Args:
        device: where the networks run.
        bf16: whether they run under bf16 autocast (else float32).
        image_size: the input side.
        batch_size: the first batch (the paper's 48).
        max_batch: the largest batch the doubling tries.
        seconds: the time budget of one rate.
        warmup: untimed steps before each rate.
        min_steps: timed steps at least, whatever the budget.
        compile_backend: ``torch.compile``'s backend.
        workers: the loader's worker counts.
        loader_frames: frames in the loader's store.
        time_limit: seconds after which measurements not yet started are skipped.
    """

    device: torch.device
    bf16: bool
    image_size: int
    batch_size: int
    max_batch: int
    seconds: float
    warmup: int
    min_steps: int
    compile_backend: str
    workers: tuple[int, ...]
    loader_frames: int
    time_limit: float
    start: float = field(default_factory=time.perf_counter)

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """Whether less than ``reserve`` seconds of the ``time_limit`` are left."""
        return time.perf_counter() - self.start > self.time_limit - reserve


def table_peak(name: str) -> tuple[float, str] | None:
    """The dense bf16 peak in TFLOP/s of the CUDA device ``name``, and its source, if known."""
    for part, tflops, source in BF16_PEAK_TFLOPS:
        if part in name:
            return tflops, source
    return None


def device_peak(device: torch.device, precision: str) -> tuple[float, str]:
    """P in GFLOP/s for ``precision`` on ``device``, and where it comes from.

    A GPU's bf16 peak comes from :data:`BF16_PEAK_TFLOPS`, with the measured matrix product
    beside it; a GPU not in the table, or float32, gets the measured product itself; a CPU gets
    :func:`bench.common.cpu_peaks`.
    """
    if device.type != "cuda":
        return cpu_peaks()[precision], "best matrix product of this process"
    dtype = torch.bfloat16 if precision == BF16_MIXED else torch.float32
    measured = matmul_gflops(dtype, device, GPU_PEAK_SIDE)
    product = f"measured {GPU_PEAK_SIDE}^2 {dtype} matmul: {flop_rate(measured)}"
    name = torch.cuda.get_device_name(device)
    known = table_peak(name) if precision == BF16_MIXED else None
    if known is not None:
        return 1e3 * known[0], f"dense bf16, {known[1]}; {product}"
    return measured, f"{product} ({name}: no {precision} peak in the table)"


def free_memory(device: torch.device) -> None:
    """Return the memory of dropped tensors to the device (after an OOM, between strategies)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed_rate(step: Callable[[], object], images: int, settings: Settings) -> float:
    """Images/s of ``step`` over the steps that fit in the budget, warm-up steps excluded."""
    for _ in range(settings.warmup):
        step()
    synchronize(settings.device)
    steps, start = 0, time.perf_counter()
    while steps < settings.min_steps or time.perf_counter() - start < settings.seconds:
        step()
        synchronize(settings.device)
        steps += 1
    return images * steps / (time.perf_counter() - start)


def largest_batch(fits: Callable[[int], object], settings: Settings) -> int | None:
    """The largest of batch_size x 2^k (up to ``max_batch``) that ``fits`` runs.

    A batch that raises a RuntimeError does not fit: out of memory
    (``torch.cuda.OutOfMemoryError``) or, in some kernels, past 32-bit indexing (2^31 elements
    in one tensor: about 2,000 images at 256 px). None when even ``batch_size`` fails. The
    memory is freed after the exception is left: its traceback holds the frames, and through
    them the tensors, of the failed step.
    """
    largest, batch = None, settings.batch_size
    while batch <= settings.max_batch:
        failed = False
        try:
            fits(batch)
        except RuntimeError:
            failed = True
        free_memory(settings.device)
        if failed:
            break
        largest, batch = batch, 2 * batch
    return largest


def device_batch(batch_size: int, settings: Settings) -> dict[str, torch.Tensor]:
    """A random training batch (:func:`bench.train_step.random_batch`) on the device."""
    batch = random_batch(batch_size, settings.image_size)
    return {key: value.to(settings.device) for key, value in batch.items()}


def training_step(
    module: AUHeatmapModule, batch_size: int, settings: Settings
) -> Callable[[], None]:
    """One optimisation step of ``module`` on a random device batch of ``batch_size``."""
    return step_function(module, device_batch(batch_size, settings), settings.bf16)


def inference_step(
    module: AUHeatmapModule, batch_size: int, settings: Settings
) -> Callable[[], object]:
    """One deployed forward pass and decoding of a uint8 batch, as ``AUPredictor`` runs it."""
    side = settings.image_size
    images = torch.randint(0, 256, (batch_size, 3, side, side), dtype=torch.uint8,
                           device=settings.device)  # fmt: skip

    @torch.inference_mode()
    def step() -> object:
        with torch.autocast(settings.device.type, torch.bfloat16, enabled=settings.bf16):
            return module.decode_output(module(images), side)

    return step


def deployed(module: AUHeatmapModule) -> AUHeatmapModule:
    """``module`` for inference as ``aunet-predict`` runs it: eval mode, reparametrisation folded.

    The training's gradients are dropped first, so inference gets the memory they held.
    """
    module.zero_grad(set_to_none=True)
    if isinstance(module.model, ReparametrisedFAN):
        module.model = module.model.fold()
    module.model.to(memory_format=torch.channels_last)
    return module.eval()


@dataclass
class StrategyResult:
    """One strategy's figures, filled in as the phases run.

    Args:
        train_gflops: counted GFLOPs of a training step per image (forward + backward).
        infer_gflops: counted GFLOPs of the deployed network per image.
        largest_train: the largest training batch that fits (None: not even batch 48).
        largest_infer: the same for inference.
        rates: images/s by measurement (``train, batch 48``, ...).
        notes: what else a row says (compile times, failures).
    """

    train_gflops: float
    infer_gflops: float = 0.0
    largest_train: int | None = None
    largest_infer: int | None = None
    rates: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def gflops(self, key: str) -> float:
        """F of measurement ``key``."""
        return self.train_gflops if key.startswith("train") else self.infer_gflops


def rate_at_sizes(
    result: StrategyResult,
    kind: str,
    make_step: Callable[[int], Callable[[], object]],
    settings: Settings,
) -> int | None:
    """Rates of ``kind`` (train, inference) at batch 48 and the largest that fits; the largest.

    The doubling runs two steps of each size: the second also holds what the first left (Adam's
    state when training).
    """

    def twice(size: int) -> None:
        step = make_step(size)
        step()
        step()

    largest = largest_batch(twice, settings)
    sizes = () if largest is None else dict.fromkeys((settings.batch_size, largest))
    for batch in sizes:
        result.rates[f"{kind}, batch {batch}"] = timed_rate(make_step(batch), batch, settings)
        free_memory(settings.device)
    return largest


def measure_eager(name: str, settings: Settings) -> StrategyResult:
    """Phase 1 of a strategy: eager training and inference at batch 48 and the largest."""
    module = build_module(name, channels_last=True).to(settings.device)
    result = StrategyResult(step_gflops(module, device_batch(2, settings)))
    result.largest_train = rate_at_sizes(
        result, "train", lambda size: training_step(module, size, settings), settings
    )
    module = deployed(module)
    result.infer_gflops = inference_flops(module.model, settings.image_size) / 1e9
    result.largest_infer = rate_at_sizes(
        result, "inference", lambda size: inference_step(module, size, settings), settings
    )
    return result


def measure_compiled(name: str, batch: int, result: StrategyResult, settings: Settings) -> None:
    """Phase 3: training at ``batch`` with the network under ``torch.compile``.

    A failure (out of memory, or the compiler's) becomes a note of the row instead of ending a
    run whose eager figures are already measured: a GPU window may not come twice.
    """
    key = f"train, batch {batch}, compiled"
    module = build_module(name, channels_last=True).to(settings.device)
    module.model = torch.compile(module.model, backend=settings.compile_backend)
    try:
        step = training_step(module, batch, settings)
        start = time.perf_counter()
        step()  # compiles
        synchronize(settings.device)
        result.notes[f"{key}, first step (compiling)"] = f"{time.perf_counter() - start:.0f} s"
        result.rates[key] = timed_rate(step, batch, settings)
    except Exception as error:  # any failure: see the docstring
        result.notes[key] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    del module
    free_memory(settings.device)


def loader_rate(path: Path, workers: int, settings: Settings) -> float:
    """Images/s that ``workers`` DataLoader workers deliver onto the device, start-up excluded.

    The loader is built as ``AUDataModule`` builds its training loader; its first batches (one
    per worker: the workers' start-up) are the warm-up.
    """
    dataset = FrameDataset(path, transform=TrainAugmentation(settings.image_size))
    loader = DataLoader(
        dataset, batch_size=settings.batch_size, shuffle=True, num_workers=workers,
        collate_fn=collate_frames, pin_memory=settings.device.type == "cuda", drop_last=True,
        persistent_workers=True,
    )  # fmt: skip

    def epochs() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield from loader

    stream = epochs()

    def step() -> None:
        next(stream)["image"].to(settings.device, non_blocking=True)

    try:
        for _ in range(workers):
            step()
        return timed_rate(step, settings.batch_size, settings)
    finally:
        stream.close()  # the loader, and with it its workers, goes with this frame
        dataset.store.close()


def table(results: dict[str, StrategyResult], peak_gflops: float) -> str:
    """Every strategy's rates beside their limits, one line each, for the terminal."""
    header = f"{'strategy':<16}{'measurement':<30}{'images/s':>11}{'limit P/F':>11}{'share':>8}"
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        for key, rate in result.rates.items():
            limit = Limit(peak_gflops, result.gflops(key))
            lines.append(
                f"{name:<16}{key:<30}{rate:>11,.0f}{limit.images_per_s:>11,.0f}"
                f"{limit.share(rate):>8.1%}"
            )
    return "\n".join(lines)


def figures_of(result: StrategyResult, peak_gflops: float) -> dict[str, str]:
    """One strategy's figures for its row: each rate beside its limit, then the notes."""
    figures = {
        "GFLOP/img": f"training {result.train_gflops:.2f}, inference {result.infer_gflops:.2f}",
        "largest batch": f"training {result.largest_train}, inference {result.largest_infer}",
    }
    for key, rate in result.rates.items():
        figures[key] = Limit(peak_gflops, result.gflops(key)).describe(rate)
    return {**figures, **result.notes}


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    """The command line, and the settings it makes (``--quick``: the dry run's tiny sizes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="the dry run's tiny sizes")
    parser.add_argument(
        "--precision", default=AUTO, choices=(AUTO, BF16_MIXED, FLOAT32),
        help="auto (default): bf16-mixed where the device computes bf16 natively",
    )  # fmt: skip
    parser.add_argument("--strategies", nargs="+", default=tuple(STRATEGIES),
                        choices=tuple(STRATEGIES))  # fmt: skip
    parser.add_argument(
        "--compile", nargs="*", default=COMPILED, choices=tuple(STRATEGIES), metavar="STRATEGY",
        help="strategies also timed compiled, in this order (default: %(default)s; none: empty)",
    )  # fmt: skip
    parser.add_argument("--image-size", type=int, help="default 256 (--quick: 64)")
    parser.add_argument("--max-batch", type=int, help="default 1536 (--quick: 4)")
    parser.add_argument("--seconds", type=float, help="time budget of a rate: 2 (--quick: 0)")
    parser.add_argument(
        "--workers", type=int, nargs="+",
        help="loader worker counts (default: 4 and every core; --quick: 1)",
    )  # fmt: skip
    parser.add_argument("--compile-backend", help="default: inductor on CUDA, eager on a CPU")
    parser.add_argument(
        "--time-limit", type=float, default=420.0,
        help="seconds after which what has not started is skipped (%(default)s)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-record", action="store_true", help="print only, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.exit(1, "bench.gpu: no CUDA GPU here, nothing measured (a CPU dry run: "
                       "python -m bench.gpu --device cpu --quick --no-record)\n")  # fmt: skip
    batch = 2 if args.quick else PAPER_BATCH
    settings = Settings(
        device=device,
        bf16=choose_precision(args.precision, device.type).precision == BF16_MIXED,
        image_size=args.image_size or (64 if args.quick else 256),
        batch_size=batch,
        max_batch=args.max_batch or (2 if args.quick else 32) * batch,
        seconds=args.seconds if args.seconds is not None else 0.0 if args.quick else 2.0,
        warmup=1 if args.quick else 3,
        min_steps=1 if args.quick else 3,
        compile_backend=args.compile_backend or ("inductor" if device.type == "cuda" else "eager"),
        workers=tuple(args.workers or ((1,) if args.quick else (4, os.cpu_count() or 1))),
        loader_frames=(6 if args.quick else 40) * batch,
        time_limit=args.time_limit,
    )
    return args, settings


def main(argv: Sequence[str] | None = None) -> dict[str, StrategyResult]:
    """Measure what the time limit allows, print the table, record a row per strategy."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, settings = parse(argv)
    device = settings.device
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer here: log is a no-op
    precision = BF16_MIXED if settings.bf16 else FLOAT32
    peak, source = device_peak(device, precision)
    results: dict[str, StrategyResult] = {}
    skipped: list[str] = []
    for name in args.strategies:  # phase 1: eager, every strategy
        if settings.out_of_time():
            skipped.append(name)
            continue
        print(f"bench.gpu: {name}, eager", flush=True)
        results[name] = measure_eager(name, settings)
        free_memory(device)
    loader: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:  # phase 2: the loader
        # Distinct crops cost their drawing time; repeated, they cost the loader the same.
        distinct = face_crops(min(settings.loader_frames, DISTINCT_CROPS), settings.image_size)
        crops = np.resize(distinct, (settings.loader_frames, *distinct.shape[1:]))
        store = write_store(Path(folder) / "frames.h5", crops, "jpeg")
        for workers in settings.workers:
            if settings.out_of_time():
                skipped.append(f"loader with {workers} workers")
                continue
            print(f"bench.gpu: loader, {workers} workers", flush=True)
            loader[workers] = loader_rate(store, workers, settings)
    # Phase 3, compiled: every strategy at batch 48 before any at its largest batch.
    for largest in (False, True):
        for name in (name for name in args.compile if name in results):
            result = results[name]
            batch = result.largest_train if largest else settings.batch_size
            if batch is None or (largest and batch == settings.batch_size):
                continue
            if settings.out_of_time(COMPILE_SECONDS):
                skipped.append(f"{name} compiled at batch {batch}")
                continue
            print(f"bench.gpu: {name}, compiled, batch {batch}", flush=True)
            measure_compiled(name, batch, result, settings)
    print(table(results, peak))
    command = shlex.join(["python", "-m", "bench.gpu", *argv])
    common = {
        "peak P": f"{flop_rate(peak)} ({source})",
        "settings": f"{settings.image_size} px, {precision}, channels-last, a rate is "
        f"{settings.seconds:g} s (>= {settings.min_steps} steps) after {settings.warmup} "
        f"warm-up steps, compile backend {settings.compile_backend}",
    }
    write = not args.no_record
    for name, result in results.items():
        figures = {"strategy": name, **common, **figures_of(result, peak)}
        record("GPU", figures, command=command, write=write)
    fastest = max((rate for result in results.values() for key, rate in result.rates.items()
                   if key.startswith("train")), default=0.0)  # fmt: skip
    figures = {"strategy": "loader", **common}
    for workers, rate in loader.items():
        versus = f" = {rate / fastest:.2f}x the fastest training rate" if fastest else ""
        figures[f"{workers} workers, JPEG store"] = images_rate(rate) + versus
    figures["device decode"] = "not measured: aunet has no device-decode path yet (issue 16, 3)"
    figures["skipped (time limit)"] = ", ".join(skipped) or "nothing"
    figures["run took"] = f"{time.perf_counter() - settings.start:.0f} s"
    record("GPU", figures, command=command, write=write)
    return results


if __name__ == "__main__":
    main()
