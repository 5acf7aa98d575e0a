"""The launcher's progress lines: one per stage of ``make train``, numbered, with its expected time.

``make train`` runs four stages: the synthetic stores, the FAN, the training and the report.
:class:`Stages` prints one line as each starts (``[2/4] FAN: ...``), saying what the stage does,
what it reuses or skips, and how long it should take on this machine. Expected times are
measured on this machine, never copied from another: the stores' from drawing a few frames
first (:func:`aunet.data.synthetic.expected_write_seconds`), a fit's from its own first steps
(:class:`aunet.training.expected_time.ExpectedTime`, which prints them once measured).
"""

from __future__ import annotations

from collections.abc import Sequence


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
