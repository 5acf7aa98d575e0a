"""Save and requeue a SLURM job before its time limit, at a step boundary, on every rank at once.

SLURM warns a job before its time limit with the signal of ``sbatch --signal`` (aunet's scripts:
``SIGUSR1@90``). Lightning's own SLURM handler saves the checkpoint *inside* the signal handler,
which can interrupt a backward pass or a collective operation; it then sometimes never returns
(Lightning issue #21406; the aunet SLURM test hung this way under 2-process DDP). Here the signal
only raises a flag. At the next training-step end (or validation end) the ranks agree whether any
of them was signalled (one all-reduce of a boolean), all save ``hpc_ckpt_<n>.ckpt`` in the run
folder together, and rank 0 requeues the job with ``scontrol requeue``. The ranks then wait for
SLURM to stop them rather than train on: a fit that ended here would write ``metrics.json`` and
look finished. The requeued job continues from the newest checkpoint of the run folder
(``python -m aunet.launch`` passes it as ``--ckpt_path``), mid-epoch as Lightning supports it.

Installing the handler before the fit makes Lightning leave the signal to it (Lightning only adds
its own handler to a signal that has none).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn


def slurm_job_id(environment: dict[str, str] | os._Environ) -> str:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` for an array task."""
    if "SLURM_ARRAY_JOB_ID" in environment:
        return f"{environment['SLURM_ARRAY_JOB_ID']}_{environment['SLURM_ARRAY_TASK_ID']}"
    return environment["SLURM_JOB_ID"]


def next_hpc_checkpoint(folder: Path) -> Path:
    """``folder/hpc_ckpt_<n>.ckpt`` with n one above the highest there (Lightning's naming)."""
    numbers = [int(m.group(1)) for p in folder.glob("hpc_ckpt_*.ckpt")
               if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]  # fmt: skip
    return folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


class SlurmRequeue(Callback):
    """On SLURM's warning signal: checkpoint at a step boundary, requeue, wait to be stopped.

    Does nothing outside a SLURM job step (``srun``).

    Args:
        signum: the warning signal (``sbatch --signal=SIGUSR1@<seconds>``).
        wait_seconds: how long the ranks wait for SLURM to stop them after the requeue before
            giving up with an error.
    """

    def __init__(self, signum: int = signal.SIGUSR1, wait_seconds: float = 600.0) -> None:
        self.signum = signum
        self.wait_seconds = wait_seconds
        self.signalled = False
        self._installed = False
        self._previous: Any = signal.SIG_DFL  # the handler the fit took the signal from

    def _flag(self, signum: int, frame: FrameType | None) -> None:
        if self._installed:
            self.signalled = True
        else:  # Lightning's teardown may put this handler back after a failed fit: pass it on
            signal.signal(signum, self._previous)
            signal.raise_signal(signum)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Take the warning signal for the fit (before Lightning installs its own handler)."""
        if stage == "fit" and SLURMEnvironment.detect():
            self.signalled = False
            previous = signal.signal(self.signum, self._flag)
            self._previous = signal.SIG_DFL if previous is None else previous
            self._installed = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Give the signal back."""
        self._release()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Give the signal back when the fit fails (Lightning then skips ``teardown``)."""
        self._release()

    def _release(self) -> None:
        if self._installed:
            self._installed = False
            signal.signal(self.signum, self._previous)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        """Requeue now if any rank has been signalled."""
        self._requeue_if_signalled(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Also after a validation pass, which may be long."""
        if trainer.training and not trainer.sanity_checking:
            self._requeue_if_signalled(trainer)

    def _requeue_if_signalled(self, trainer: pl.Trainer) -> None:
        if not self._installed:
            return
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        rank_zero_info("SLURM is about to stop this job: saving a checkpoint and requeueing")
        for logger in trainer.loggers:
            logger.save()
        folder = Path(trainer.default_root_dir)
        trainer.save_checkpoint(trainer.strategy.broadcast(next_hpc_checkpoint(folder)))
        requeued = False
        if trainer.is_global_zero:
            job = slurm_job_id(os.environ)
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            requeued = done.returncode == 0
            if requeued:
                rank_zero_info(f"requeued SLURM job {job}")
            else:
                rank_zero_warn(
                    f"`scontrol requeue {job}` failed ({done.stderr.strip()}); training goes on "
                    "until the time limit; resubmit to resume from the saved checkpoint"
                )
        if not trainer.strategy.broadcast(requeued):
            self.signalled = False
            return
        # SLURM now stops the job (SIGTERM, then SIGKILL); training on could finish the fit.
        time.sleep(self.wait_seconds)
        raise RuntimeError(f"requeued, but SLURM did not stop the job in {self.wait_seconds} s")
