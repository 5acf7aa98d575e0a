"""One writer at a time: an advisory lock file that names its holder.

Two processes writing one run folder, or one frame store, would mix or delete each other's
files. Each writer holds an exclusive ``flock`` on a lock file for as long as it writes, and
the file says who holds it (``pid N on HOST``), so that the next one's refusal can say whom to
wait for. The kernel drops a ``flock`` when its holder exits, however it exits, so the lock of
a killed process is taken over by the next one: the text such a process leaves behind blocks
nobody. Only the standard library is imported here, so converters can use it cheaply.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from pathlib import Path
from typing import IO


class LockHeldError(Exception):
    """Another process holds the lock.

    Attributes:
        path: the lock file.
        holder: what the lock file says about its holder (``pid N on HOST``); empty if the
            holder had not written it yet.
    """

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path = path
        self.holder = holder


def advisory_lock(path: Path, what: str, second: str) -> IO[str] | None:
    """Take the exclusive advisory lock on ``path`` (created if missing), without waiting.

    Args:
        path: the lock file.
        what: what the lock guards, to start the warning with (``run folder runs/x``).
        second: what a second writer would do, for the warning (``fit into this folder``).

    Returns:
        The open lock file, which now names this process; the lock is held until it is closed
        (:func:`release_lock`), or this process exits. None where the file system has no
        ``flock`` (some network mounts): after a warning, the caller goes on unlocked.

    Raises:
        LockHeldError: if another process holds the lock, with what its file says.
    """
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (held open as long as the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise LockHeldError(path, holder) from None
        except OSError as error:  # a file system without flock (some network mounts): warn, go on
            handle.close()
            warnings.warn(
                f"{what}: cannot lock {path} ({error.strerror or error}); a second {second} "
                "would not be stopped",
                stacklevel=3,  # where the guard calling this was called
            )
            return None
        if _still_at(handle, path):
            break
        # The holder removed the file as it released the lock (release_lock(remove=True)), after
        # this process had opened it: this lock is on a file nobody else will look at.
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def _still_at(handle: IO[str], path: Path) -> bool:
    """Whether ``path`` still names the file ``handle`` has open."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def release_lock(handle: IO[str], remove: bool = False) -> None:
    """Release a lock that :func:`advisory_lock` took.

    Args:
        handle: the open lock file it returned.
        remove: delete the lock file too. It is deleted while the lock is still held: a process
            that opened it meanwhile then gets a lock on a file no longer at its path, sees
            that, and locks a new one (:func:`advisory_lock`), so two never both hold it.
    """
    if remove:
        with contextlib.suppress(FileNotFoundError):
            Path(handle.name).unlink()
    handle.close()
