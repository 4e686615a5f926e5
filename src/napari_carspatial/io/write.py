"""Safe saving of cell tables (``.h5ad`` / AnnData ``.zarr``), provenance, autosave and recovery.

One headless function, :func:`write_table`, is what the GUI's "Save as" and scripts share:

* **atomic**: the table is written to a temporary file (folder for ``.zarr``) in the *same*
  folder, flushed and ``fsync``-ed, then renamed over the target with :func:`os.replace`. A
  crash (or ``kill -9``) at any moment leaves either the previous file or the new one, never a
  half-written table. For ``.zarr`` (a folder, which cannot be replaced atomically) the old
  folder is first renamed to a hidden backup, the new one renamed into place, and the backup
  removed; if the process dies between the two renames, the next read of the path
  (``read_table`` / ``read_sample``), :func:`write_table`, :func:`restore_interrupted` or
  :func:`find_recovery` call puts the backup back.
* **never overwrites by accident**: an existing target raises :class:`SampleError` unless
  ``overwrite=True``; a source of the sample (``paths=Sample.paths``, else the table's own
  record of where it was read from and its provenance; symbolic links resolved) is refused
  whatever ``overwrite`` says, and so is a target that is a symbolic link.
* **disk full**: the error is clean, the old file intact, and the temporary file or folder is
  removed by the same process once zarr's background chunk writes have stopped.
* **clear errors**: an unwritable folder raises :class:`SampleError` naming it; nothing in
  memory is touched, so the user can save elsewhere.
* **provenance**: ``uns["carspatial"]["provenance"]`` records the image, mask and source table
  paths with their size and SHA-256 (streamed in 4 MiB chunks; cached by path, size and mtime).

Autosave writes the same way (``record=False``: the table's ``uns`` is not touched) to a
recovery file in the user cache folder only (``$CARSPATIAL_CACHE_DIR/recovery``, default
``$XDG_CACHE_HOME/napari-carspatial/recovery``), never beside the data. The file is keyed by
the resolved source path, or for data that were never saved by the sample name **and** a
fingerprint of the table (:func:`table_fingerprint`: number of cells + hash of the instance
ids), so a different table is never offered another one's work. :func:`find_recovery` tells
whether a recovery file newer than the source exists; :func:`recover` reads it;
:func:`decline_recovery` sets it aside (renamed ``*.declined``, never deleted);
:func:`discard_recovery` deletes it after a successful save.

The checksums and provenance live in :mod:`.provenance`, autosave and recovery in
:mod:`.recovery`; their names are re-exported here.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import SampleError
from ..model.conventions import UNS_KEY

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

log = logging.getLogger(__name__)

#: suffix of recovery files
RECOVERY_SUFFIX = ".carspatial-recovery.h5ad"
_TMP_TAG = ".carspatial-tmp-"
_BAK_TAG = ".carspatial-bak-"


# checksums and provenance: io/provenance.py
from .provenance import (  # noqa: E402, F401 - re-exported: they lived here
    CHUNK,
    cached_checksum,
    checksums_pending,
    clear_checksum_cache,
    forget_checksums,
    provenance,
    sha256_file,
    store_provenance,
)


# =========================================================================== atomic writing
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for f in files:
            _fsync_file(Path(root) / f)
        _fsync_dir(Path(root))


def _kind(path: Path) -> str:
    low = path.name.lower()
    if low.endswith(".h5ad"):
        return "h5ad"
    if low.endswith(".zarr"):
        return "zarr"
    raise SampleError(f"cannot save a table as {path.suffix or 'a file without suffix'!r}.", path=path,
                      hint="Use a .h5ad or .zarr file name.")


def _unwritable(folder: Path, err: OSError) -> SampleError:
    return SampleError(
        f"cannot write in this folder ({err.strerror or type(err).__name__}).", path=folder,
        hint="The folder may be read-only or full. Your work is still open: save it elsewhere (Save as).",
    )


#: targets and temporary paths of saves running in this process
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def _tag_pid(name: str, prefix: str) -> int:
    try:
        return int(name[len(prefix):].split("-")[0])
    except ValueError:
        return -1


def _busy(pid: int, target: Path) -> bool:
    """Whether the save of ``target`` by process ``pid`` may still be running."""
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return os.fspath(target) in _ACTIVE
    return pid_alive(pid)


def _remove_path(e: Path) -> None:
    if e.is_dir() and not e.is_symlink():
        shutil.rmtree(e, ignore_errors=True)
    else:
        e.unlink(missing_ok=True)


def restore_interrupted(path: str | os.PathLike, *, wait_s: float = 2.0) -> bool:
    """Put back a ``.zarr`` table whose replacement was interrupted between its two renames.

    A save replaces a ``.zarr`` folder by renaming the old folder to a hidden backup
    (``.<name>.carspatial-bak-<pid>-<token>``) and the new one into place. When the writer died
    in between, ``path`` is missing and the backup holds the previous table: it is renamed back.
    A writer that is still alive (another process, or a save running in this one) is given
    ``wait_s`` seconds to finish first. Leftover temporary files of dead writers (and of this
    process's finished saves) are removed.

    Called by :func:`write_table`, :func:`find_recovery` and every reader (``read_table``,
    ``read_sample``), so an interrupted save is never reported as "not found".

    Returns
    -------
    bool
        True when a backup was restored.
    """
    p = Path(path)
    folder = p.parent
    if not folder.is_dir():
        return False
    restored = False
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    bak_prefix, tmp_prefix = f".{p.name}{_BAK_TAG}", f".{p.name}{_TMP_TAG}"
    baks = sorted((e for e in entries if e.name.startswith(bak_prefix)), key=lambda e: e.stat().st_mtime)
    if baks and not p.exists():
        pid = _tag_pid(baks[-1].name, bak_prefix)
        deadline = time.monotonic() + wait_s
        while _busy(pid, p) and not p.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not p.exists() and baks[-1].exists():
            try:
                os.replace(baks[-1], p)
            except OSError as err:
                raise SampleError(f"an interrupted save left the previous table in {baks[-1].name}, and it cannot "
                                  f"be put back ({err.strerror or err}).", path=p,
                                  hint=f"Rename {baks[-1]} to {p.name} by hand.") from err
            _fsync_dir(folder)
            log.warning("%s: restored the previous table from an interrupted save", p)
            restored = True
            baks = baks[:-1]
    for e in baks:
        if p.exists() and not _busy(_tag_pid(e.name, bak_prefix), p):
            _remove_path(e)
    for e in entries:
        if e.name.startswith(tmp_prefix) and e.exists():
            pid = _tag_pid(e.name, tmp_prefix)
            if not _busy(pid, p):
                _remove_path(e)
    return restored


def _drain_zarr_io() -> None:
    """Wait until zarr's background writes have finished (zarr 3 writes chunks on its own event loop).

    When one chunk write fails (disk full), ``write_zarr`` raises at once while the other chunk
    writes go on in zarr's IO thread; removing the temporary folder before they finish lets them
    re-create it. This waits for every pending task on that loop (at most ``timeout`` seconds).
    """
    try:
        from zarr.core import sync as zsync
    except ImportError:  # pragma: no cover - zarr 2
        return
    loop = zsync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    import asyncio

    async def _wait_others():
        me = asyncio.current_task()
        while True:
            others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not others:
                return
            await asyncio.wait(others, timeout=1.0)

    fut = asyncio.run_coroutine_threadsafe(_wait_others(), loop)
    try:
        fut.result(timeout=60)
    except Exception as err:  # noqa: BLE001 - best effort; the clean-up below retries
        log.debug("waiting for zarr writes: %s", err)
        fut.cancel()


def _cleanup_tmp(tmp: Path, kind: str) -> None:
    """Remove a failed save's temporary file / folder after every background write stopped."""
    if kind == "zarr":
        _drain_zarr_io()
    for _ in range(50):
        if not tmp.exists():
            break
        _remove_path(tmp)
        if kind != "zarr":
            break
        time.sleep(0.01)
        if not tmp.exists():
            _drain_zarr_io()
            if not tmp.exists():
                break


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (the one helper for temp folders and review locks)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    except OSError:  # pragma: no cover - e.g. Windows without the process
        return False
    return True


def write_table(adata: AnnData, path: str | os.PathLike, *, overwrite: bool = False, paths: dict | None = None,
                record: bool = True, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a cell table atomically as ``.h5ad`` or AnnData ``.zarr``.

    Parameters
    ----------
    adata
        The table (curated columns, colours, audit trail, ROIs and gates live in it).
    path
        Target ``.h5ad`` file or ``.zarr`` folder.
    overwrite
        Replace an existing target. Without it an existing target raises: the GUI's "Save as"
        proposes a new name, so the source table is only replaced when the user says so.
    paths
        Where the sample's parts came from (``Sample.paths``): their paths, sizes and SHA-256
        are stored in ``uns["carspatial"]["provenance"]`` before writing, and none of them is
        ever overwritten. Without it the table's own record is used (:func:`own_sources`: the
        file :func:`~napari_carspatial.io.read_table` read it from and its stored provenance),
        so forgetting ``paths=`` never replaces a source.
    record
        Record the save in the table: ``uns["carspatial"]["saved"]`` (time, path) and the
        provenance. ``False`` (autosave / recovery files) writes ``adata`` as it is and leaves
        it untouched.
    progress
        Optional ``progress(done_bytes, total_bytes)`` while the sources' checksums are
        computed (only the first save of a file reads it; see :func:`sha256_file`).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    SampleError
        The target exists (without ``overwrite``), is one of the sample's sources in ``paths``
        (whatever ``overwrite`` says; symbolic links resolved), is a symbolic link (replacing
        it would silently turn the link into a file), the suffix is not ``.h5ad`` / ``.zarr``,
        or the folder cannot be written (read-only, missing, full: the temporary file or folder
        is removed in this process, after zarr's background writes stopped). ``adata`` is unchanged apart
        from the provenance entry (none with ``record=False``).
    """
    target = Path(path)
    kind = _kind(target)
    folder = target.parent if os.fspath(target.parent) else Path(".")
    if not folder.is_dir():
        raise SampleError("the folder does not exist.", path=folder, hint="Create it or choose another folder.")
    _refuse_sources(target, {**own_sources(adata), **(paths or {})} if record else paths)
    if target.is_symlink():
        raise SampleError(f"is a symbolic link (to {os.path.realpath(target)}); saving would replace the link with "
                          "a file, so it is not written.", path=target,
                          hint="Save to the link's target itself, or choose another name.")
    restore_interrupted(target)
    if target.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=target,
                          hint="Choose a new name, or pass overwrite=True to replace it.")
    if record:
        if paths:
            store_provenance(adata, paths, progress=progress)
        else:  # the table's own record: its earlier provenance, and the file it was read from as its source
            own = {k.split(" ")[0]: v for k, v in own_sources(adata).items() if k.endswith("(provenance)")}
            meta = (adata.uns.get(UNS_KEY) or {}) if hasattr(adata.uns, "get") else {}
            if isinstance(meta.get(READ_FROM_KEY), str):
                own["table"] = meta[READ_FROM_KEY]
            if own:
                store_provenance(adata, own, progress=progress)
        meta = dict(adata.uns.get(UNS_KEY, {}) or {})
        meta["saved"] = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "path": os.fspath(target)}
        adata.uns[UNS_KEY] = meta

    tag = f"{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{target.name}{tag}{'.h5ad' if kind == 'h5ad' else '.zarr'}"
    t0 = time.perf_counter()
    key = os.fspath(target)
    with _ACTIVE_LOCK:
        _ACTIVE.add(key)
    try:
        if kind == "h5ad":
            try:
                with open(tmp, "wb"):
                    pass
            except OSError as err:
                raise _unwritable(folder, err) from err
            adata.write_h5ad(tmp)
            _fsync_file(tmp)
            os.replace(tmp, target)
        else:
            try:
                tmp.mkdir()
            except OSError as err:
                raise _unwritable(folder, err) from err
            shutil.rmtree(tmp)
            adata.write_zarr(tmp)
            _fsync_tree(tmp)
            if target.exists():
                bak = folder / f".{target.name}{_BAK_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.replace(target, bak)
                os.replace(tmp, target)
                _fsync_dir(folder)
                shutil.rmtree(bak, ignore_errors=True)
            else:
                os.replace(tmp, target)
        _fsync_dir(folder)
    except SampleError:
        raise
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise _unwritable(folder, err) from err
        raise SampleError(f"could not be written ({type(err).__name__}: {err}).", path=target,
                          hint="Your work is still open: try again or save elsewhere.") from err
    finally:
        try:
            if tmp.exists() or kind == "zarr":
                _cleanup_tmp(tmp, kind)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(key)
    log.info("table written to %s in %.2f s", target, time.perf_counter() - t0)
    return target


#: ``uns["carspatial"]`` key where :func:`~napari_carspatial.io.read_table` records the file it read
READ_FROM_KEY = "read_from"


def own_sources(adata) -> dict:
    """The sources a table records itself: ``{"table (read from)": path}`` (set by ``read_table``)
    and every path of its stored provenance (``uns["carspatial"]["provenance"]``)."""
    meta = (getattr(adata, "uns", {}) or {}).get(UNS_KEY) or {}
    out = {}
    if hasattr(meta, "get"):
        if isinstance(meta.get(READ_FROM_KEY), str):
            out["table (read from)"] = meta[READ_FROM_KEY]
        prov = meta.get("provenance") or {}
        if hasattr(prov, "items"):
            for part, entry in prov.items():
                if hasattr(entry, "get") and isinstance(entry.get("path"), str):
                    out[f"{part} (provenance)"] = entry["path"]
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _refuse_sources(target: Path, paths: dict | None) -> None:
    """Raise when ``target`` is one of the sample's source files (or lies inside a source folder store).

    Symbolic links are resolved (a link to the source is the source); hard links are caught
    with :func:`os.path.samefile`. ``paths["folder"]`` (a project folder such as steinbock's)
    may receive new files; writing inside an image, mask or table *store* (a folder) may not.
    """
    for part, src in (paths or {}).items():
        if not src:
            continue
        sp = Path(src)
        if _same_file(target, sp):
            raise SampleError(f"is the sample's source {part} ({sp}); a source is never overwritten.", path=target,
                              hint="Choose a new name (Save as proposes one).")
        if part != "folder" and sp.is_dir():
            real_t, real_s = os.path.realpath(target), os.path.realpath(sp)
            if real_t.startswith(real_s.rstrip(os.sep) + os.sep):
                raise SampleError(f"lies inside the sample's source {part} store ({sp}); a source is never "
                                  "modified.", path=target, hint="Save next to it, not inside it.")


def proposed_name(source: str | os.PathLike, suffix: str = ".h5ad") -> Path:
    """A new file name next to ``source`` for "Save as": ``<stem>_curated.h5ad`` (then ``_2``, ...).

    Parameters
    ----------
    source
        The file the table came from.
    suffix
        ``.h5ad`` or ``.zarr``.

    Returns
    -------
    pathlib.Path
        A path that does not exist yet.
    """
    src = Path(source)
    stem = src.name
    for suf in (".h5ad", ".zarr", ".csv", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    base = stem if stem.endswith("_curated") else f"{stem}_curated"
    cand = src.with_name(f"{base}{suffix}")
    k = 2
    while cand.exists():
        cand = src.with_name(f"{base}_{k}{suffix}")
        k += 1
    return cand


# autosave and recovery: io/recovery.py (it imports write_table from here, so it comes last)
from .recovery import (  # noqa: E402, F401 - re-exported: they lived here
    DECLINED_SUFFIX,
    AutosavePolicy,
    autosave,
    cache_dir,
    decline_recovery,
    discard_recovery,
    find_recovery,
    recover,
    recovery_path,
    recovery_paths,
    table_fingerprint,
)
