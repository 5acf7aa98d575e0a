"""Parameters and FLOPs of every experiment's model, beside the paper's Table 5.

Run as ``python -m bench.complexity`` (``make bench-complexity``). Each experiment's model is
built exactly as its config says (``experiments/base.yaml`` overlaid with
``experiments/<name>.yaml``), for 12 AUs (DISFA) over a randomly initialised FAN of the
architecture that ``experiments/fan.yaml`` pre-trains, and counted at 256 x 256 by
:mod:`aunet.models.complexity` (parameters, trainable parameters, inference GFLOPs with
reparametrisation folded; the same counting as ``make table``'s complexity block, which counts
each row's own trained network instead).

Writes ``bench/results/complexity.json`` as ``{"<experiment>": {"params": int,
"trainable_params": int, "gflops": float}}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from aunet.evaluation.paper_results import PAPER_TABLE_5
from aunet.evaluation.table_rows import METHOD_NAMES
from aunet.launch import experiment_names
from aunet.models import FAN, FANConfig, build_strategy, measure_architecture

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
RESULTS = ROOT / "bench" / "results" / "complexity.json"
NUM_AUS = 12  # DISFA, as in Table 5
IMAGE_SIZE = 256
FAN_MODULE = "aunet.training.FANModule"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``override`` on ``base`` as LightningCLI does for a list of config files.

    Mappings merge key by key; a section whose ``class_path`` changes starts its ``init_args``
    afresh, since the new class does not take the old one's arguments.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "class_path" in value and value["class_path"] != old.get("class_path"):
                old = {key: item for key, item in old.items() if key != "init_args"}
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


def model_section(name: str, folder: Path = EXPERIMENTS) -> dict[str, Any]:
    """The resolved ``model`` section of an experiment (base overlaid with the experiment)."""
    config: dict[str, Any] = {}
    for path in (folder / "base.yaml", folder / f"{name}.yaml"):
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return config["model"]


def build_model(name: str, fan_config: FANConfig, folder: Path = EXPERIMENTS) -> nn.Module:
    """The network an experiment trains, over a random FAN of ``fan_config`` where it needs one."""
    section = model_section(name, folder)
    init_args = section.get("init_args", {})
    if section["class_path"] == FAN_MODULE:
        return FAN(FANConfig.from_dict(init_args["fan_config"]))
    options = init_args.get("strategy_args") or {}
    return build_strategy(init_args["strategy"], NUM_AUS, FAN(fan_config), **options)


def measure(name: str, fan_config: FANConfig, folder: Path = EXPERIMENTS) -> dict[str, Any]:
    """An experiment's parameters, trainable parameters and GFLOPs of one 256 x 256 image."""
    cost = measure_architecture(lambda: build_model(name, fan_config, folder), IMAGE_SIZE)
    return {
        "params": cost.params,
        "trainable_params": cost.trainable_params,
        "gflops": round(cost.gflops, 3),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """The measured numbers beside Table 5, with the ratio measured / paper."""
    header = (
        f"{'experiment':<16}{'params':>12}{'trainable':>12}{'GFLOPs':>8}   "
        f"{'Table 5 row':<19}{'params':>8}{'GFLOPs':>8}{'x params':>10}{'x FLOPs':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, row in results.items():
        measured = (
            f"{name:<16}{row['params']:>12,}{row['trainable_params']:>12,}{row['gflops']:>8.2f}"
        )
        if name in PAPER_TABLE_5:
            printed = PAPER_TABLE_5[name]
            paper = (
                f"   {METHOD_NAMES[name]:<19}{printed.params / 1e6:>7.2f}M"
                f"{printed.flops / 1e9:>8.2f}{row['params'] / printed.params:>10.2f}"
                f"{row['gflops'] * 1e9 / printed.flops:>9.2f}"
            )
        else:
            paper = "   -"
        lines.append(measured + paper)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Measure every experiment, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    parser.add_argument("--experiments", type=Path, default=EXPERIMENTS, help="config folder")
    args = parser.parse_args(argv)
    fan_section = model_section("fan", args.experiments)
    fan_config = FANConfig.from_dict(fan_section["init_args"]["fan_config"])
    results = {
        name: measure(name, fan_config, args.experiments)
        for name in experiment_names(args.experiments)
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
