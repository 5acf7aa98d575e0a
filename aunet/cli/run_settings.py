"""A run's settings (``aunet fit``'s ``run`` group), the run an evaluation evaluates, its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import SaveConfigCallback

from aunet.cli.wandb_runs import (
    WandbMode,
    logged_run_id,
)
from aunet.runs import (
    CHECKPOINT_FOLDER,
    CONFIG_FILE,
    LAST_CHECKPOINT,
)
from aunet.training.notices import KEEP_NONE_VALUES, AUNetWandbLogger

#: W&B job type of a run per subcommand (the summary runs: ``cv-report``, ``table``).
JOB_TYPES = {"fit": "train", "validate": "validate", "test": "test", "predict": "predict"}


@dataclass
class RunSettings:
    """Where a run lives and how it is named and logged.

    Args:
        dir: the run folder; default ``runs/<experiment>/<dataset>/fold<k>/<timestamp>``.
        experiment: the experiment's name (``reparam``, ``adapt``, ...).
        wandb: ``auto`` = online when a W&B API key is configured (``wandb login``) or
            ``WANDB_MODE=online``, otherwise offline; ``disabled`` = no W&B logger.
        wandb_project: the W&B project.
        overlay_every_n_epochs: heatmap overlay panel period (0 = never).
        checkpoint_every_n_steps: also refresh ``last.ckpt`` every this many optimiser steps,
            so a preempted job loses at most that much (0 = only at epoch ends).
        allow_config_change: resume (``--ckpt_path``) with a config that differs from the
            checkpoint's in what the run learns (the data, the optimisation, the seed); without
            it such a resume is refused with the differences listed. Changes to how long and
            where the run goes (``max_epochs``, devices, logging) are always allowed.
        wandb_checkpoints: at the end of a fit, log its best checkpoint and ``last.ckpt`` as
            W&B model artifacts (W&B copies each file, hence off by default).
    """

    dir: str | None = None
    experiment: str = "adhoc"
    wandb: WandbMode = "auto"
    wandb_project: str = "aunet"
    overlay_every_n_epochs: int = 5
    checkpoint_every_n_steps: int = 0
    allow_config_change: bool = False
    wandb_checkpoints: bool = False


@dataclass(frozen=True)
class EvaluatedRun:
    """The training run an evaluation (validate, test, predict) evaluates a checkpoint of.

    Args:
        dir: the training run's folder.
        checkpoint: the checkpoint evaluated.
        epoch: the checkpoint's epoch (0-based; None if it records none).
    """

    dir: Path
    checkpoint: str
    epoch: int | None

    def wandb_config(self) -> dict[str, Any]:
        """The evaluation's W&B config field ``training_run``, linking it to the training run.

        ``{"training_run": {"dir", "wandb_id", "checkpoint", "epoch"}}``; ``wandb_id`` is None
        for a training run without W&B.
        """
        wandb_id = logged_run_id(self.dir)
        fields = {"dir": str(self.dir), "wandb_id": wandb_id, "checkpoint": self.checkpoint}
        return {"training_run": {**fields, "epoch": self.epoch}}


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run already (its ``config.yaml`` or its checkpoints)."""
    return (folder / CONFIG_FILE).is_file() or (folder / CHECKPOINT_FOLDER).is_dir()


class LogConfigToLoggers(SaveConfigCallback):
    """Save the resolved ``config.yaml`` in the run folder and log it to W&B as the run config.

    The file goes to the run folder itself (the Trainer's ``default_root_dir``), not to a
    logger's folder, so it sits beside ``checkpoints/`` and ``metrics.json`` whatever loggers run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write ``config.yaml`` (rank zero) and log the config, complete, to W&B."""
        folder = Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, folder / self.config_filename, **KEEP_NONE_VALUES,
                         overwrite=True, multifile=False)  # fmt: skip
        for logger in trainer.loggers:
            if isinstance(logger, AUNetWandbLogger):
                logger.log_run_config(complete_config(self.config.as_dict(), pl_module))


def complete_config(config: dict[str, Any], pl_module: pl.LightningModule) -> dict[str, Any]:
    """The config with ``model.init_args`` as the model was built, for the W&B run config.

    ``config.yaml`` keeps the options as given (so that it runs again); the values linked from
    the data when the classes are built (the AU list, the crop settings) and those the module
    resolves (the FAN's architecture) are only in the module's hyperparameters.
    """
    init_args = (config.get("model") or {}).get("init_args")
    if isinstance(init_args, dict):
        built = pl_module.hparams_initial
        init_args.update({key: built[key] for key in init_args if key in built})
    return config


def last_checkpoint_callback(checkpoints: Path, **trigger: Any) -> ModelCheckpoint:
    """A checkpoint callback that rewrites ``checkpoints/last.ckpt`` at every ``trigger``.

    With no monitored metric and one file kept, Lightning saves at each trigger and overwrites
    the file (no ``last-v1.ckpt``: the epoch-end and the step callbacks share it).

    Args:
        checkpoints: the run's checkpoint folder.
        trigger: ``ModelCheckpoint``'s when-to-save arguments (``every_n_train_steps``, ...).
    """
    return ModelCheckpoint(
        dirpath=checkpoints,
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        enable_version_counter=False,
        **trigger,
    )
