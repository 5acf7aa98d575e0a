"""Test checkpoints of AU models: untrained ones written directly, and one real ``aunet fit``.

Shared by the inference and export tests (``from checkpoint_factories import ...``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from factories import write_store

from aunet.aus import DATASET_AUS
from aunet.cli.fit import main as aunet_main
from aunet.data.folds import DISFA_SUBJECTS
from aunet.models import FAN, FANConfig, save_fan
from aunet.training import AUHeatmapModule

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)
IMAGE_SIZE = 32


#: Experiments whose strategy is ``scratch`` (experiments/*.yaml).
SCRATCH_EXPERIMENTS = ("scratch", "fixed_sigma")


def tiny_scratch_options(experiment: str) -> dict:
    """``strategy_args`` that shape a ``scratch`` experiment as the tiny FAN (it ignores any
    given FAN); empty for the others."""
    shape = {"fan_config": dataclasses.asdict(TINY_FAN)}
    return shape if experiment in SCRATCH_EXPERIMENTS else {}


def untrained_module(strategy: str, image_size: int | None = IMAGE_SIZE) -> AUHeatmapModule:
    """An AU module over the tiny FAN with every weight nudged off its initial value.

    The nudge makes the reparametrisation's projections differ from the identity, so folding
    them is really tested, and BatchNorm statistics differ from 0/1.
    """
    module = AUHeatmapModule(
        strategy,
        au_names=DATASET_AUS["synthetic"],
        fan_config=dataclasses.asdict(TINY_FAN),
        strategy_args=tiny_scratch_options(strategy),
        image_size=image_size,
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=generator) * 0.1
                tensor.add_(noise if tensor.dim() == 1 else noise - 0.05)
    return module.eval()


def save_checkpoint(module: AUHeatmapModule, path: Path) -> Path:
    """Write ``module`` as Lightning does: ``state_dict`` and ``hyper_parameters``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    return path


def untrained_run(folder: Path, fold: int, batch_size: int) -> tuple[Path, AUHeatmapModule, dict]:
    """A run folder as ``aunet fit`` leaves it, holding an untrained ``adapt`` model.

    A 32 px DISFA store of every DISFA subject (2 frames each), ``last.ckpt`` and a
    ``config.yaml`` whose data section holds out ``fold``.

    Returns:
        The run folder, the module saved in it and the data section of its config.
    """
    store = write_store(folder / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    save_fan(FAN(TINY_FAN), folder / "fan.pt")
    module = AUHeatmapModule("adapt", au_names=DATASET_AUS["disfa"], fan=str(folder / "fan.pt"))
    run = folder / "run"
    save_checkpoint(module, run / "checkpoints" / "last.ckpt")
    data = {"path": str(store), "fold": fold, "batch_size": batch_size, "num_workers": 0,
            "image_size": 32}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    return run, module, data


def fit_checkpoint(folder: Path, experiment: str = "reparam", fan: Path | None = None) -> Path:
    """``last.ckpt`` of one short ``aunet fit`` at 32 px.

    Over ``fan`` if given, else over a tiny aunet FAN file that is deleted afterwards.
    """
    store = write_store(folder / "store.h5", DISFA_SUBJECTS, frames_per_subject=2, image_size=32)
    given = fan is not None
    if fan is None:
        fan = folder / "fan.pt"
        save_fan(FAN(TINY_FAN), fan)
    run = folder / "run"
    aunet_main([
        "fit",
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / f"{experiment}.yaml"),
        "--data.path", str(store), "--data.image_size", str(IMAGE_SIZE),
        "--data.batch_size", "8", "--data.num_workers", "0",
        "--model.init_args.fan", str(fan),
        "--run.dir", str(run), "--run.wandb", "disabled", "--run.overlay_every_n_epochs", "0",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    if not given:
        fan.unlink()  # inference must rebuild the network without it
    return run / "checkpoints" / "last.ckpt"


def tiny_disfa_project(folder: Path) -> Path:
    """``folder`` as a project for make targets: ``experiments/`` linked, a 32 px DISFA store.

    Returns:
        A tiny FAN file in ``folder``.
    """
    (folder / "experiments").symlink_to(EXPERIMENTS)
    write_store(folder / "data" / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    save_fan(FAN(TINY_FAN), folder / "fan.pt")
    return folder / "fan.pt"


def make_command(target: str, *variables: str) -> list[str]:
    """``make <target> VAR=...`` of the repository's Makefile, run by this Python, no install."""
    return ["make", "-f", str(REPO / "Makefile"), "-o", ".venv/.installed", target,
            *variables, f"PY={sys.executable}"]  # fmt: skip


def run_make(folder: Path, command: list[str], **environment: str) -> subprocess.CompletedProcess:
    """Run ``command`` in ``folder`` with the repository importable and ``environment`` set."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **environment}
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
