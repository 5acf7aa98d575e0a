"""The launcher's progress lines: one per stage of ``make train``, numbered, with its expected time.

``make train`` runs four stages: the synthetic stores, the FAN, the training and the report.
:class:`Stages` prints one line as each starts (``[2/4] FAN: ...``), saying what the stage does,
what it reuses or skips, and how long it should take on this machine. Expected times are
measured on this machine, never copied from another: the stores' from drawing a few frames
first (:func:`aunet.synthetic.draw.expected_write_seconds`), a fit's from its own first steps
(:class:`aunet.training.expected_time.ExpectedTime`, which prints them once measured).

Steps that run long without a word of their own (predicting a fold's held-out frames, a
robustness level) show a :class:`ProgressBar` on stderr instead, so stdout keeps only the
results and a log of stdout stays readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TextIO, TypeVar

Item = TypeVar("Item")


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3.2 min"`` or ``"1.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Stages:
    """Numbered progress lines for a fixed sequence of stages.

    Args:
        names: the stages, in the order they run.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def start(self, name: str, text: str) -> None:
        """Print the line of stage ``name`` (one of :attr:`names`)."""
        number = self.names.index(name) + 1
        print(f"\n[{number}/{len(self.names)}] {name}: {text}", flush=True)


class ProgressBar:
    """A progress bar for a loop of known length, on stderr by default.

    On a terminal the bar is one line rewritten in place (at most every ``refresh`` seconds);
    elsewhere (a SLURM log, a pipe) each tenth of the work adds a line, so a log gets at most
    eleven lines per bar instead of a stream of carriage returns.

    Args:
        label: what the loop does (``predicting fold1``).
        total: the number of steps.
        unit: what a step is, for the counts (``batches``).
        stream: where the bar goes (default ``sys.stderr``).
        clock: seconds, for the elapsed and expected times (a fake one in tests).
        refresh: the shortest interval between two rewrites on a terminal, in seconds.
    """

    WIDTH = 20

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "batches",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = 0.5,
    ) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = sys.stderr if stream is None else stream
        self.clock, self.refresh = clock, refresh
        self.terminal = self.stream.isatty()
        self.done = 0
        self.started = clock()
        self._shown_at = -float("inf")  # when the terminal line was last rewritten
        self._tenths_shown = -1  # the last tenth given a line elsewhere

    def text(self) -> str:
        """``predicting fold1 [######--------------] 30% 12/40 batches, 9 s, ~21 s left``."""
        fraction = self.done / self.total if self.total else 1.0
        filled = round(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = self.clock() - self.started
        line = (
            f"{self.label} [{bar}] {fraction:4.0%} {self.done}/{self.total} {self.unit}, "
            f"{format_duration(elapsed)}"
        )
        if 0 < self.done < self.total:  # the rest at the pace so far
            left = elapsed * (self.total - self.done) / self.done
            line += f", ~{format_duration(left)} left"
        return line

    def update(self, steps: int = 1) -> None:
        """Count ``steps`` more done, and show the bar when it is time to."""
        self.done = min(self.done + steps, self.total)
        if self.terminal:
            now = self.clock()
            if now - self._shown_at >= self.refresh or self.done == self.total:
                self._shown_at = now
                self.stream.write(f"\r{self.text()}\x1b[K")  # erase the old line's tail
                self.stream.flush()
            return
        tenths = self.done * 10 // self.total if self.total else 10
        if tenths > self._tenths_shown:
            self._tenths_shown = tenths
            self.stream.write(self.text() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar: the terminal line stays, complete, and the cursor moves below it."""
        if self.terminal:
            self.stream.write(f"\r{self.text()}\x1b[K\n")
            self.stream.flush()


def track(
    items: Iterable[Item],
    label: str,
    total: int,
    unit: str = "batches",
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Item]:
    """Yield ``items``, showing a :class:`ProgressBar` of ``total`` steps as they are consumed.

    Args:
        items: the loop's items (a DataLoader).
        label: what the loop does.
        total: how many items there are (``len(loader)``).
        unit: what an item is.
        stream: where the bar goes (default ``sys.stderr``).
        clock: seconds (a fake one in tests).
    """
    progress = ProgressBar(label, total, unit, stream, clock)
    progress.update(0)  # the bar appears at the start, not after the first (slowest) step
    try:
        for item in items:
            yield item
            progress.update()
    finally:
        progress.close()
