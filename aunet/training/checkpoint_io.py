"""Checkpoint files: written atomically, read weights-only, their errors named once.

Every checkpoint aunet reads, to resume a fit (Lightning's ``--ckpt_path``, through
:class:`AtomicCheckpointIO`) or to predict (:func:`aunet.inference.predictor.read_checkpoint`),
goes through :func:`load_weights_only`: ``torch.load(weights_only=True)``, so a file holding
pickled Python objects, which could run code when unpickled, is refused without being unpickled
(``docs/security.md``), and every failure is a :class:`CheckpointError` naming the file
(``docs/errors.md``, E33 and E34).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from aunet.files import atomic_path


class CheckpointError(ValueError):
    """A checkpoint aunet will not load; the message names the file and what to do."""


def load_weights_only(
    path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False
) -> Any:
    """The contents of a ``torch.save`` file, read with ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        map_location: as ``torch.load``'s.
        mmap: map the tensors from the file instead of reading them (``torch.load(mmap=True)``):
            for reading the hyperparameters of large checkpoints without loading their weights.

    Raises:
        CheckpointError: naming the file, when it is missing or empty, holds pickled objects
            beyond tensors and plain data (refused, not unpickled), or is truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes): a copy or download that did not end?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"GLOBAL (\S+)", str(error))
        if unsafe is None:
            raise _unreadable(
                path, "not a file of torch.save, read with torch.load(weights_only=True)"
            ) from None
        raise CheckpointError(
            f"{path}: refused: it holds a pickled {unsafe[1]}, not only tensors and plain "
            "data, and unpickling it could run code; aunet loads checkpoints with "
            "torch.load(weights_only=True) only. Use a checkpoint that aunet wrote, or, if "
            "you trust its source, re-save its tensors as plain data (docs/security.md)"
        ) from None
    except Exception as error:  # torch raises several types for truncated or corrupt files
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
        raise _unreadable(path, reason or type(error).__name__) from None


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable checkpoint, truncated or corrupt ({reason}); resume from "
        "another checkpoint of the run (checkpoints/best-*.ckpt, hpc_ckpt_<n>.ckpt) or start "
        "a new run"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint files written atomically and read weights-only.

    Saving writes ``.<name>.partial`` in the same folder, syncs it to disk and renames it over
    the target: a job killed while writing (SLURM preemption, SIGKILL) or a full disk leaves the
    previous ``last.ckpt`` intact instead of a truncated one that would make the run
    unresumable. A killed write leaves at most that one hidden file, which the next save of the
    same checkpoint replaces.

    Loading (Lightning's resume, ``--ckpt_path``) always uses ``torch.load(weights_only=True)``,
    whatever the caller asks: a file holding other pickled Python objects could run code when
    unpickled, so it is refused without being unpickled (see ``docs/security.md``).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Raises:
            OSError: ``ENOSPC`` with a message naming the file when the disk is full.
        """
        target = Path(path)
        try:
            # One fixed temporary name: a write killed by SLURM leaves one file, replaced next time.
            partial = target.with_name(f".{target.name}.partial")
            with atomic_path(target, partial) as temporary, temporary.open("wb") as file:
                torch.save(checkpoint, file)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                kept = "the previous one is intact" if target.exists() else "nothing was written"
                raise OSError(
                    errno.ENOSPC,
                    f"no space left on device while writing checkpoint {target}; {kept}. Free "
                    "some space, then resume the run (make train ... RESUME=1)",
                ) from error
            raise

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Read a checkpoint with :func:`load_weights_only`, whatever ``weights_only`` asks.

        Raises:
            CheckpointError: naming the file (:func:`load_weights_only`).
        """
        # A remote file (s3://, ...) goes through Lightning's fsspec reader, weights-only too.
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_weights_only(path, map_location=map_location)
