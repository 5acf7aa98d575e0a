"""Training step speed per strategy: the project's defaults vs the naive way vs the CPU's peak.

Each strategy's :class:`aunet.training.AUHeatmapModule` is built exactly as
``experiments/<name>.yaml`` over ``experiments/base.yaml`` says (via :mod:`bench.complexity`),
over a randomly initialised FAN of ``experiments/fan.yaml``'s architecture, for DISFA's 12 AUs.
A timed step is what Lightning runs per batch: ``training_step`` on a uint8 batch (forward,
targets, loss, metric update), ``backward`` and Adam's ``step``, on the same random batch
(B x 3 x S x S images, landmarks inside the crop, intensities 0-5). Configurations, in the same
process and run:

* ``default``: what ``aunet fit`` does (``experiments/base.yaml``): float32
  (``precision: 32-true``), the network in channels-last memory format (the module's
  ``channels_last=True``), targets drawn for the batch in one :func:`aunet.heatmaps.au_targets`
  call;
* ``naive``: float32, default (contiguous) memory format, targets drawn per sample in numpy
  (:func:`bench.heatmaps.per_sample_targets`; timed inside the step here, where a per-sample
  pipeline would spend it in its DataLoader workers);
* ``bf16``: the defaults under bfloat16 autocast (``--trainer.precision bf16-mixed``).

FLOPs convention: a step's FLOPs are counted, not estimated, by ``torch.utils.flop_counter``
over one forward + backward pass of the module in training mode (convolutions and matrix
products, a multiply-add being 2 FLOPs; frozen backbones need no weight gradients, so their
steps cost less than the usual 3x the forward FLOPs of ``bench/results/complexity.json``).
Each rate is printed beside its limit P/F (:class:`bench.common.Limit`): F that count per
image, P the best 2048 x 2048 ``torch.mm`` of the same process with the same threads in the
configuration's arithmetic (float32; for ``bf16``, :func:`bench.common.cpu_peaks`), measured
before each strategy (the best of the run: other jobs on a shared machine slow it too). The
share of the limit is the share of P that the step's arithmetic reaches.

Run ``python -m bench.train_step`` (``--quick``: batch 8 and 2 timed steps instead of 48 and
3); figures go to ``bench/BENCHMARKS.md`` under "Training step".
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from aunet.models import FANConfig
from aunet.training import AUHeatmapModule
from aunet.training.common import OptimiserSettings
from aunet.training.precision import BF16_MIXED, FLOAT32
from bench.common import Limit, best_time, cpu_peaks, record
from bench.complexity import model_section
from bench.heatmaps import AUS, per_sample_targets, random_labels

STRATEGIES = ("scratch", "adapt", "attention", "reparam", "resnet18")
CONFIGURATIONS = ("default", "naive", "bf16")


def build_module(name: str, channels_last: bool) -> AUHeatmapModule:
    """The module ``experiments/<name>.yaml`` trains, over a random FAN of ``fan.yaml``'s shape."""
    init_args = dict(model_section(name)["init_args"])
    fan_config = FANConfig.from_dict(model_section("fan")["init_args"]["fan_config"])
    init_args.update(au_names=AUS, fan_config=asdict(fan_config), channels_last=channels_last)
    module = AUHeatmapModule(**init_args)
    module.on_fit_start()  # what Lightning calls first: the channels-last switch
    return module.train()


def random_batch(batch_size: int, image_size: int) -> dict[str, torch.Tensor]:
    """A batch as the DataLoader delivers it: uint8 images, landmarks, intensities, rows."""
    landmarks, intensities = random_labels(batch_size)
    landmarks *= image_size / 256
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8,
                               generator=generator),
        "landmarks": torch.from_numpy(landmarks),
        "au": torch.from_numpy(intensities),
        "index": torch.arange(batch_size),
    }  # fmt: skip


