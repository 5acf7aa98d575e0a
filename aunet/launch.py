"""The experiment launcher behind ``make train``, ``make fan`` (and ``make cv``, ``make table``).

It composes an experiment's configs (``experiments/base.yaml``, ``experiments/data/<data>.yaml``,
``experiments/<exp>.yaml``), builds what the built-in synthetic default needs when it is missing
(``data/synthetic.h5``, and a FAN pre-trained on synthetic landmark faces in
``checkpoints/fan_synthetic.ckpt``), picks the run folder (a new timestamp, or the latest one with
a ``last.ckpt`` when resuming), runs ``aunet fit`` in a child process (so that DDP can relaunch
it) and prints the run's summary.

Usage: ``python -m aunet.launch train --exp reparam --data synthetic [--fold 1] [--fan PATH]
[--resume] [-- extra aunet fit flags]`` and ``python -m aunet.launch fan [--data FILE.h5]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from aunet.data.folds import FOLD_DATASETS

EXPERIMENTS = Path("experiments")
RUNS = Path("runs")
CHECKPOINTS = Path("checkpoints")
#: Experiments whose strategy transfers from (or is shaped like) a FAN.
FAN_EXPERIMENTS = (
    "finetune", "adapt", "attention", "reparam", "adapt_finetune", "random_backbone", "scratch",
)  # fmt: skip
SYNTHETIC_STORE = Path("data/synthetic.h5")
SYNTHETIC_LANDMARK_STORE = Path("data/synthetic_landmarks.h5")


class LaunchError(RuntimeError):
    """A launch that cannot start; the message says what to do."""


def experiment_names() -> list[str]:
    """Every experiment with a config in ``experiments/`` (``fan`` included)."""
    return sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if p.stem != "base")


def dataset_names() -> list[str]:
    """Every dataset with a config in ``experiments/data/``."""
    return sorted(p.stem for p in (EXPERIMENTS / "data").glob("*.yaml"))


def config_files(experiment: str, dataset: str) -> list[Path]:
    """The configs an AU experiment composes, checked to exist."""
    if experiment not in experiment_names() or experiment == "fan":
        known = ", ".join(name for name in experiment_names() if name != "fan")
        raise LaunchError(f"unknown experiment {experiment!r}; expected one of: {known}")
    if dataset not in dataset_names():
        raise LaunchError(
            f"unknown dataset {dataset!r}; expected one of: {', '.join(dataset_names())} "
            f"(configs in {EXPERIMENTS / 'data'})"
        )
    return [EXPERIMENTS / "base.yaml", EXPERIMENTS / "data" / f"{dataset}.yaml",
            EXPERIMENTS / f"{experiment}.yaml"]  # fmt: skip


def data_path(dataset: str) -> Path:
    """The frame store a dataset config reads (``data.path``)."""
    config = yaml.safe_load((EXPERIMENTS / "data" / f"{dataset}.yaml").read_text()) or {}
    return Path(config.get("data", {}).get("path", f"data/{dataset}.h5"))


def run(command: list[str]) -> None:
    """Run a child command, echoing it; a failure stops the launch with its exit code."""
    print("+", " ".join(command), flush=True)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)


def executable(name: str) -> str:
    """A console script of this environment (``aunet``, ``aunet-fan``)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise LaunchError(f"{path} is missing: run `make install`")
    return str(path)


def ensure_synthetic_store(path: Path, landmark_only: bool = False) -> None:
    """Build the synthetic frame store (or its landmark-only variant) when it is missing."""
    if path.exists():
        return
    print(f"{path} is missing: drawing the synthetic {'landmark ' if landmark_only else ''}faces")
    extra = ["--landmark-only"] if landmark_only else []
    run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(path), *extra])


