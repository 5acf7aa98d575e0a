"""The experiments and datasets the launcher knows: their config files, their data, commands."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

EXPERIMENTS = Path("experiments")


class LaunchError(RuntimeError):
    """A launch that cannot start; the message says what to do."""


def experiment_names(folder: Path = EXPERIMENTS) -> list[str]:
    """Every experiment with a config in ``folder`` (``experiments/``; ``fan`` included)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")


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


def experiment_strategy(experiment: str, dataset: str) -> str:
    """The strategy an experiment trains: ``model.init_args.strategy`` of its composed configs."""
    strategy = "scratch"  # AUHeatmapModule's default
    for path in config_files(experiment, dataset):
        config = yaml.safe_load(path.read_text()) or {}
        init_args = (config.get("model") or {}).get("init_args") or {}
        strategy = init_args.get("strategy", strategy)
    return strategy


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in ``flags`` (``--name value`` or ``--name=value``; the last wins)."""
    value = None
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


def wandb_settings(flags: Sequence[str]) -> tuple[str, str]:
    """The W&B mode and project that ``aunet fit`` flags choose, for the runs summarising fits.

    ``--run.wandb`` (default ``auto``) and ``--run.wandb_project`` (default ``aunet``).
    """
    return (flag_value(flags, "--run.wandb") or "auto",
            flag_value(flags, "--run.wandb_project") or "aunet")  # fmt: skip
