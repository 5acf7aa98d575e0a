"""Progress of a run: the fit's expected time from its first steps, and the stage lines."""

from __future__ import annotations

import io

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.demos.boring_classes import BoringModel

from aunet.progress import Stages, format_duration, track
from aunet.training.expected_time import ExpectedTime

STEP_SECONDS = 0.5
VALIDATION_SECONDS = 3.0


class FakeClock(Callback):
    """A clock that advances 0.5 s per training step and 3 s per validation pass.

    As a callback listed before :class:`ExpectedTime`, it advances before that reads it.
    """

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, *args: object) -> None:
        self.now += STEP_SECONDS

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.now += VALIDATION_SECONDS


def fit_on_the_fake_clock(
    folder, train_batches: int, val_batches: int, timed_steps: int, progress_bar: bool
) -> None:
    """Three epochs of a BoringModel timed by ExpectedTime (2 warm-up steps) on FakeClock."""
    clock = FakeClock()
    trainer = pl.Trainer(
        max_epochs=3, limit_train_batches=train_batches, limit_val_batches=val_batches,
        logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
        enable_progress_bar=progress_bar, default_root_dir=folder,
        callbacks=[clock, ExpectedTime(warmup_steps=2, timed_steps=timed_steps, clock=clock)],
    )  # fmt: skip
    trainer.fit(BoringModel())


@pytest.mark.parametrize("progress_bar", [True, False])
def test_expected_time_scales_the_timed_steps_and_the_first_validation_pass(
    tmp_path, capsys, progress_bar
):
    fit_on_the_fake_clock(tmp_path, 10, 2, timed_steps=5, progress_bar=progress_bar)
    out = capsys.readouterr().out  # through the progress bar's write, when there is one
    lines = [line[line.index("expected") :] for line in out.splitlines() if "expected" in line]
    # Timed from the end of step 2 to the end of step 7: 5 steps, 2.5 s; 30 - 7 = 23 steps left.
    # After epoch 1's validation (3 s): 20 steps left and 2 passes, 20 x 0.5 + 2 x 3 = 16 s.
    assert lines == [
        "expected time: 12 s for the 23 training steps left (0.50 s each, timed over steps 3-7)"
        ", plus validation (timed at its first pass)",
        "expected time: 16 s left in all (20 training steps at 0.50 s, 2 validation passes at "
        "3.0 s)",
    ]


def test_a_validation_pass_inside_the_timing_window_restarts_it(tmp_path, capsys):
    """Epochs of 4 steps: the window opened after step 2 would contain epoch 1's validation."""
    fit_on_the_fake_clock(tmp_path, 4, 1, timed_steps=3, progress_bar=False)
    line = next(line for line in capsys.readouterr().out.splitlines() if "expected time" in line)
    # Restarted at the end of step 5 (the first after the pass), timed over steps 6-8.
    assert line.startswith(
        "expected time: 2 s for the 4 training steps left (0.50 s each, timed over steps 6-8)"
    )


def test_durations_and_stage_lines(capsys):
    assert [format_duration(s) for s in (44.6, 89, 90, 3000, 5400, 9000)] == [
        "45 s", "89 s", "1.5 min", "50.0 min", "1.5 h", "2.5 h",
    ]  # fmt: skip
    stages = Stages(["stores", "FAN", "training", "report"])
    stages.start("FAN", "none: scratch uses no FAN")
    assert capsys.readouterr().out == "\n[2/4] FAN: none: scratch uses no FAN\n"


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def consume(stream: io.StringIO, total: int, seconds_per_step: float) -> None:
    """Run a loop of ``total`` steps under :func:`track` on a clock of ``seconds_per_step``."""
    clock = FakeClock()
    for _ in track(range(total), "predicting fold1", total, stream=stream, clock=clock):
        clock.now += seconds_per_step


def test_a_progress_bar_in_a_log_is_a_line_per_tenth_with_the_time_left():
    stream = io.StringIO()
    consume(stream, 20, seconds_per_step=3.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%: a log is not flooded
    assert lines[0] == "predicting fold1 [--------------------]   0% 0/20 batches, 0 s"
    assert lines[5] == (
        "predicting fold1 [##########----------]  50% 10/20 batches, 30 s, ~30 s left"
    )
    assert lines[-1] == "predicting fold1 [####################] 100% 20/20 batches, 60 s"


def test_a_progress_bar_on_a_terminal_rewrites_one_line():
    stream = Terminal()
    consume(stream, 80, seconds_per_step=0.125)  # the bar is redrawn at most every 0.5 s
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 1 + 20 + 1  # the start, every 4th step (0.5 s), the end
    assert (
        frames[10]
        == "predicting fold1 [##########----------]  50% 40/80 batches, 5 s, ~5 s left\x1b[K"
    )
    assert frames[-1] == "predicting fold1 [####################] 100% 80/80 batches, 10 s\x1b[K"
