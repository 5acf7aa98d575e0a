"""A run folder's checkpoints, named in one place: the final model and the best one.

``aunet fit`` and ``aunet-fan fit`` write ``<run>/checkpoints/last.ckpt`` (the newest state: at
every epoch end, after validation, and at the other save points of ``aunet.cli``) and
``<run>/checkpoints/best-epochNNN.ckpt`` (the epoch best by the monitored validation metric).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: A run folder's resolved config (LightningCLI's default name), beside its checkpoints.
CONFIG_FILE = "config.yaml"
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
