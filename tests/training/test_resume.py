"""Resuming: at an epoch end, mid-epoch, after SLURM's signal, a finished run; the same W&B run."""

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from factories import write_store
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.demos.boring_classes import BoringModel

from aunet.cli.fit import AUCLI, FANCLI, fan_main
from aunet.cli.fit import main as aunet_main
from aunet.cli.wandb_runs import wandb_run_id
from aunet.data.folds import DISFA_SUBJECTS
from aunet.launch import resumable_run
from aunet.models import FAN, FANConfig, save_fan
from aunet.runs import best_checkpoint, resume_checkpoint
from aunet.training.requeue import SlurmRequeue, next_hpc_checkpoint

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)
#: Fold 1 of a 2-frames-per-subject DISFA store trains on 36 frames: 4 batches of 8 per epoch.
STEPS_PER_EPOCH = 4


def test_resume_checkpoint_is_the_newest_of_last_and_hpc(tmp_path):
    run = tmp_path / "runs" / "adapt" / "disfa" / "fold1" / "20260101-000000"
    assert resume_checkpoint(run) is None
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    os.utime(run / "checkpoints" / "last.ckpt", (1, 1))
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")
    assert resume_checkpoint(run) == run / "hpc_ckpt_1.ckpt"
    os.utime(run / "hpc_ckpt_1.ckpt", (0, 0))  # an old signal's checkpoint, trained past since
    assert resume_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    (run.parent / "20260102-000000").mkdir()  # newer, but nothing to resume in it
    assert resumable_run(run.parent) == run
    assert next_hpc_checkpoint(run).name == "hpc_ckpt_2.ckpt"


