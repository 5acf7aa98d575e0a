"""How long a fit should take on this machine, measured on its own first steps.

:class:`ExpectedTime` times the fit's optimiser steps after a short warm-up (the first steps
also start the DataLoader workers and allocate memory), by the wall clock with data loading
included, and scales the mean step to the steps the fit has left
(``trainer.estimated_stepping_batches`` less the steps done, so a resumed fit counts only what
is left). It prints that once measured; at the end of the first validation pass it prints the
estimate again with the validation passes left, each taking as long as that one (one pass every
``check_val_every_n_epoch`` epochs, Lightning's default schedule). A validation pass inside the
timing window restarts the window, so its time is not counted as steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only

from aunet.progress import format_duration


class ExpectedTime(Callback):
    """Print the fit's expected time, from its first timed steps and first validation pass.

    Args:
        warmup_steps: steps run before the timing starts.
        timed_steps: steps timed.
        clock: seconds from an arbitrary start (``time.perf_counter``).
    """

    def __init__(
        self,
        warmup_steps: int = 2,
        timed_steps: int = 5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.timed_steps = timed_steps
        self.clock = clock
        self.first_step = 0
        self.window: tuple[float, int] | None = None  # (clock, steps done) when timing began
        self.step_seconds: float | None = None
        self.validation_started: float | None = None
        self.validation_seconds: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Count steps from here (a resumed fit starts at its checkpoint's step)."""
        self.first_step = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Start the timing after the warm-up; end it after ``timed_steps`` and print."""
        if self.step_seconds is not None:
            return
        done = trainer.global_step - self.first_step
        if self.window is None:
            if done >= self.warmup_steps:
                self.window = (self.clock(), done)
            return
        began, at = self.window
        if done - at >= self.timed_steps:
            self.step_seconds = (self.clock() - began) / (done - at)
            left = self._steps_left(trainer)
            if math.isfinite(left):
                validation = (
                    ", plus validation (timed at its first pass)"
                    if trainer.enable_validation
                    else ""
                )
                self._print(
                    trainer,
                    f"expected time: {format_duration(left * self.step_seconds)} for the {left} "
                    f"training step{'s' * (left != 1)} left ({self.step_seconds:.2f} s each, "
                    "timed over steps "
                    f"{self.first_step + at + 1}-{self.first_step + done}){validation}",
                )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start timing the pass; a pass inside the steps' timing window restarts that."""
        if trainer.sanity_checking:
            return
        self.validation_started = self.clock()
        if self.step_seconds is None:
            self.window = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After the first pass: print the time left, steps and validation passes together."""
        if trainer.sanity_checking or self.validation_started is None:
            return
        if self.validation_seconds is not None or self.step_seconds is None:
            return
        self.validation_seconds = self.clock() - self.validation_started
        steps = self._steps_left(trainer)
        epochs = trainer.max_epochs
        if not math.isfinite(steps) or epochs is None or epochs < 0:
            return
        passes = (epochs - trainer.current_epoch - 1) // trainer.check_val_every_n_epoch
        seconds = steps * self.step_seconds + passes * self.validation_seconds
        self._print(
            trainer,
            f"expected time: {format_duration(seconds)} left in all ({steps} training "
            f"step{'s' * (steps != 1)} at {self.step_seconds:.2f} s, {passes} validation "
            f"pass{'es' * (passes != 1)} at {self.validation_seconds:.1f} s)",
        )

    @staticmethod
    def _steps_left(trainer: pl.Trainer) -> float:
        total = trainer.estimated_stepping_batches
        return total - trainer.global_step if math.isfinite(total) else math.inf

    @staticmethod
    @rank_zero_only
    def _print(trainer: pl.Trainer, text: str) -> None:
        # Through the progress bar when there is one, so that its line is not broken.
        bar = trainer.progress_bar_callback
        if bar is not None:
            bar.print(text)
        else:
            print(text, flush=True)
