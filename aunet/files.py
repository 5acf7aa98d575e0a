"""Writing results safely: atomic files, JSON, figures, Markdown tables and their numbers.

Every file aunet writes (checkpoints, stores, reports, tables, predictions, exports) goes through
:func:`atomic_path` or the writers built on it: the data goes to a hidden temporary file beside
the target, is synced to disk, and is renamed over the target only when complete. A reader, a
requeued job or a resumed run sees the old file or the new one, never half of one; a full disk
or a killed writer leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, partial: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (OpenCV and the exporters choose a format by
    it) and is synced before the rename, so a write error that the system reports late (a full
    disk, a quota, a network file system) fails the writer instead of leaving a damaged file.
    Any failure, Ctrl-C included, removes the temporary file.

    Args:
        path: the file to write.
        partial: a fixed temporary name instead of a fresh unique one, for a writer that may
            be killed (a checkpoint under SLURM): its leftover is then replaced by the next
            write instead of piling up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if partial is None:
        descriptor, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}"
        )
        # mkstemp makes the file private (0600); results get the permissions any new file
        # gets, so that collaborators on a shared cluster can read them.
        os.fchmod(descriptor, 0o666 & ~_umask())
        os.close(descriptor)
        partial = Path(name)
    try:
        yield partial
        commit(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def commit(partial: Path, path: Path) -> None:
    """Sync ``partial`` to disk and rename it over ``path``: the last step of an atomic write.

    For writers that keep their temporary file open across many calls (the frame store's);
    everything else writes through :func:`atomic_path`, which ends with this.
    """
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    os.replace(partial, path)


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`) and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json_atomically(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON with sorted keys to ``path`` atomically."""
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def copy_atomically(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target`` atomically: ``target`` is never a partial copy."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV, the first row's keys as the header (atomically).

    None and NaN are empty cells.
    """
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return path


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def pyplot() -> Any:
    """The pyplot module on matplotlib's file-only Agg backend (no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_figure(
    figure: Any, path: Path, title: str, rect: tuple[float, float, float, float] = (0, 0, 1, 1)
) -> Path:
    """Give ``figure`` its title, write it to ``path`` as PNG (atomically) and close it.

    ``rect`` is the part of the figure the axes are laid out in (left, bottom, right, top, as
    fractions), leaving room outside it for a figure legend, which the layout does not see.
    """
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=rect)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    pyplot().close(figure)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> str:
    """A Markdown table; the columns from index ``right`` on are right-aligned (numbers)."""
    rule = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def json_number(value: float) -> float | None:
    """``value``, or None (JSON's null) for NaN and infinities, which JSON cannot hold."""
    return value if math.isfinite(value) else None


def format_number(value: float | None, digits: int = 3, unknown: str = "n/a") -> str:
    """``value`` at ``digits`` decimals (never ``-0.000``), or ``unknown`` when None."""
    return unknown if value is None else f"{round(value, digits) + 0.0:.{digits}f}"