def test_wandb_run_id_is_made_once_when_ranks_start_together(tmp_path):
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def rank() -> None:
        barrier.wait()
        ids.append(wandb_run_id(tmp_path / "run"))

    threads = [threading.Thread(target=rank) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert (tmp_path / "run" / "wandb_id").read_text().strip() == ids[0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["wandb_id"]


class SignalAtStep(Callback):
    """Send this process SIGUSR1 (as SLURM before a time limit) when a step starts."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.handler_during_fit = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.handler_during_fit = signal.getsignal(signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """A SLURM array task's environment and an `scontrol` that logs its arguments."""
    log = tmp_path / "scontrol.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$*" >> {log}\nexit ${{FAIL:-0}}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    slurm = {"SLURM_NTASKS": "1", "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0", "SLURM_JOB_ID": "43", "SLURM_ARRAY_JOB_ID": "42",
             "SLURM_ARRAY_TASK_ID": "2", "SLURM_JOB_NAME": "aunet-test",
             "SLURM_NODELIST": "localhost"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    return log


def boring_fit(folder: Path, callbacks: list[Callback]) -> pl.Trainer:
    trainer = pl.Trainer(
        default_root_dir=folder, max_epochs=2, limit_train_batches=4, limit_val_batches=1,
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(BoringModel())
    return trainer


@pytest.fixture
def own_sigusr1():
    """A SIGUSR1 handler of the test's own, to see the fit hand the signal back to it."""
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGUSR1, previous)


def test_slurm_signal_checkpoints_at_the_step_end_and_requeues(tmp_path, fake_slurm, own_sigusr1):
    requeue = SlurmRequeue(wait_seconds=0.1)
    signal_at = SignalAtStep(step=5)
    with pytest.raises(RuntimeError, match="SLURM did not stop the job"):
        boring_fit(tmp_path, [requeue, signal_at])
    assert signal_at.handler_during_fit == requeue._flag  # Lightning left the signal to it
    assert fake_slurm.read_text() == "requeue 42_2\n"
    checkpoint = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6  # the signalled step was completed, then saved
    assert own_sigusr1 == []
    os.kill(os.getpid(), signal.SIGUSR1)  # after the fit, the signal is the test's again
    assert own_sigusr1 == [signal.SIGUSR1]


def test_a_failed_requeue_warns_and_training_goes_on(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    with pytest.warns(UserWarning, match=r"`scontrol requeue 42_2` failed"):
        trainer = boring_fit(tmp_path, [SlurmRequeue(wait_seconds=0.1), SignalAtStep(step=1)])
    assert trainer.global_step == 8  # the fit ran to its end
    assert (tmp_path / "hpc_ckpt_1.ckpt").exists()  # and a resubmission can resume from here


def test_the_callback_does_nothing_outside_slurm(tmp_path):
    trainer = boring_fit(tmp_path, [SlurmRequeue(wait_seconds=0.1)])
    assert trainer.global_step == 8
    assert not list(tmp_path.glob("hpc_ckpt_*"))


# --------------------------------------------------------------------------------------------
# aunet fit, interrupted and resumed


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("resume")
    store = write_store(folder / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    save_fan(FAN(TINY_FAN), folder / "fan.pt")
    return store, folder / "fan.pt"


def fit(inputs: tuple[Path, Path], run_dir: Path, epochs: int, *extra: str) -> dict:
    store, fan = inputs
    aunet_main([
        "fit",
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / "adapt.yaml"),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
        "--data.num_workers", "0", "--model.init_args.fan", str(fan),
        "--run.dir", str(run_dir), "--run.experiment", "adapt",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        *extra,
    ])  # fmt: skip
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory) -> dict:
    return fit(inputs, tmp_path_factory.mktemp("whole") / "run", 3, "--run.wandb", "disabled")


def test_resuming_after_an_epoch_ends_where_an_uninterrupted_run_ends(
    inputs, uninterrupted, tmp_path
):
    run_dir = tmp_path / "run"
    first = fit(inputs, run_dir, 1, "--run.wandb", "offline")
    assert (first["epoch"], first["global_step"]) == (1, STEPS_PER_EPOCH)
    run_id = (run_dir / "wandb_id").read_text().strip()
    resumed = fit(inputs, run_dir, 3, "--run.wandb", "offline", "--ckpt_path", "last")
    assert (resumed["epoch"], resumed["global_step"]) == (3, 3 * STEPS_PER_EPOCH)
    assert (resumed["epoch"], resumed["global_step"]) == (
        uninterrupted["epoch"],
        uninterrupted["global_step"],
    )
    # The same W&B run continues: every offline segment carries the run folder's one id (in
    # one process W&B may reuse the open run; separate processes add a segment each, as the
    # SLURM requeue test sees).
    assert (run_dir / "wandb_id").read_text().strip() == run_id
    segments = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
    assert segments and all(name.endswith(f"-{run_id}") for name in segments)


class CrashError(Exception):
    """A job killed mid-epoch."""


class CrashAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise CrashError(f"killed before step {self.step + 1}")


def test_resuming_mid_epoch_from_a_step_checkpoint_ends_at_the_same_step(
    inputs, uninterrupted, tmp_path, monkeypatch
):
    """``run.checkpoint_every_n_steps`` refreshes last.ckpt mid-epoch; resuming finishes the epoch.

    Lightning restores the step, epoch and batch counters and the optimiser and scheduler, and
    runs only the interrupted epoch's remaining batches; the data loader is not resumable, so
    those batches are drawn from a fresh shuffle of the epoch's frames.
    """
    crash_step = STEPS_PER_EPOCH + 2  # in the middle of the second epoch
    run_callbacks = AUCLI.run_callbacks
    monkeypatch.setattr(
        AUCLI,
        "run_callbacks",
        lambda self, folder, settings: [*run_callbacks(self, folder, settings),
                                        CrashAtStep(crash_step)],
    )  # fmt: skip
    run_dir = tmp_path / "run"
    with pytest.raises(CrashError):
        fit(inputs, run_dir, 3, "--run.wandb", "disabled", "--run.checkpoint_every_n_steps", "2")
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (1, crash_step)
    monkeypatch.setattr(AUCLI, "run_callbacks", run_callbacks)
    resumed = fit(inputs, run_dir, 3, "--run.wandb", "disabled", "--ckpt_path", "last")
    assert (resumed["epoch"], resumed["global_step"]) == (
        uninterrupted["epoch"],
        uninterrupted["global_step"],
    )


# --------------------------------------------------------------------------------------------
# last.ckpt is the final state, whatever the monitored metric does


def csv_rows(run_dir: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in run_dir.glob("csv/*/metrics.csv"))


@pytest.mark.parametrize("cli", ["aunet", "aunet-fan"])
def test_last_checkpoint_is_the_final_state_when_later_epochs_are_worse(
    cli, inputs, tmp_path, monkeypatch
):
    """Only epoch 0 is "best" (the monitor is forced to ``epoch``, minimised); ``last.ckpt``
    must still hold the end of the fit, and resuming the finished run must train nothing.

    Lightning 2.6's ``save_last=True`` rewrote ``last.ckpt`` only when a new best was saved.
    """
    store, fan = inputs
    cli_class, entry_point = (AUCLI, aunet_main) if cli == "aunet" else (FANCLI, fan_main)
    monkeypatch.setattr(cli_class, "monitor", ("epoch", "min"))
    run_dir = tmp_path / "run"
    if cli == "aunet":
        configs = ["--config", str(EXPERIMENTS / "base.yaml"),
                   "--config", str(EXPERIMENTS / "adapt.yaml"), "--model.init_args.fan", str(fan),
                   "--data.path", str(store)]  # fmt: skip
    else:
        landmarks = write_store(tmp_path / "landmarks.h5", DISFA_SUBJECTS[:9], 2, au_names=(),
                                image_size=32)  # fmt: skip
        configs = ["--config", str(EXPERIMENTS / "fan.yaml"), "--data.path", str(landmarks),
                   "--model.init_args.fan_config", json.dumps(dataclasses.asdict(TINY_FAN)),
                   "--data.val_fraction", "0.3"]  # fmt: skip
    arguments = [
        "fit", *configs, "--data.image_size", "32", "--data.batch_size", "4",
        "--data.num_workers", "0", "--run.dir", str(run_dir), "--run.wandb", "disabled",
        "--run.checkpoint_every_n_steps", "3", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    entry_point(arguments)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["global_step"]) == (2, 4)
    checkpoints = run_dir / "checkpoints"
    # The epoch-end and every-3-steps saves share last.ckpt (no last-v1.ckpt).
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "best-epoch000.ckpt",
        "last.ckpt",
    ]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == metrics["global_step"]
    # Lightning records the index of the epoch whose end it saved; metrics.json the epochs done.
    assert last["epoch"] == metrics["epoch"] - 1
    assert best_checkpoint(run_dir) == checkpoints / "best-epoch000.ckpt"

    metrics_file, rows = (run_dir / "metrics.json").read_bytes(), csv_rows(run_dir)
    last_bytes = (checkpoints / "last.ckpt").read_bytes()
    assert resume_checkpoint(run_dir) == checkpoints / "last.ckpt"
    entry_point([*arguments, "--ckpt_path", str(resume_checkpoint(run_dir))])
    assert (run_dir / "metrics.json").read_bytes() == metrics_file  # its metrics kept
    assert csv_rows(run_dir) == rows  # no epoch trained or logged again
    assert (checkpoints / "last.ckpt").read_bytes() == last_bytes


def test_a_remote_checkpoint_is_read_through_fsspec_weights_only():
    """`--ckpt_path s3://...` works as in Lightning: fsspec's in-memory file system stands in."""
    import io

    import fsspec

    from aunet.training.checkpoint_io import AtomicCheckpointIO

    buffer = io.BytesIO()
    torch.save({"global_step": 3}, buffer)
    with fsspec.open("memory://aunet/last.ckpt", "wb") as file:
        file.write(buffer.getvalue())
    assert AtomicCheckpointIO().load_checkpoint("memory://aunet/last.ckpt") == {"global_step": 3}
