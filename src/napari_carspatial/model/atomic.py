"""Atomic file writes: a temporary file in the target's folder, fsync, then rename over the target.

A reader (or a crash) never sees a half-written file: the target is either the old file or the
complete new one. The temporary name keeps the target's suffix at its end
(``.metrics.csv.tmp-<pid>-<token>.csv``) so writers that choose a format by suffix (matplotlib's
``savefig``, pandas' compression inference, tifffile) write the same format as to the target.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def _fsync_file(path: Path) -> None:
    """Flush a written file to disk (no-op for a folder, e.g. a store written by the writer)."""
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the platform allows it (POSIX; not Windows)."""
    if os.name == "nt":  # pragma: no cover - folders cannot be opened for fsync on Windows
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - best effort clean-up; the original error matters
        pass


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], *, suffix: str | None = None) -> Path:
    """Write ``path`` atomically: ``writer(tmp)`` writes a temporary file, which replaces ``path``.

    Parameters
    ----------
    path
        The target file. Its folder must exist.
    writer
        Called with the temporary path (same folder as ``path``); writes the whole content there.
    suffix
        Ending of the temporary name (default: ``path``'s suffix, e.g. ``".png"``), for writers
        that pick the format by suffix.

    Returns
    -------
    pathlib.Path
        ``path``.

    The temporary file is fsynced before the rename and the folder after it (where possible). On
    any error (including in ``writer``) the temporary file is removed and the error re-raised;
    the target is left as it was.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        writer(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))