def draw_per_sample(module: AUHeatmapModule) -> None:
    """Make ``module`` draw its targets the naive way: per sample, in numpy, then stacked."""

    def draw(
        landmarks: torch.Tensor, truth: torch.Tensor, image_size: int, heatmap_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return per_sample_targets(landmarks.numpy(), truth.numpy(), image_size, heatmap_size)

    module.draw_targets = draw


def step_function(
    module: AUHeatmapModule, batch: dict[str, torch.Tensor], bf16: bool
) -> Callable[[], None]:
    """One optimisation step on ``batch``, as Lightning's automatic optimisation runs it."""
    optimiser = OptimiserSettings(1e-4, 1e-6, None).build(module, 1)["optimizer"]
    device = batch["image"].device.type

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        precision = torch.autocast(device, torch.bfloat16) if bf16 else contextlib.nullcontext()
        with precision:
            loss = module.training_step(batch, 0)
        loss.backward()
        optimiser.step()

    return step


def step_gflops(module: AUHeatmapModule, batch: dict[str, torch.Tensor]) -> float:
    """Counted GFLOPs of forward + backward per image (see the module docstring)."""
    small = {key: value[:2] for key, value in batch.items()}
    with FlopCounterMode(display=False) as counter:
        module.training_step(small, 0).backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2 / 1e9


def measure(
    name: str, configuration: str, batch: dict[str, torch.Tensor], steps: int
) -> dict[str, Any]:
    """Images/s (best step of ``steps`` after one warm-up) and GFLOPs/image of one pairing."""
    module = build_module(name, channels_last=configuration != "naive")
    if configuration == "naive":
        draw_per_sample(module)
    gflops = step_gflops(module, batch)
    seconds = best_time(step_function(module, batch, configuration == "bf16"), repeats=steps)
    return {"images_per_s": len(batch["image"]) / seconds, "gflops_per_image": gflops}


def row(
    name: str, results: dict[str, dict[str, Any]], peaks: dict[str, float], seconds: float
) -> dict[str, str]:
    """One strategy's figures: each configuration's rate beside its limit P/F."""
    figures = {"strategy": name}
    for configuration, result in results.items():
        peak = peaks[BF16_MIXED if configuration == "bf16" else FLOAT32]
        limit = Limit(peak, result["gflops_per_image"])
        figures[configuration] = limit.describe(result["images_per_s"])
    if {"default", "naive"} <= results.keys():
        ratio = results["default"]["images_per_s"] / results["naive"]["images_per_s"]
        figures["default / naive"] = f"{ratio:.2f}x"
    figures["measured in"] = f"{seconds:.0f} s"
    return figures


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Measure every strategy in every configuration and record one row per strategy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 timed steps")
    parser.add_argument("--batch-size", type=int, help="default 48 (8 with --quick)")
    parser.add_argument("--steps", type=int, help="timed steps (default 3, 2 with --quick)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    parser.add_argument("--configurations", nargs="+", default=CONFIGURATIONS,
                        choices=CONFIGURATIONS)  # fmt: skip
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    batch_size = args.batch_size or (8 if args.quick else 48)
    steps = args.steps or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer here: log is a no-op
    batch = random_batch(batch_size, args.image_size)
    command = (
        f"python -m bench.train_step --batch-size {batch_size} --steps {steps} "
        f"--image-size {args.image_size} --threads {args.threads}"
    )
    if tuple(args.configurations) != CONFIGURATIONS:  # a row says what it left out
        command += " --configurations " + " ".join(args.configurations)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    peaks: dict[str, float] = {}
    seconds = {}
    for name in args.strategies:
        # Other jobs on a shared machine slow the matmul too: the peak is the best of all runs.
        for precision, peak in cpu_peaks().items():
            peaks[precision] = max(peak, peaks.get(precision, 0.0))
        start = time.perf_counter()
        results[name] = {c: measure(name, c, batch, steps) for c in args.configurations}
        seconds[name] = time.perf_counter() - start
    for name, result in results.items():
        record("Training step", row(name, result, peaks, seconds[name]), command=command)
    return results


if __name__ == "__main__":
    main()
