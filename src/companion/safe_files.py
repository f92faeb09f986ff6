"""Files that no reader ever sees half-written, and locks that keep processes out of each other's way.

* :func:`atomic_write` writes to a uniquely named temporary file next to the target and renames it
  over the target (``os.replace``, atomic on POSIX file systems): a reader sees the old file or the
  new one, never a mixture, whatever is interrupted (Ctrl-C, a full disk, a second writer).
* :func:`temporary_path` gives such a unique temporary name and removes the file if it is still
  there when the block ends (on success the caller has renamed it into place).
* :func:`locked` holds an exclusive lock on a folder for the duration of a block (waiting for it);
  :func:`claim` takes the lock without waiting and keeps it until the process exits.

The locks are advisory ``flock`` locks on the folder itself (no lock file is left behind). They
exist on Linux and macOS; where ``fcntl`` is missing (Windows) the functions lock nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderBusyError", "atomic_write", "temporary_path", "locked", "claim"]

_UMASK = os.umask(0)
os.umask(_UMASK)
#: Folders this process has claimed, with the descriptor that holds the lock.
_CLAIMED: dict[Path, int] = {}


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def temporary_path(target: Path) -> Iterator[Path]:
    """A new, uniquely named file next to ``target`` (same folder, so a rename is atomic); removed
    at the end of the block unless it was renamed away."""
    target = Path(target)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and an atomic rename."""
    path = Path(path)
    with temporary_path(path) as partial:
        if isinstance(data, str):
            partial.write_text(data)
        else:
            partial.write_bytes(data)
        os.replace(partial, path)


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` during the block, waiting for other holders first."""
    if fcntl is None or Path(folder).resolve() in _CLAIMED:
        yield
        return
    handle = _open_folder(folder)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def claim(folder: Path, what: str) -> None:
    """Lock ``folder`` for the rest of this process, or raise :class:`FolderBusyError` at once if
    another process holds it (``what`` names the folder's use in the message). Claiming a folder
    twice in one process is allowed."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _CLAIMED:
        return
    handle = _open_folder(folder)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise FolderBusyError(
            f"another process is writing into {what} {folder}; wait for it to finish (then rerun to "
            f"resume) or choose another output folder"
        ) from None
    _CLAIMED[folder] = handle
