"""Run-time guards of the ``aunet`` entry points: stop early, with a message saying what to do.

Each guard catches, before any training, an input that would otherwise fail late (after an
epoch of work), unclearly, or unsafely; ``docs/errors.md`` lists their messages and
``docs/security.md`` the reasons for :func:`check_model_class`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from aunet.locks import LockHeldError, advisory_lock, release_lock
from aunet.training.callbacks import CheckpointError


def check_accelerator(accelerator: object) -> None:
    """Refuse ``gpu``/``cuda`` where PyTorch sees no CUDA device, saying why and what to use.

    (Lightning says only "No supported gpu backend found!" for ``gpu``.)

    Raises:
        MisconfigurationException: naming the option, the reason and the alternatives.
    """
    if str(accelerator).lower() not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    reason = (
        f"this torch ({torch.__version__}) is a CPU-only build"
        if torch.version.cuda is None
        else "no GPU is visible (no device, no driver, or CUDA_VISIBLE_DEVICES hides it)"
    )
    raise MisconfigurationException(
        f"--trainer.accelerator {accelerator} asks for a CUDA GPU, but PyTorch sees none: "
        f"{reason}; run on a GPU machine, or use --trainer.accelerator cpu (or auto, which "
        "takes a GPU when there is one)"
    )


def check_model_class(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint whose hyperparameters name a model class outside aunet.

    LightningCLI builds the model of a ``--ckpt_path`` run from the checkpoint's hyperparameters,
    and a ``_class_path`` there makes jsonargparse import that module (running its top-level
    code) before it checks the class: a checkpoint, which should be data, would choose code.
    aunet's own checkpoints hold no ``_class_path``.

    Raises:
        CheckpointError: naming the file and the class.
    """
    class_path = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if class_path is None or str(class_path).startswith("aunet."):
        return
    raise CheckpointError(
        f"{path}: refused: its hyperparameters name the model class {class_path!r}, outside "
        "aunet, which LightningCLI would import (running that module's code) to resume it; "
        "resume only from checkpoints of aunet's own models"
    )


class RunFolderError(OSError):
    """A run folder that cannot be created or written."""


def writable_run_folder(folder: Path) -> Path:
    """Create ``folder`` and check that files can be written in it, before training starts.

    Otherwise the first checkpoint, at the end of the first epoch, would fail, with that epoch
    lost.

    Raises:
        RunFolderError: naming the folder, the system's reason and the option to change.
    """
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(
            f"run folder {folder} cannot be written ({error.strerror or error}); choose another "
            "with --run.dir DIR (make train ... ARGS='--run.dir DIR'), or fix the permissions"
        ) from None
    return folder


#: Name of the advisory lock file in a run folder.
RUN_LOCK = ".lock"
#: The run folders this process holds, lock file -> its open handle (closing it releases).
_held: dict[Path, IO[str]] = {}


def lock_run_folder(folder: Path) -> None:
    """Make this process the run folder's one writer, or refuse if another process is.

    An advisory ``flock`` on ``folder/.lock``, which names its holder (pid and host). The
    kernel drops it when the holder exits, however it exits, so the lock of a killed or
    preempted fit is taken over by the next one (a resume, a requeued SLURM job). A folder
    this process already holds (a second fit in the same process) is not locked again.

    Raises:
        RunFolderError: naming the folder and the process that holds it.
    """
    path = (folder / RUN_LOCK).resolve()
    if path in _held:
        return
    try:
        handle = advisory_lock(path, f"run folder {folder}", "fit into this folder")
    except LockHeldError as held:
        raise RunFolderError(
            f"run folder {folder} is in use by {held.holder or 'another process'}: two fits "
            "writing one folder would mix their config, checkpoints and metrics; wait for that "
            "fit to end, or choose another folder with --run.dir DIR"
        ) from None
    if handle is not None:  # None: a file system without flock; warned, the fit goes on
        _held[path] = handle


@contextlib.contextmanager
def run_folders_released() -> Iterator[None]:
    """Release, when the block ends however it ends, the run folders this process locked."""
    try:
        yield
    finally:
        while _held:
            release_lock(_held.popitem()[1])  # the file stays: it is the folder's, not the fit's


@contextlib.contextmanager
def sigterm_exit_status() -> Iterator[None]:
    """Exit with status 143 (128 + SIGTERM) when a fit stops for SIGTERM.

    Lightning ends such a fit with ``SystemExit()``, status 0, as if it had finished; the
    launcher and shell scripts would then carry on with an unfinished run.
    """
    try:
        yield
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