def new_run_folder(root: Path) -> Path:
    """``root/<timestamp>``, unique even for two launches in the same second."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / stamp
    suffix = 1
    while folder.exists():
        folder = root / f"{stamp}-{suffix}"
        suffix += 1
    return folder


def resumable_run(root: Path) -> Path:
    """The newest run folder under ``root`` that has ``checkpoints/last.ckpt``."""
    candidates = sorted(p.parent.parent for p in root.glob("*/checkpoints/last.ckpt"))
    if not candidates:
        raise LaunchError(f"nothing to resume: no {root}/<timestamp>/checkpoints/last.ckpt")
    return candidates[-1]


def pretrained_synthetic_fan(extra: list[str]) -> Path:
    """``checkpoints/fan_synthetic.ckpt``, pre-training it first when it is missing."""
    target = CHECKPOINTS / "fan_synthetic.ckpt"
    if not target.exists():
        print(f"{target} is missing: pre-training a FAN on synthetic landmark faces")
        pretrain_fan(SYNTHETIC_LANDMARK_STORE, extra=[])
    return target


def pretrain_fan(store: Path, extra: list[str]) -> Path:
    """Pre-train a FAN (``experiments/fan.yaml``) and copy its best checkpoint to checkpoints/."""
    if store == SYNTHETIC_LANDMARK_STORE:
        ensure_synthetic_store(store, landmark_only=True)
    elif not store.exists():
        raise LaunchError(
            f"{store}: no such landmark store; build one with `make prep DATA=300w-lp`"
        )
    name = store.stem.removesuffix("_landmarks")
    folder = new_run_folder(RUNS / "fan" / name / "official")
    configs = ["--config", str(EXPERIMENTS / "fan.yaml")]
    if store == SYNTHETIC_LANDMARK_STORE:  # the CPU demo's sizes (64 px, a few epochs)
        configs += ["--config", str(EXPERIMENTS / "data" / "synthetic_landmarks.yaml")]
    run([executable("aunet-fan"), "fit", *configs, "--data.path", str(store),
         "--run.dir", str(folder), "--run.experiment", "fan", *extra])  # fmt: skip
    best = sorted((folder / "checkpoints").glob("best-*.ckpt"))
    source = best[-1] if best else folder / "checkpoints" / "last.ckpt"
    target = CHECKPOINTS / f"fan_{name}.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".ckpt.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    print(f"FAN checkpoint: {target} (from {source})")
    return target


def train(
    experiment: str,
    dataset: str,
    fold: int | None,
    fan: str | None,
    resume: bool,
    extra: list[str],
    run_dir: Path | None = None,
) -> Path:
    """Train one experiment on one dataset (one fold); return the run folder."""
    configs = config_files(experiment, dataset)
    if dataset == "synthetic":
        ensure_synthetic_store(data_path(dataset))
    uses_folds = dataset in FOLD_DATASETS
    if uses_folds:
        fold = fold or 1
    elif fold is not None:
        raise LaunchError(f"{dataset} is evaluated on its official partitions: drop FOLD={fold}")
    if fan is None and experiment in FAN_EXPERIMENTS and dataset == "synthetic":
        fan = str(pretrained_synthetic_fan(extra))
    root = RUNS / experiment / dataset / (f"fold{fold}" if uses_folds else "official")
    if run_dir is None:
        run_dir = resumable_run(root) if resume else new_run_folder(root)
    command = [executable("aunet"), "fit"]
    for config in configs:
        command += ["--config", str(config)]
    command += ["--run.dir", str(run_dir), "--run.experiment", experiment]
    if uses_folds:
        command += ["--data.fold", str(fold)]
    if fan is not None:
        command += ["--model.fan", fan]
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():  # RESUME=1, or a requeued job whose folder already holds a checkpoint
        command += ["--ckpt_path", str(last)]
    start = time.perf_counter()
    run(command + extra)
    print_summary(run_dir, time.perf_counter() - start)
    return run_dir


def print_summary(run_dir: Path, seconds: float) -> None:
    """Print the run's folder, time and ``metrics.json`` (ICC and MSE per AU)."""
    metrics_file = run_dir / "metrics.json"
    print(f"\nrun folder: {run_dir}\nwall time: {seconds / 60:.1f} min")
    if not metrics_file.exists():
        return
    metrics = json.loads(metrics_file.read_text())
    for key in sorted(metrics):
        value = metrics[key]
        text = "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else value
        print(f"  {key:<24} {text}")


def build_parser() -> argparse.ArgumentParser:
    """``train`` and ``fan`` sub-commands; flags after ``--`` go to ``aunet fit``."""
    parser = argparse.ArgumentParser(
        prog="python -m aunet.launch", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train one experiment")
    train_parser.add_argument("--exp", required=True, help="experiment (experiments/<exp>.yaml)")
    train_parser.add_argument("--data", default="synthetic", help="dataset (experiments/data/)")
    train_parser.add_argument("--fold", type=int, help="DISFA-style fold 1-3 (default 1)")
    train_parser.add_argument(
        "--fan", help="FAN weights: 2DFAN-4 .pth(.tar), TorchScript, or aunet"
    )
    train_parser.add_argument("--resume", action="store_true", help="continue the latest run")
    fan_parser = commands.add_parser("fan", help="pre-train a FAN on a landmark store")
    fan_parser.add_argument(
        "--data",
        type=Path,
        default=SYNTHETIC_LANDMARK_STORE,
        help="landmark frame store (default: synthetic landmark faces)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the launcher's command line (``--`` separates flags for ``aunet fit``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(own)
    try:
        if args.command == "train":
            train(args.exp, args.data, args.fold, args.fan, args.resume, extra)
        else:
            pretrain_fan(args.data, extra)
    except LaunchError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
