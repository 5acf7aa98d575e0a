"""Run-time guards of the ``aunet`` entry points: stop early, with a message saying what to do.

Each guard catches, before any training, an input that would otherwise fail late (after an
epoch of work), unclearly, or unsafely; ``docs/errors.md`` lists their messages and
``docs/security.md`` the reasons for :func:`check_model_class`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from aunet.locks import LockHeldError, advisory_lock, release_lock
from aunet.training.checkpoint_io import CheckpointError


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
        print(
            "stopped by SIGTERM; last.ckpt holds the state at the last finished step",
            file=sys.stderr,
        )
        raise SystemExit(128 + signal.SIGTERM) from None


#: Set to 1 to see an input error's traceback instead of its one line.
DEBUG_VARIABLE = "AUNET_DEBUG"
#: Exit statuses: a user-input error, SIGINT (Ctrl-C) and SIGTERM (the shells' 128 + signal).
INPUT_ERROR_STATUS = 2
SIGINT_STATUS = 128 + signal.SIGINT
SIGTERM_STATUS = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwinds the stack, so ``finally`` blocks remove partial files.

    A ``BaseException``, as ``KeyboardInterrupt``, so that ``except Exception`` does not catch it.
    """


def command_line(
    program: str,
    input_errors: tuple[type[BaseException], ...] = (),
    *,
    stop_hint: str = "",
    catch_sigterm: bool = True,
    describe: Callable[[BaseException], str] = str,
) -> Callable[[Callable[[], object]], Callable[[], None]]:
    """Make ``main`` a console script: one line and a status for input errors and signals.

    - An ``input_errors`` exception: ``<program>: error: <message>``, status 2 (its traceback
      with ``AUNET_DEBUG=1``).
    - SIGINT (Ctrl-C): ``<program>: interrupted (SIGINT)<stop_hint>``, status 130, also when a
      library turned the ``KeyboardInterrupt`` into another exit (Lightning exits 1).
    - SIGTERM, with ``catch_sigterm``: raised as :class:`Terminated`, so partial files are
      removed as for any failure; ``<program>: stopped by SIGTERM<stop_hint>``, status 143.
      Fits keep Lightning's own SIGTERM handling (a checkpoint at the step end, then 143).

    Args:
        program: the command's name, which starts each line.
        input_errors: the exception types that mean the user's input or options are wrong.
        stop_hint: said after an interruption, e.g. how to resume.
        catch_sigterm: raise :class:`Terminated` on SIGTERM.
        describe: an input error's message (default ``str``).
    """

    def wrap(main: Callable[[], object]) -> Callable[[], None]:
        @functools.wraps(main)
        def console_script() -> None:
            interrupted = False

            def on_sigint(signum: int, frame: FrameType | None) -> None:
                nonlocal interrupted
                interrupted = True
                raise KeyboardInterrupt

            def on_sigterm(signum: int, frame: FrameType | None) -> None:
                raise Terminated

            previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint)}
            if catch_sigterm:
                previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_sigterm)
            try:
                main()
            except KeyboardInterrupt:
                _stop(f"{program}: interrupted (SIGINT){stop_hint}", SIGINT_STATUS)
            except Terminated:
                _stop(f"{program}: stopped by SIGTERM{stop_hint}", SIGTERM_STATUS)
            except SystemExit as exit_:
                if interrupted and exit_.code not in (0, None):
                    _stop(f"{program}: interrupted (SIGINT){stop_hint}", SIGINT_STATUS)
                raise
            except input_errors as error:
                if os.environ.get(DEBUG_VARIABLE) == "1":
                    raise
                _stop(f"{program}: error: {describe(error)}", INPUT_ERROR_STATUS)
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

        return console_script

    return wrap


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` with each option's default, where one means something.

    argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: None)`` to required
    options and to options whose help already says what their default is.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or "default" in text or action.default in (None, False, ""):
            return text
        if action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _stop(line: str, status: int) -> None:
    print(line, file=sys.stderr)
    raise SystemExit(status) from None


class ResumeConfigError(ValueError):
    """A resume whose config differs from the checkpoint's in what the run learns."""


#: Config keys a resume may change: where and how fast the run goes, how long, what it logs.
#: Anything else (the model, the data, the optimisation, the seed) changes what it learns.
RESUME_SAFE_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.precision",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.profiler",
    "data.num_workers",
    "run.",
)
#: Keys never compared: which checkpoint and config files were given, and the override itself.
RESUME_IGNORED_KEYS = ("ckpt_path", "config", "run.allow_config_change")
#: Prefix of the keys that a resume takes from the checkpoint whatever the config says:
#: LightningCLI builds the model from the checkpoint's hyperparameters, and Lightning restores
#: the optimiser and learning-rate schedule (lr included) from its state.
RESUME_FROM_CHECKPOINT = "model."


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b.c": value}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _is(key: str, names: tuple[str, ...]) -> bool:
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in names)


def compare_resume_config(
    checkpoint: str | os.PathLike,
    saved: dict[str, Any] | None,
    requested: dict[str, Any],
    allow_change: bool,
) -> list[str]:
    """Check a resume's config against the one the checkpoint was trained with.

    Args:
        checkpoint: the ``--ckpt_path`` file (for messages).
        saved: the config stored in the checkpoint (None in checkpoints made before aunet
            stored it: nothing to compare).
        requested: this run's config, as parsed, before the checkpoint's hyperparameters
            are merged in.
        allow_change: ``--run.allow_config_change``: apply changes that are not safe.

    Returns:
        Lines to print: each change and what happens to it.

    Raises:
        ResumeConfigError: listing the changes that are not safe, unless ``allow_change``.
    """
    if saved is None:
        return [f"resume: {checkpoint} holds no config (an older checkpoint); not compared"]
    before, after = flat_config(saved), flat_config(requested)
    changes = {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if not _is(key, RESUME_IGNORED_KEYS) and before.get(key) != after.get(key)
    }
    safe = {key: change for key, change in changes.items() if _is(key, RESUME_SAFE_KEYS)}
    kept = {key: c for key, c in changes.items() if key.startswith(RESUME_FROM_CHECKPOINT)}
    learned = {key: c for key, c in changes.items() if key not in safe and key not in kept}
    if (learned or kept) and not allow_change:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items()
                           if key not in safe)  # fmt: skip
        raise ResumeConfigError(
            f"{checkpoint}: resuming with a config that differs from the checkpoint's in what "
            f"the run learns: {listed}; resume with the checkpoint's settings, start a new run "
            "(another --run.dir, no --ckpt_path), or give --run.allow_config_change true"
        )

    def lines(changed: dict[str, tuple[Any, Any]], what: str) -> list[str]:
        return [f"resume: {key} {old!r} -> {new!r} ({what})" for key, (old, new) in changed.items()]

    return [
        *lines(safe, "applied"),
        *lines(learned, "applied: --run.allow_config_change"),
        *lines(kept, "not applied: the model and its optimiser state come from the checkpoint"),
    ]


#: What a fit's user can put right: a bad option value, file or folder (aunet's own errors
#: derive from ValueError or OSError), or a setting Lightning refuses.
FIT_INPUT_ERRORS = (ValueError, OSError, MisconfigurationException)
FIT_STOP_HINT = (
    "; resume from the run's checkpoints/last.ckpt with the same command and --ckpt_path "
    "(make train ... RESUME=1)"
)


#: How jsonargparse reports an error raised while building the model (a ``class_path`` union).
_UNION_FAILURE = "Does not validate against any of the Union subtypes"


def fit_error_reason(error: BaseException) -> str:
    """The error's message; for the model's own error, without jsonargparse's wrapping.

    jsonargparse reports an exception of the model's ``__init__`` as a failure to match each
    type of ``model`` (the class, or None) with the given values dumped after it; the reason
    is the class's line.
    """
    message = str(error)
    if not message.startswith(_UNION_FAILURE):
        return message
    reasons = [
        line.strip().removeprefix("- ")
        for line in message.splitlines()
        if line.startswith("  - ") and "Expected a <class 'NoneType'>" not in line
    ]
    return "; ".join(reasons) or message
