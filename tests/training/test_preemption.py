"""Preemption: a fit killed at ten random points resumes and ends where an uninterrupted one ends.

One run folder is trained by ``aunet fit`` in a child process that is killed ten times, at a
random step and a random moment within it (during the step, a checkpoint write, validation or
an epoch end), by SIGTERM (as SLURM preempts, cancels or stops a job: to the whole process
group, DataLoader worker included) or by SIGKILL, half each in random order; after each kill the
next start resumes from the newest checkpoint, as ``make train RESUME=1`` and a requeued SLURM
job do (:func:`aunet.runs.resume_checkpoint`). Checked after every kill: the exit status,
that every checkpoint in the run folder loads weights-only (atomic writes: never half a
checkpoint), and that SIGTERM lost no step (SIGKILL at most the step being saved). At the end:
the same final ``global_step`` and epoch as an uninterrupted run, and one W&B run id across all
the segments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback
from test_resume import STEPS_PER_EPOCH
from test_resume import inputs as tiny_inputs  # noqa: F401 (fixture: tiny DISFA store, FAN)

from aunet.cli.fit import AUCLI
from aunet.cli.fit import main as aunet_main
from aunet.runs import resume_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
EPOCHS = 4
KILLS = 10
PAUSE = 0.3  # seconds each step end lingers, so that a kill can land anywhere around it
SEED = 20260421


class StepClock(Callback):
    """Append each finished step's ``global_step`` and epoch to a file, then pause (a clock).

    Runs in the child process (``--trainer.callbacks+ test_preemption.StepClock``), before
    aunet's own callbacks, so the step is logged before its checkpoint is written.
    """

    def __init__(self, path: str, pause: float = 0.0) -> None:
        self.path = path
        self.pause = pause

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        with open(self.path, "a") as file:
            file.write(f"{trainer.global_step} {trainer.current_epoch}\n")
        time.sleep(self.pause)


def start_fit(inputs: tuple[Path, Path], run_dir: Path, clock: Path, pause: float, log: Path):
    """``aunet fit`` in its own process group, resuming from the run folder's newest checkpoint."""
    store, fan = inputs
    command = [
        sys.executable, "-m", "aunet.cli.fit", "fit",
        "--config", str(EXPERIMENTS / "base.yaml"), "--config", str(EXPERIMENTS / "adapt.yaml"),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
        "--data.num_workers", "1", "--model.init_args.fan", str(fan),
        "--run.dir", str(run_dir), "--run.experiment", "adapt", "--run.wandb", "offline",
        "--run.checkpoint_every_n_steps", "1",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(EPOCHS),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.callbacks+", "test_preemption.StepClock",
        "--trainer.callbacks.path", str(clock), "--trainer.callbacks.pause", str(pause),
    ]  # fmt: skip
    checkpoint = resume_checkpoint(run_dir)
    if checkpoint is not None:
        # The test clock's pause differs between the killed fits and the last one: a callback
        # change, which a resume refuses unless told (docs/errors.md, E45).
        command += ["--ckpt_path", str(checkpoint), "--run.allow_config_change", "true"]
    # The repository, this test's folder (the StepClock class path names this module) and the
    # shared factories' folder.
    folders = [REPO, Path(__file__).resolve().parent, REPO / "tests"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, folders))}
    clock.unlink(missing_ok=True)
    with log.open("a") as output:
        output.write(f"\n+ {' '.join(command)}\n")
        output.flush()
        return subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def steps_logged(clock: Path) -> list[int]:
    return (
        [int(line.split()[0]) for line in clock.read_text().splitlines()] if clock.exists() else []
    )


def assert_epochs_follow_steps(clock: Path) -> None:
    """Every step a segment trained lies in the epoch its number says (no epoch is repeated)."""
    for line in clock.read_text().splitlines():
        step, epoch = map(int, line.split())
        assert epoch == (step - 1) // STEPS_PER_EPOCH, f"step {step} trained in epoch {epoch}"


