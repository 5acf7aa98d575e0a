"""Run folders, named in one place: where a run lives, its files, its final and best models.

A run of ``aunet fit`` lives in ``runs/<experiment>/<dataset>/fold<k>/<timestamp>/``
(``official`` instead of ``fold<k>`` for datasets with official partitions; a point of the
data-efficiency study under ``.../<dataset>/subjects<n>/fold<k>/``), chosen by :func:`run_root`
and :func:`new_run_folder` for the launcher and ``aunet fit`` alike. It holds ``config.yaml``,
``metrics.json`` (written as the fit ends: a run with it has finished) and
``checkpoints/last.ckpt`` (the newest state: at every epoch end, after validation, and at the
other save points of ``aunet.cli.fit``) and ``checkpoints/best-epochNNN.ckpt`` (the epoch best by
the monitored validation metric).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Collection
from pathlib import Path

#: Where runs live (relative to the project folder).
RUNS_ROOT = Path("runs")
#: A run folder's resolved config (LightningCLI's default name), beside its checkpoints.
CONFIG_FILE = "config.yaml"
#: The fit's final validation figures, written as it ends: a run with it has finished.
METRICS_FILE = "metrics.json"
CHECKPOINT_FOLDER = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
#: ``ModelCheckpoint``'s file name template of the best checkpoint (without ``.ckpt``).
BEST_CHECKPOINT_NAME = "best-epoch{epoch:03d}"
#: A best checkpoint's name; ``-v<n>`` is Lightning's suffix for a second file of one epoch
#: (that epoch trained again after a resume from a checkpoint written before it).
_BEST_FILE = re.compile(r"best-epoch(?P<epoch>\d+)(?:-v(?P<version>\d+))?\.ckpt")


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """``<run>/checkpoints/last.ckpt``, the run's final model once its fit has ended."""
    return Path(run_dir) / CHECKPOINT_FOLDER / LAST_CHECKPOINT


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's best checkpoint, or None when it has none (no validation ran).

    Lightning keeps one, deleting the previous best when it saves a new one; should several be
    left (a fit killed between the two), the latest epoch's, the latest version of it, is the
    best of the run's final history.
    """
    found = []
    for path in (Path(run_dir) / CHECKPOINT_FOLDER).glob("best-*.ckpt"):
        match = _BEST_FILE.fullmatch(path.name)
        if match:
            found.append((int(match["epoch"]), int(match["version"] or 0), path))
    return max(found)[2] if found else None


def best_checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The epoch (0-based, as Lightning counts) in a best checkpoint's file name, or None."""
    match = _BEST_FILE.fullmatch(Path(path).name)
    return int(match["epoch"]) if match else None


def run_of_checkpoint(path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint belongs to, or None for a file outside any run folder.

    ``<run>/checkpoints/<name>.ckpt``, or a file in the run folder itself (SLURM's
    ``hpc_ckpt_<n>.ckpt``); a run folder is one holding ``checkpoints/``.
    """
    path = Path(path)
    run = path.parent.parent if path.parent.name == CHECKPOINT_FOLDER else path.parent
    return run if (run / CHECKPOINT_FOLDER).is_dir() else None


def fold_folder(fold: int | None) -> str:
    """``fold<k>``, or ``official`` for a dataset's official partitions (no fold)."""
    return f"fold{fold}" if fold is not None else "official"


def run_root(
    experiment: str, dataset: str, fold: int | None, train_subjects: int | str | None = None
) -> Path:
    """``runs/<experiment>/<dataset>/fold<k>``, or ``.../official`` for official partitions.

    A point of the data-efficiency study (:data:`aunet.evaluation.cv.TrainSubjects`) trains under
    ``runs/<experiment>/<dataset>/subjects<n>/``, apart from the experiment's own runs.
    """
    root = RUNS_ROOT / experiment / dataset
    if train_subjects is not None:
        root = root / f"subjects{train_subjects}"
    return root / fold_folder(fold)


def timestamp() -> str:
    """Now as a run folder's name, ``YYYYmmdd-HHMMSS``."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_folder(root: Path, taken: Collection[Path] = ()) -> Path:
    """``root/<timestamp>``, unique even for two launches in the same second.

    ``taken``: folders already given out but not made yet (a plan names its runs' folders
    before any fit creates one, and the seeds of a fold share its ``root``).
    """
    stamp = timestamp()
    folder = root / stamp
    suffix = 1
    while folder.exists() or folder in taken:
        folder = root / f"{stamp}-{suffix}"
        suffix += 1
    return folder


def has_finished(run_dir: str | os.PathLike) -> bool:
    """Whether the run's fit ended (:data:`METRICS_FILE` is written at the end of a fit)."""
    return (Path(run_dir) / METRICS_FILE).exists()


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a run continues from, or None.

    The newer of ``checkpoints/last.ckpt`` (rewritten at every epoch end and save point) and
    the ``hpc_ckpt_<n>.ckpt`` that aunet saves when SLURM signals a job before its time limit
    (mid-epoch, so the newer one until the next epoch end). For a finished run it is the
    final state, from which Lightning trains nothing more.
    """
    candidates = [last_checkpoint(run_dir), *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [path for path in candidates if path.exists()]
    return max(existing, key=lambda path: path.stat().st_mtime) if existing else None


def latest_finished_run(root: Path) -> Path | None:
    """The run under ``root`` that finished last and has its ``last.ckpt``, or None.

    Ordered by the modification time of :data:`METRICS_FILE`, which is when the run finished,
    not by the folder's name: a folder is named when its fit starts, and a run resumed later,
    or named by hand (``--run.dir``), finishes out of that order. Equal times fall back to the
    name.
    """
    finished = [
        run for run in root.glob("*") if has_finished(run) and last_checkpoint(run).exists()
    ]
    if not finished:
        return None
    return max(finished, key=lambda run: ((run / METRICS_FILE).stat().st_mtime, run.name))
