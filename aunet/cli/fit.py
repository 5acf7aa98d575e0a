"""``aunet fit|validate|test|predict`` (AU models) and ``aunet-fan`` (FAN pre-training).

Both are LightningCLIs over YAML configs (``experiments/``): each experiment file holds only what
differs from ``experiments/base.yaml``, the AU list flows from the data to the model once
(``link_arguments``), and every run gets its own folder

    runs/<experiment>/<dataset>/fold<k>/<timestamp>/

holding the resolved ``config.yaml``, ``checkpoints/`` (best by the monitored metric, and
``last.ckpt``, the state at the latest epoch end or save point), ``metrics.json``, the CSV logs
(``csv/version_<n>/metrics.csv``, one per start), heatmap overlay PNGs and the W&B run files.
W&B is offline unless you are logged in or set ``WANDB_MODE=online``; ``wandb sync`` uploads
later. An evaluation (``validate``, ``test``, ``predict``) of a run's checkpoint, or given a
run's folder, gets a folder and a W&B run of its own inside that run's folder,
``<run>/<subcommand>/<timestamp>/``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from aunet.cli.guards import (
    FIT_INPUT_ERRORS,
    FIT_STOP_HINT,
    check_accelerator,
    check_model_class,
    command_line,
    compare_resume_config,
    fit_error_reason,
    lock_run_folder,
    run_folders_released,
    sigterm_exit_status,
    writable_run_folder,
)
from aunet.cli.run_settings import (
    JOB_TYPES,
    EvaluatedRun,
    LogConfigToLoggers,
    RunSettings,
    holds_run,
    last_checkpoint_callback,
)
from aunet.cli.wandb_runs import (
    own_wandb_service,
    wandb_disabled,
    wandb_offline,
    wandb_run_id,
)
from aunet.data.datamodule import AUDataModule, LandmarkDataModule
from aunet.data.framing import framing_for
from aunet.models.registry import USES_FAN
from aunet.runs import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_FOLDER,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    fold_folder,
    run_of_checkpoint,
    run_root,
    timestamp,
)
from aunet.training.au_module import AUHeatmapModule
from aunet.training.callbacks import (
    CONFIG_IN_CHECKPOINT,
    CheckpointOnSigterm,
    ConfigInCheckpoint,
    HeatmapOverlays,
    MetricsJson,
    RepairRestartAtEpochEnd,
    StopOnNonFiniteLoss,
    WandbCheckpoints,
    WandbSummary,
)
from aunet.training.checkpoint_io import AtomicCheckpointIO
from aunet.training.expected_time import ExpectedTime
from aunet.training.fan_module import FANModule
from aunet.training.notices import AUNetWandbLogger, silence_third_party_notices
from aunet.training.precision import AUNetTrainer, choose_precision
from aunet.training.requeue import SlurmRequeue


class AUNetCLI(LightningCLI):
    """LightningCLI with aunet's run folders, loggers, checkpoints and callbacks.

    Subclasses set the monitored metric; :class:`AUCLI` and :class:`FANCLI` are the two entry
    points.
    """

    monitor: tuple[str, str] = ("val/icc_mean", "max")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        silence_third_party_notices()  # before the Trainer logs Lightning's tip
        kwargs.setdefault("save_config_callback", LogConfigToLoggers)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True, "config_filename": CONFIG_FILE})
        kwargs.setdefault("trainer_class", AUNetTrainer)  # trainer.precision takes ``auto``
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check a ``--ckpt_path`` file as every aunet checkpoint load does.

        LightningCLI reads the checkpoint's hyperparameters next (weights-only too, but with
        PyTorch's long message for a refused or damaged file); this gives aunet's messages
        (``docs/errors.md``, E33, E34 and E37) first, and compares the config given with the
        checkpoint's before LightningCLI replaces the model's part with the checkpoint's.
        An evaluation's ``last`` becomes the file it names: the evaluation runs in a folder of
        its own, where Lightning would look for it.
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        # Plain values (paths as text), as stored in checkpoints and compared on resume.
        self.given_config = json.loads(json.dumps(config.clone().as_dict(), default=str))
        checkpoint = config.get("ckpt_path")
        folder = config.get("run", {}).get("dir")
        if checkpoint == "last" and folder:  # Lightning's "last": the run folder's last.ckpt
            checkpoint = str(Path(folder) / CHECKPOINT_FOLDER / LAST_CHECKPOINT)
        #: The training run whose checkpoint an evaluation evaluates (None for a fit).
        self.evaluated_run: EvaluatedRun | None = None
        if checkpoint and Path(checkpoint).is_file():
            state = AtomicCheckpointIO().load_checkpoint(checkpoint)
            check_model_class(checkpoint, state)
            if subcommand != "fit":  # validate/test/predict evaluate it: nothing is resumed
                config["ckpt_path"] = checkpoint
                run = run_of_checkpoint(checkpoint)
                if run is not None:
                    self.evaluated_run = EvaluatedRun(run, checkpoint, state.get("epoch"))
                return
            allow = bool(config.get("run", {}).get("allow_config_change"))
            saved = state.get(CONFIG_IN_CHECKPOINT)
            for line in compare_resume_config(checkpoint, saved, self.given_config, allow):
                rank_zero_info(line)
            if saved is not None:  # the model that runs is the checkpoint's: record that one
                self.given_config["model"] = saved.get("model")

    def before_instantiate_classes(self) -> None:
        """Resolve ``trainer.precision: auto`` for this machine, and print the choice and why.

        The config holds the resolved value from here on, so the run's ``config.yaml`` records
        the precision that ran (:mod:`aunet.training.precision`).
        """
        trainer = (
            self.config[self.subcommand]["trainer"] if self.subcommand else self.config.trainer
        )
        choice = choose_precision(trainer.get("precision"), trainer.get("accelerator"))
        trainer["precision"] = choice.precision
        rank_zero_info(str(choice))

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The ``run`` group: folder, experiment name, W&B mode."""
        parser.add_class_arguments(RunSettings, "run")

    def run_folder(self) -> Path:
        """The run folder: given, or named from the experiment, dataset, fold and time.

        An evaluation never writes into another run's folder (it would replace that run's
        ``config.yaml`` and continue its W&B run): given a run's folder (``--config
        <run>/config.yaml``), or else evaluating a run's checkpoint, it runs in
        ``<run>/<subcommand>/<timestamp>/``.
        """
        settings: RunSettings = self.config_init[self.subcommand]["run"]
        given = Path(settings.dir) if settings.dir else None
        if self.subcommand != "fit" and (given is None or holds_run(given)):
            host = given or (self.evaluated_run.dir if self.evaluated_run else None)
            if host is not None:
                return host / self.subcommand / timestamp()
        if given is not None:
            return given
        subjects = getattr(self.datamodule, "train_subjects", None)
        return (
            run_root(settings.experiment, self.dataset_name(), self.fold(), subjects) / timestamp()
        )

    def dataset_name(self) -> str:
        """The data's name (``disfa``, ``synthetic``, ...)."""
        return getattr(self.datamodule, "dataset_name", "data")

    def fold(self) -> int | None:
        """The held-out fold for fold protocols, None for official partitions."""
        folds = getattr(self.datamodule, "protocol", "folds") == "folds"
        return getattr(self.datamodule, "fold", None) if folds else None

    def fold_name(self) -> str:
        """``fold<k>`` for fold protocols, ``official`` for official partitions."""
        return fold_folder(self.fold())

    def loggers(self, folder: Path, settings: RunSettings) -> list[Logger]:
        """A CSV logger (results without W&B) and, unless disabled, a W&B logger.

        The W&B run id is kept in the run folder, so a resumed run continues the same W&B run.
        """
        # A new csv/version_<n>/ per (re)start: Lightning's CSV logger deletes an existing
        # metrics.csv in its folder, which would erase a resumed run's history.
        loggers: list[Logger] = [CSVLogger(save_dir=folder, name="csv")]
        if wandb_disabled(settings.wandb):
            return loggers
        own_wandb_service()
        run_id = wandb_run_id(folder)
        group = f"{settings.experiment}-{self.dataset_name()}"
        # An evaluation's W&B run names the training run it evaluates (a config field to
        # filter by, and its folder).
        link = {} if self.evaluated_run is None else {"config": self.evaluated_run.wandb_config()}
        loggers.append(
            AUNetWandbLogger(  # no anonymous=None to wandb.init, which warns at any value
                project=settings.wandb_project,
                group=group,
                name=f"{group}-{self.fold_name()}",
                # W&B groups k-fold runs by group and job_type (its grouping guide).
                job_type=JOB_TYPES.get(self.subcommand or "fit", self.subcommand),
                tags=[settings.experiment, self.dataset_name(), self.fold_name()],
                save_dir=str(folder),
                offline=wandb_offline(settings.wandb),
                id=run_id,
                resume="allow",
                **link,
            )
        )
        return loggers

    def run_callbacks(self, folder: Path, settings: RunSettings) -> list[Callback]:
        """Checkpoints, metrics.json, learning rate, W&B summary, SLURM requeue, safety stops.

        Checkpoints: the best by the monitored metric, and ``last.ckpt``, the newest state: at
        every epoch end (after validation), every ``checkpoint_every_n_steps``, and at the step
        end after a SIGTERM. The fit stops on a non-finite loss.
        """
        metric, mode = self.monitor
        checkpoints = folder / CHECKPOINT_FOLDER
        best = ModelCheckpoint(
            dirpath=checkpoints,
            filename=BEST_CHECKPOINT_NAME,
            monitor=metric,
            mode=mode,
            save_top_k=1,
            auto_insert_metric_name=False,
        )
        callbacks: list[Callback] = [
            best,
            # Not save_last=True above: since Lightning 2.6 that rewrites last.ckpt only when a
            # new best is saved at the same step, so last.ckpt stayed at the best epoch. At the
            # train epoch end: after the epoch's validation, and in epochs without one too.
            last_checkpoint_callback(checkpoints, save_on_train_epoch_end=True),
            MetricsJson(folder / METRICS_FILE),
            LearningRateMonitor(logging_interval="epoch"),
            WandbSummary(best, self.evaluated_run.epoch if self.evaluated_run else None),
            SlurmRequeue(),  # instead of Lightning's handler, which can hang (its issue #21406)
            CheckpointOnSigterm(checkpoints / LAST_CHECKPOINT),
            ConfigInCheckpoint(self.given_config),
            RepairRestartAtEpochEnd(),
            StopOnNonFiniteLoss(),
        ]
        if settings.checkpoint_every_n_steps > 0:
            callbacks.append(
                last_checkpoint_callback(
                    checkpoints, every_n_train_steps=settings.checkpoint_every_n_steps
                )
            )
        if settings.wandb_checkpoints:  # to the W&B logger; none when W&B is disabled
            callbacks.append(WandbCheckpoints(folder))
        return callbacks

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Add the run folder, loggers, callbacks and atomic checkpoint writing to the Trainer."""
        settings: RunSettings = self.config_init[self.subcommand]["run"]
        trainer_config = self.config_init[self.subcommand]["trainer"]
        check_accelerator(trainer_config.get("accelerator"))
        folder = writable_run_folder(self.run_folder())
        if rank_zero_only.rank == 0:  # DDP's other processes write into rank 0's folder
            lock_run_folder(folder)
        configured = trainer_config.get("callbacks") or []
        kwargs.setdefault(
            "callbacks", [*configured, *self.run_callbacks(folder, settings), ExpectedTime()]
        )
        if trainer_config.get("logger") in (None, True):
            kwargs.setdefault("logger", self.loggers(folder, settings))
        kwargs.setdefault("default_root_dir", str(folder))
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)


class AUCLI(AUNetCLI):
    """``aunet``: AU heatmap regression with any strategy."""

    monitor = ("val/icc_mean", "max")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Run settings, and the AU list and input size linked from the data to the model."""
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.au_names", "model.init_args.au_names", apply_on="instantiate")
        # Saved in checkpoints: inference crops faces as the training data were cropped.
        parser.link_arguments(
            "data.image_size", "model.init_args.image_size", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.crop_margin", "model.init_args.crop_margin", apply_on="instantiate"
        )
        parser.link_arguments("data.framing", "model.init_args.framing", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Resolve ``data.framing: auto`` from the model's FAN, so config.yaml records it."""
        super().before_instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config["data"].get("framing", "auto") != "auto":
            return
        model = config["model"]["init_args"]
        strategy = model.get("strategy", "scratch")
        framing = framing_for(model.get("fan"), strategy in USES_FAN)
        config["data"]["framing"] = framing
        rank_zero_info(f"data.framing: {framing} (strategy {strategy}, FAN {model.get('fan')})")

    def run_callbacks(self, folder: Path, settings: RunSettings) -> list[Callback]:
        """Add the heatmap overlay panel."""
        overlays = HeatmapOverlays(folder / "overlays", settings.overlay_every_n_epochs)
        return [*super().run_callbacks(folder, settings), overlays]


class FANCLI(AUNetCLI):
    """``aunet-fan``: FAN pre-training on a landmark store."""

    monitor = ("val/nme", "min")


@contextlib.contextmanager
def wandb_run_finished() -> Iterator[None]:
    """Finish the W&B run when the block ends, as the process's exit would.

    Lightning's W&B logger reuses a run already in progress, so without this a second fit in
    one Python process (a notebook, a test) would log into the first fit's run and folder.
    ``wandb.finish`` returns before W&B's service has written the whole run file (an offline
    run read back at once held only its header, in some runs out of three), so the service is
    stopped too, which waits for it; the next run starts a new one.
    """
    try:
        yield
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()
            wandb.teardown()


def main(args: list[str] | None = None) -> None:
    """``aunet`` (input errors raise: :data:`aunet_command` is the console script)."""
    with sigterm_exit_status(), run_folders_released(), wandb_run_finished():
        AUCLI(AUHeatmapModule, AUDataModule, subclass_mode_model=True, args=args)


def fan_main(args: list[str] | None = None) -> None:
    """``aunet-fan`` (input errors raise: :data:`fan_command` is the console script)."""
    with sigterm_exit_status(), run_folders_released(), wandb_run_finished():
        FANCLI(FANModule, LandmarkDataModule, subclass_mode_model=True, args=args)


#: The console scripts: input errors as one line with status 2, Ctrl-C as status 130.
aunet_command = command_line("aunet", FIT_INPUT_ERRORS, stop_hint=FIT_STOP_HINT,
                             catch_sigterm=False, describe=fit_error_reason)(main)  # fmt: skip
fan_command = command_line("aunet-fan", FIT_INPUT_ERRORS, stop_hint=FIT_STOP_HINT,
                           catch_sigterm=False, describe=fit_error_reason)(fan_main)  # fmt: skip


if __name__ == "__main__":
    aunet_command()
