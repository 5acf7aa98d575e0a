"""Callbacks: heatmap overlays, metrics.json, W&B summary and artifacts, unfreezing, checkpoints."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning, Callback, ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from aunet.aus import MAX_INTENSITY
from aunet.files import json_number, write_json_atomically
from aunet.runs import best_checkpoint, best_checkpoint_epoch, last_checkpoint
from aunet.training.common import add_scheduled_param_group
from aunet.visualise import prediction_and_target


class CheckpointOnSigterm(Callback):
    """On SIGTERM, save ``last.ckpt`` at the end of the current step, before the fit stops.

    A preempted SLURM job, ``scancel`` or ``kill`` sends SIGTERM (SIGKILL follows some seconds
    later). Lightning then stops the fit at the next step end but saves nothing, so the run
    would lose everything since its last checkpoint. This callback saves the run's ``last.ckpt``
    at that step end (the state Lightning resumes mid-epoch from; every process together under
    DDP). A SIGTERM during validation stops the fit there, and the run resumes from the
    checkpoint written before it.

    Args:
        path: the run's ``checkpoints/last.ckpt``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        """Save if any process has received SIGTERM."""
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            rank_zero_info(f"SIGTERM received: saving {self.path} before stopping")
            trainer.save_checkpoint(self.path)


#: Key of the run's config (as given, before any resolution) in aunet's checkpoints.
CONFIG_IN_CHECKPOINT = "aunet_config"


class ConfigInCheckpoint(Callback):
    """Store the run's config in every checkpoint, so a resume can be compared with it.

    Args:
        config: the config as given (plain values: what weights-only loading reads back).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the config."""
        checkpoint[CONFIG_IN_CHECKPOINT] = self.config


class RepairRestartAtEpochEnd(Callback):
    """Resume correctly from a checkpoint saved after an epoch's last step (Lightning 2.6 bug).

    Such a checkpoint is written at the end of the epoch's last training step, before
    validation and the epoch-end checkpoint: by ``run.checkpoint_every_n_steps``, or by
    :class:`CheckpointOnSigterm`, when a job is stopped between that step and the epoch's end.
    Resuming from it, Lightning counts that epoch as finished but leaves its restart stage at
    "mid-epoch", so the next epoch is never counted as started: its ``on_train_epoch_start``
    hooks do not run, and a checkpoint saved within it resumes as a fresh epoch and repeats its
    steps (a run killed twice ended 8 steps past an uninterrupted one, in
    ``tests/training/test_preemption.py``). Clearing the stage once the epoch has been counted
    makes the next epoch start as a new one.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Clear the stale restart stage after a restart at an epoch's last step."""
        loop = trainer.fit_loop
        if (
            loop.restarted_mid_epoch
            and loop.epoch_loop.restarted_on_train_batch_end
            and loop.epoch_loop.batch_progress.is_last_batch
        ):
            loop.reset_restart_stage()


class StopOnNonFiniteLoss(Callback):
    """Stop the fit when the training loss is NaN or infinite, naming the step and the batch.

    The check runs before the backward pass, so the bad step never updates the weights and the
    checkpoints keep those of the steps before it; a run that goes on with NaN weights would
    only produce NaN predictions and a meaningless score. Under DDP every process takes part
    (one all-reduce of a boolean per step), so all stop together instead of waiting for each
    other's gradients.
    """

    def __init__(self) -> None:
        self._batch_idx = -1
        self._rows: torch.Tensor | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Remember which batch (and which store rows) the step trains on."""
        self._batch_idx = batch_idx
        # The tensor, not a list: reading it would copy it from the device on every step.
        self._rows = batch.get("index") if isinstance(batch, dict) else None

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        """Raise if the loss of any process is not finite."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        value = (
            str(float(loss.detach().float().mean()))
            if not finite
            else "finite here but not on another process"
        )
        store_rows = [] if self._rows is None else [int(row) for row in self._rows]
        shown = ", ".join(map(str, store_rows[:8])) + (", ..." if len(store_rows) > 8 else "")
        rows = f"; store rows {shown}" if store_rows else ""
        raise FloatingPointError(
            f"train/loss is {value} at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {self._batch_idx}{rows}); training stopped before "
            "this step's update, so the checkpoints hold the weights of the steps before it. "
            "Look for a learning rate too high for the strategy (model.init_args.lr), or for "
            "non-finite images, landmarks or labels in those rows"
        )


