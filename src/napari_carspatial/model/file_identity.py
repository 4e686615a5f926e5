"""Which file (or folder) is this, exactly? An identity cheap to compute, for caches that must
never be stale: a SHA-256 for provenance, the ids a mask holds.

:func:`file_identity` is ``[path, kind, size, files, newest mtime]``:

* a **file**: its resolved path, its size and its modification time (ns);
* a **folder** (a zarr store, an OME-Zarr element): the total size and number of the files in
  it and the newest modification time of *anything inside* (every file and sub-folder), not
  the folder's own mtime: a zarr chunk rewritten in place changes neither the folder's mtime
  nor its size, but it changes the chunk file's mtime;
* ``"store.zarr::labels/cells"`` (how SpatialData elements are named in ``Sample.paths``):
  the element's folder inside the store.

:func:`cached_array` / :func:`store_array` keep small arrays in the user cache
(``$CARSPATIAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-carspatial``, default
``~/.cache/napari-carspatial``) under a key derived from an identity; a changed file gets a new
key, so nothing is ever read for a file that changed. A cache that cannot be read or written is
ignored (logged), never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: bump when what a cached value means changes
CACHE_VERSION = 1
#: entries kept per kind (the oldest are removed beyond this)
MAX_ENTRIES = 1000


def user_cache_dir() -> Path:
    """``$CARSPATIAL_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/napari-carspatial`` (``~/.cache/...``)."""
    env = os.environ.get("CARSPATIAL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-carspatial"


def resolve_source(path: str | os.PathLike) -> Path:
    """The file or folder a ``Sample.paths`` entry names (``"store::element/path"`` -> its folder)."""
    s = os.fspath(path)
    if "::" in s:
        root, _, inner = s.partition("::")
        return Path(root) / inner
    return Path(s)


def _walk(folder: Path) -> tuple[int, int, int]:
    """(total bytes, number of files, newest mtime_ns of anything inside ``folder``)."""
    size = n = 0
    newest = 0
    stack = [os.fspath(folder)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    newest = max(newest, st.st_mtime_ns)
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    else:
                        size += st.st_size
                        n += 1
        except OSError:
            continue
    return size, n, newest


def file_identity(path: str | os.PathLike) -> list | None:
    """``[resolved path, "file" | "dir", size, files, newest mtime_ns]``, or None when ``path``
    does not exist (see the module docstring)."""
    p = resolve_source(path)
    try:
        st = p.stat()
    except OSError:
        return None
    real = os.fspath(p.resolve())
    if p.is_dir():
        size, n, newest = _walk(p)
        return [real, "dir", int(size), int(n), int(newest)]
    return [real, "file", int(st.st_size), 1, int(st.st_mtime_ns)]


def identity_key(kind: str, identity, extra=None) -> str:
    """A file-name-safe key for ``kind`` (e.g. ``"mask-ids"``) of a file ``identity``."""
    blob = json.dumps([CACHE_VERSION, kind, identity, extra], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def _cache_file(kind: str, key: str, suffix: str) -> Path:
    return user_cache_dir() / kind / f"{key}{suffix}"


def _prune(folder: Path, keep: int = MAX_ENTRIES) -> None:
    """Remove the oldest entries of a cache folder beyond ``keep`` (a bounded cache)."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
        if len(entries) <= keep:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for e in entries[: len(entries) - keep]:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    except OSError:
        return


def cached_array(kind: str, key: str) -> np.ndarray | None:
    """The array stored under ``key`` (None when there is none or it cannot be read)."""
    f = _cache_file(kind, key, ".npy")
    if not f.is_file():
        return None
    try:
        return np.load(f, allow_pickle=False)
    except (OSError, ValueError) as err:
        log.debug("cache %s unreadable (%s); ignored", f, err)
        return None


def store_array(kind: str, key: str, arr: np.ndarray) -> Path | None:
    """Keep ``arr`` under ``key`` (atomically; None when the cache folder cannot be written)."""
    from .atomic import atomic_write

    f = _cache_file(kind, key, ".npy")
    try:
        f.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)

        out = atomic_write(f, write, suffix=".npy")
        _prune(f.parent)
        return out
    except OSError as err:
        log.debug("cache %s not written (%s)", f, err)
        return None


def cached_text(kind: str, key: str) -> str | None:
    """The short text stored under ``key`` (a checksum), None when there is none."""
    f = _cache_file(kind, key, ".txt")
    try:
        return f.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def store_text(kind: str, key: str, text: str) -> Path | None:
    """Keep a short text under ``key`` (atomically; None when the cache cannot be written)."""
    from .atomic import atomic_write

    f = _cache_file(kind, key, ".txt")
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        out = atomic_write(f, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), suffix=".txt")
        _prune(f.parent)
        return out
    except OSError as err:
        log.debug("cache %s not written (%s)", f, err)
        return None