def wait_for_step(process: subprocess.Popen, clock: Path, step: int, log: Path) -> int:
    """Wait until this process has logged ``step`` (or its first step, if it resumed past it)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        steps = steps_logged(clock)
        if steps and steps[-1] >= step:
            return steps[-1]
        assert process.poll() is None, f"the fit ended before step {step}:\n{tail(log)}"
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within 300 s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_ten_random_kills_resume_to_the_uninterrupted_end(tiny_inputs, tmp_path):  # noqa: F811
    rng = random.Random(SEED)
    total = EPOCHS * STEPS_PER_EPOCH
    log = tmp_path / "fits.log"

    reference = start_fit(tiny_inputs, tmp_path / "uninterrupted", tmp_path / "clock0", 0.0, log)
    assert reference.wait(timeout=600) == 0, tail(log)
    expected = json.loads((tmp_path / "uninterrupted" / "metrics.json").read_text())
    assert (expected["epoch"], expected["global_step"]) == (EPOCHS, total)

    run_dir, clock = tmp_path / "run", tmp_path / "clock"
    targets = sorted(rng.sample(range(1, total - 1), KILLS))
    signals = [signal.SIGTERM, signal.SIGKILL] * (KILLS // 2)
    rng.shuffle(signals)
    survived = []
    for target, signum in zip(targets, signals, strict=True):
        process = start_fit(tiny_inputs, run_dir, clock, PAUSE, log)
        wait_for_step(process, clock, target, log)
        time.sleep(rng.uniform(0.0, 1.5 * PAUSE))
        at_step = steps_logged(clock)[-1]  # the last step that had ended when the signal went
        os.killpg(process.pid, signum)
        status = process.wait(timeout=120)
        assert status == (128 + signal.SIGTERM if signum == signal.SIGTERM else -signal.SIGKILL), (
            f"{signum.name} at step {at_step}: exit status {status}\n{tail(log)}"
        )
        checkpoints = [*run_dir.rglob("*.ckpt")]
        steps = {path.name: checkpoint_step(path) for path in checkpoints}  # all load, none torn
        saved = checkpoint_step(resume_checkpoint(run_dir))
        lost = 0 if signum == signal.SIGTERM else 1  # SIGKILL may cut the step's own save
        assert saved >= at_step - lost, f"{signum.name} at step {at_step}: resumes at {saved}"
        assert_epochs_follow_steps(clock)
        survived.append((signum.name, at_step, saved, sorted(steps.items())))
    print("kills (signal, last step ended, checkpoint step):",
          [(name, at, saved) for name, at, saved, _ in survived])  # fmt: skip

    final = start_fit(tiny_inputs, run_dir, clock, 0.0, log)
    assert final.wait(timeout=600) == 0, tail(log)
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["epoch"] == expected["epoch"]
    assert resumed["global_step"] == expected["global_step"]
    assert len(survived) == KILLS

    run_id = (run_dir / "wandb_id").read_text().strip()
    segments = [path.name for path in (run_dir / "wandb").glob("offline-run-*")]
    assert len(segments) >= 2 and all(name.endswith(f"-{run_id}") for name in segments)


# --------------------------------------------------------------------------------------------
# The same, at chosen points, in this process


class KilledError(Exception):
    """Stands for a kill."""


class KillAt(Callback):
    """Raise at the start of step ``step + 1``, or in the validation after step ``step``."""

    def __init__(self, step: int, in_validation: bool = False) -> None:
        self.step = step
        self.in_validation = in_validation

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if not self.in_validation and trainer.global_step == self.step:
            raise KilledError

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.in_validation and trainer.global_step == self.step and not trainer.sanity_checking:
            raise KilledError


def test_resuming_after_a_kill_between_an_epochs_last_step_and_its_end_repeats_no_step(
    tiny_inputs,  # noqa: F811 (the fixture imported above)
    tmp_path,
    monkeypatch,
):
    """A checkpoint of an epoch's last step (here: killed in validation) resumed, then twice more.

    Lightning 2.6 used to repeat the next epoch's steps on the second resume
    (``aunet.training.callbacks.RepairRestartAtEpochEnd``).
    """
    store, fan = tiny_inputs
    run_dir, clock = tmp_path / "run", tmp_path / "clock"
    run_callbacks = AUCLI.run_callbacks
    for kill in (KillAt(4, in_validation=True), KillAt(5), KillAt(7), None):
        extra = [] if kill is None else [kill]
        monkeypatch.setattr(AUCLI, "run_callbacks",
                            lambda self, folder, settings, extra=extra: [
                                *run_callbacks(self, folder, settings), *extra])  # fmt: skip
        checkpoint = resume_checkpoint(run_dir)
        arguments = [
            "fit", "--config", str(EXPERIMENTS / "base.yaml"),
            "--config", str(EXPERIMENTS / "adapt.yaml"),
            "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
            "--data.num_workers", "0", "--model.init_args.fan", str(fan),
            "--run.dir", str(run_dir), "--run.wandb", "disabled",
            "--run.checkpoint_every_n_steps", "1", "--trainer.accelerator", "cpu",
            "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+", "test_preemption.StepClock",
            "--trainer.callbacks.path", str(clock),
            *(["--ckpt_path", str(checkpoint)] if checkpoint else []),
        ]  # fmt: skip
        if kill is None:
            aunet_main(arguments)
        else:
            with pytest.raises(KilledError):
                aunet_main(arguments)
    assert_epochs_follow_steps(clock)
    steps = steps_logged(clock)
    assert steps == list(range(1, 3 * STEPS_PER_EPOCH + 1)), steps  # each step once
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["global_step"]) == (3, 3 * STEPS_PER_EPOCH)