class MetricsJson(Callback):
    """Write the final validation metrics, ``global_step`` and ``epoch`` to ``metrics.json``.

    A fit resumed from the final checkpoint of a finished run trains and validates nothing, and
    leaves the file it wrote then as it is.

    Args:
        path: the file (``runs/<experiment>/<dataset>/fold<k>/<timestamp>/metrics.json``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._trained = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note that this fit runs its loop (Lightning skips it when no epoch is left)."""
        self._trained = True

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Collect every logged ``val/...`` value; NaN becomes null in the JSON."""
        if not self._trained and self.path.exists():
            return
        values: dict[str, Any] = {
            key: json_number(float(value))
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        values["global_step"] = trainer.global_step
        values["epoch"] = trainer.current_epoch
        write_json_atomically(self.path, values)


def _wandb_runs(trainer: pl.Trainer) -> list[Any]:
    """The W&B runs of the trainer's W&B loggers (none when W&B is disabled)."""
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, WandbLogger)]


class WandbSummary(Callback):
    """Make the W&B run summary describe one epoch: the last validated one, the final model's.

    W&B's summary holds each metric's last logged value, and ``make cv`` scores each run's final
    model (``last.ckpt``, written after its epoch's validation). At the fit's end the summary's
    ``val/...`` values are set to the last validation's, all of one epoch, and ``epoch`` to
    that epoch (0-based, as W&B's ``epoch`` axis and the checkpoint names count it; with
    validation every epoch, the default, it is the final model's). The best epoch by the
    monitored metric goes under names of its own, ``best/<metric>`` and ``best/epoch``
    (``best/val/icc_mean``), never mixed with the final epoch's values.

    An evaluation (validate, test) measures one checkpoint: its summary's ``epoch`` is that
    checkpoint's, not the 0 Lightning logs for an evaluation's only epoch.

    Args:
        best: the checkpoint callback that keeps the best epoch by the monitored metric.
        evaluated_epoch: for an evaluation, the epoch of the checkpoint it evaluates.
    """

    def __init__(self, best: ModelCheckpoint, evaluated_epoch: int | None = None) -> None:
        self.best = best
        self.evaluated_epoch = evaluated_epoch
        self._validated: tuple[int, dict[str, float]] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep a fit's epoch's validation values (logged by the module by now)."""
        if trainer.sanity_checking:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            self._name_evaluated_epoch(trainer)
            return
        values = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        self._validated = (trainer.current_epoch, values)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the summary; a fit that validated nothing (a finished run resumed) leaves it."""
        if self._validated is None:
            return
        epoch, values = self._validated
        summary: dict[str, Any] = {**values, "epoch": epoch}
        if self.best.best_model_score is not None:
            summary[f"best/{self.best.monitor}"] = float(self.best.best_model_score)
            summary["best/epoch"] = best_checkpoint_epoch(self.best.best_model_path)
        for run in _wandb_runs(trainer):
            run.summary.update(summary)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Name the tested checkpoint's epoch."""
        self._name_evaluated_epoch(trainer)

    @rank_zero_only
    def _name_evaluated_epoch(self, trainer: pl.Trainer) -> None:
        if self.evaluated_epoch is not None:
            for run in _wandb_runs(trainer):
                run.summary.update({"epoch": self.evaluated_epoch})


class WandbCheckpoints(Callback):
    """Log the run's best and final checkpoints as W&B model artifacts when its fit ends.

    Both are versions of one artifact, ``model-<W&B run id>`` (type ``model``), aliased
    ``best`` and ``last`` (W&B adds ``latest`` to the last one logged, the final model). W&B
    copies each file (to its staging folder until the upload, then to its servers), hence off
    by default (``--run.wandb_checkpoints true``). A fit stopped by SIGTERM, to be resumed,
    logs nothing: its resumed fit logs at its end.

    Args:
        run_dir: the run folder (``checkpoints/`` in it).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the checkpoints there are, best first, so that ``latest`` is the final model."""
        if trainer.received_sigterm:
            return
        import wandb

        files = [(best_checkpoint(self.run_dir), "best"), (last_checkpoint(self.run_dir), "last")]
        for run in _wandb_runs(trainer):
            for path, alias in files:
                if path is None or not path.is_file():
                    continue
                artifact = wandb.Artifact(
                    f"model-{run.id}", type="model", metadata={"checkpoint": path.name}
                )
                artifact.add_file(str(path))
                run.log_artifact(artifact, aliases=[alias])


class HeatmapOverlays(Callback):
    """Every N epochs, log predicted and target AU heatmaps over validation faces (Fig. 7).

    The panel goes to every W&B logger as ``val/heatmaps`` and is saved as a PNG under
    ``<folder>/epoch<E>.png``, so it exists without W&B too.

    Args:
        folder: where PNGs go.
        every_n_epochs: how often (validation epochs).
        num_images: how many faces of the first validation batch.
    """

    def __init__(self, folder: str | os.PathLike, every_n_epochs: int = 5, num_images: int = 3):
        self.folder = Path(folder)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self._batch: dict[str, torch.Tensor] | None = None

    def _due(self, trainer: pl.Trainer) -> bool:
        return (
            self.every_n_epochs > 0
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: dict[str, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first faces of the epoch's first batch."""
        if batch_idx == 0 and self._due(trainer):
            keep = slice(0, self.num_images)
            self._batch = {key: value[keep] for key, value in batch.items()}

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Draw and log the panel."""
        if self._batch is None or not getattr(pl_module, "regresses_heatmaps", False):
            return
        batch, self._batch = self._batch, None
        grid = self.panel(pl_module, batch)
        self.folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.folder / f"epoch{trainer.current_epoch:03d}.png"), grid[..., ::-1])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/heatmaps", [grid], step=trainer.global_step)

    @staticmethod
    @torch.no_grad()
    def panel(module: pl.LightningModule, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """One row pair per face: predicted maps (labelled pred/true), then target maps."""
        images = batch["image"]
        truth = batch["au"].float()
        predicted_maps = module(images).float()
        targets, _ = module.draw_targets(
            batch["landmarks"].float(), truth, images.shape[-1], predicted_maps.shape[-1]
        )
        predicted = predicted_maps.amax(dim=(-2, -1)).clamp(0.0, MAX_INTENSITY)
        rows = []
        for i in range(len(images)):
            face = images[i].permute(1, 2, 0).cpu().numpy()
            if face.dtype != np.uint8:
                face = (face * 255).clip(0, 255).astype(np.uint8)
            names = module.au_names
            rows.append(
                prediction_and_target(
                    face,
                    predicted_maps[i].cpu().numpy(),
                    targets[i].cpu().numpy(),
                    names,
                    predicted[i].tolist(),
                    truth[i].tolist(),
                )
            )
        return np.concatenate(rows, axis=0)


class UnfreezeBackbone(BaseFinetuning):
    """Second stage of ``adapt_finetune`` (Sec. 6.5): unfreeze the FAN and fine-tune it all.

    The FAN joins the optimiser as a second parameter group on the head's cosine schedule, at
    ``lr_factor`` times the head's learning rate throughout
    (:func:`aunet.training.common.add_scheduled_param_group`). A fit resumed after ``at_epoch``
    gets both groups back (Lightning's ``BaseFinetuning`` restores them, the checkpoint their
    state and the schedule's), and the FAN trainable again. Under DDP the FAN's gradients are
    averaged over the processes here (:meth:`on_after_backward`).

    Args:
        at_epoch: the epoch at which the FAN joins the optimiser.
        lr_factor: its learning rate relative to the head's (a small one, as in fine-tuning).
    """

    def __init__(self, at_epoch: int = 10, lr_factor: float = 0.1) -> None:
        super().__init__()
        self.at_epoch = at_epoch
        self.lr_factor = lr_factor

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        """Nothing to do: the ``adapt_finetune`` strategy builds its FAN frozen."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """On a resume, restore the optimiser's groups; unfreeze the FAN if it is among them."""
        super().on_fit_start(trainer, pl_module)
        backbone = pl_module.model.backbone.parameters()
        if _in_optimiser(trainer.optimizers[0], backbone):
            pl_module.model.unfreeze_backbone()

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        """At ``at_epoch``, make the FAN trainable and add it to the optimiser."""
        backbone = list(pl_module.model.backbone.parameters())
        if epoch != self.at_epoch or _in_optimiser(optimizer, backbone):
            return
        pl_module.model.unfreeze_backbone()
        schedulers = [
            config.scheduler
            for config in pl_module.trainer.lr_scheduler_configs
            if config.scheduler.optimizer is optimizer
        ]
        add_scheduled_param_group(optimizer, schedulers, backbone, self.lr_factor)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Under DDP, average the FAN's gradients over the processes, as DDP does the head's.

        DDP reduces only the parameters that needed gradients when it wrapped the model, and
        the FAN was frozen then: each process would train its own FAN (measured: two processes'
        FANs differed after one unfrozen epoch while their heads agreed). Done after each
        backward pass, before mixed precision unscales and checks the gradients, so every
        process sees the same ones; one all-reduce of the FAN's gradients flattened.
        """
        if trainer.world_size == 1:
            return
        grads = [p.grad for p in pl_module.model.backbone.parameters() if p.grad is not None]
        if not grads:  # the FAN is still frozen
            return
        flat = torch.cat([grad.flatten() for grad in grads])
        mean = trainer.strategy.reduce(flat, reduce_op="mean")
        for grad, part in zip(grads, mean.split([grad.numel() for grad in grads]), strict=True):
            grad.copy_(part.view_as(grad))


def _in_optimiser(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]) -> bool:
    """Whether any of ``params`` is in one of the optimiser's groups.

    By identity: Lightning's ``BaseFinetuning.filter_on_optimizer`` compares values, and so left
    out every FAN BatchNorm weight and bias equal to one of the head's (20 of the 115 tensors of
    an untrained test FAN, all ones or zeros).
    """
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return any(id(p) in held for p in params)
