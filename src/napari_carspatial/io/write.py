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
  ``overwrite=True``; a source of the sample (``paths=Sample.paths``, symbolic links resolved)
  is refused whatever ``overwrite`` says, and so is a target that is a symbolic link.
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
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..model import SampleError
from ..model.conventions import UNS_KEY

log = logging.getLogger(__name__)

#: suffix of recovery files
RECOVERY_SUFFIX = ".carspatial-recovery.h5ad"
#: bytes read per step when checksumming
CHUNK = 4 * 2**20
_TMP_TAG = ".carspatial-tmp-"
_BAK_TAG = ".carspatial-bak-"


# =========================================================================== checksums / provenance
#: in-process checksums by file identity (:func:`~napari_carspatial.model.file_identity.file_identity`)
_hash_cache: dict[tuple, str] = {}
_HASH_KIND = "checksums"


def _identity_key(p: Path):
    from ..model.file_identity import file_identity

    ident = file_identity(p)
    return None if ident is None else tuple(ident)


def cached_checksum(path: str | os.PathLike) -> str | None:
    """The SHA-256 of ``path`` if it is known for the file as it is now (this process or the user
    cache), else None. Cheap: a ``stat`` (a walk for folders), never a read of the content."""
    from ..model.file_identity import cached_text, identity_key

    key = _identity_key(Path(path))
    if key is None:
        return None
    if key in _hash_cache:
        return _hash_cache[key]
    hit = cached_text(_HASH_KIND, identity_key(_HASH_KIND, list(key)))
    if hit:
        _hash_cache[key] = hit
    return hit


def sha256_file(path: str | os.PathLike, *, chunk: int = CHUNK, progress=None) -> str:
    """SHA-256 hex digest of a file, or of a folder (zarr: every file's relative path and bytes, sorted).

    Streamed in ``chunk``-byte reads. Cached by file identity (path, size, modification time;
    for a folder its files' total size and count and the newest modification time of anything
    inside it, so a chunk rewritten in place is noticed) in this process and in the user cache
    (``$CARSPATIAL_CACHE_DIR/checksums``): a 1 GB image is read once, not at every save.

    Parameters
    ----------
    progress
        Optional ``progress(done_bytes, total_bytes)``, called after each chunk (from the
        calling thread; a GUI runs this in a worker).
    """
    from ..model.file_identity import identity_key, store_text

    p = Path(path)
    key = _identity_key(p)
    if key is None:
        raise FileNotFoundError(os.fspath(p))
    hit = cached_checksum(p)
    if hit:
        return hit
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    total = int(key[2])
    done = 0
    for f in files:
        if p.is_dir():
            h.update(os.fspath(f.relative_to(p)).encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    break
                h.update(b)
                done += len(b)
                if progress is not None:
                    progress(done, total)
    digest = h.hexdigest()
    if _identity_key(p) == key:   # unchanged while it was read: the digest belongs to this identity
        _hash_cache[key] = digest
        store_text(_HASH_KIND, identity_key(_HASH_KIND, list(key)), digest)
    return digest


def forget_checksums(paths) -> None:
    """Drop this process's cached checksums of ``paths`` (the GUI calls it when their sample is
    closed); the user-cache entries stay (they are keyed by file identity, never stale)."""
    gone = {os.fspath(Path(p).resolve()) for p in paths if p}
    for key in [k for k in _hash_cache if k[0] in gone]:
        del _hash_cache[key]


def _provenance_paths(paths: dict) -> list[tuple[str, Path]]:
    from ..model.file_identity import resolve_source

    return [(str(part), resolve_source(path)) for part, path in (paths or {}).items() if path]


def checksums_pending(paths: dict) -> int:
    """Bytes :func:`provenance` would have to read for ``paths`` (0 when every checksum is cached)."""
    total = 0
    for _part, p in _provenance_paths(paths):
        if p.exists() and cached_checksum(p) is None:
            key = _identity_key(p)
            total += int(key[2]) if key else 0
    return total


def provenance(paths: dict, *, progress=None) -> dict:
    """``{part: {"path", "size", "sha256"}}`` for every existing path in ``paths`` (Sample.paths).

    ``progress(done_bytes, total_bytes)`` (optional) follows the checksums still to compute,
    over all parts.
    """
    out = {}
    total = checksums_pending(paths) if progress is not None else 0
    base = [0]

    def part_progress(done, _n):
        progress(base[0] + done, total)

    for part, p in _provenance_paths(paths):
        entry = {"path": os.fspath(p.resolve()) if p.exists() else os.fspath(p)}
        if p.exists():
            try:
                key = _identity_key(p)
                entry["size"] = int(key[2]) if key else 0
                cached = cached_checksum(p)
                entry["sha256"] = cached or sha256_file(p, progress=part_progress if progress is not None else None)
                if not cached:
                    base[0] += entry["size"]
            except OSError as err:
                log.warning("cannot checksum %s: %s", p, err)
                entry["sha256"] = ""
        else:
            entry["sha256"] = ""
        out[part] = entry
    return out


def store_provenance(adata, paths: dict, *, progress=None) -> dict:
    """Store :func:`provenance` of ``paths`` in ``adata.uns["carspatial"]["provenance"]`` and return it."""
    prov = provenance(paths, progress=progress)
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["provenance"] = prov
    adata.uns[UNS_KEY] = meta
    return prov


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
    return _alive(pid)


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


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def write_table(adata, path: str | os.PathLike, *, overwrite: bool = False, paths: dict | None = None,
                record: bool = True, progress=None) -> Path:
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
        ever overwritten.
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
    _refuse_sources(target, paths)
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
    """A new file name next to ``source`` for "Save as": ``<stem>_curated.h5ad`` (then ``_2``, ...)."""
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


# =========================================================================== autosave / recovery
#: suffix given to a recovery file the user chose not to recover (kept, never deleted)
DECLINED_SUFFIX = ".declined"


def cache_dir() -> Path:
    """The folder of recovery files: ``$CARSPATIAL_CACHE_DIR/recovery`` when set, else
    ``$XDG_CACHE_HOME/napari-carspatial/recovery`` (default ``~/.cache/...``)."""
    env = os.environ.get("CARSPATIAL_CACHE_DIR")
    if env:
        return Path(env) / "recovery"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-carspatial" / "recovery"


def table_fingerprint(adata) -> str:
    """``"<n_obs>-<hash>"``: number of cells and a SHA-1 of the instance ids (mask labels; the
    obs names when the table has no instance-id column) and of the centroids
    (``obsm["spatial"]``) when present. Curation changes neither."""
    import numpy as np

    from ..model.conventions import SPATIAL_KEY, instance_ids

    h = hashlib.sha1()
    try:
        h.update(np.ascontiguousarray(instance_ids(adata), dtype="<i8").tobytes())
    except (KeyError, ValueError, TypeError):
        h.update("\0".join(map(str, adata.obs_names)).encode("utf-8"))
    if SPATIAL_KEY in adata.obsm:
        h.update(np.ascontiguousarray(np.asarray(adata.obsm[SPATIAL_KEY])[:, :2], dtype="<f8").tobytes())
    return f"{adata.n_obs}-{h.hexdigest()[:12]}"


def recovery_path(source: str | os.PathLike | None, *, name: str | None = None,
                  fingerprint: str | None = None) -> Path:
    """The recovery file of a sample, in :func:`cache_dir`.

    Keyed by the resolved ``source`` path; for data never saved (``source=None``) by ``name``
    and the table ``fingerprint`` (:func:`table_fingerprint`).
    """
    if source:
        key = os.fspath(Path(source).resolve())
        stem = Path(source).name
    else:
        key = f"unsaved:{name}:{fingerprint or ''}"
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in (name or "table"))
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return cache_dir() / f"{stem}-{digest}{RECOVERY_SUFFIX}"


def recovery_paths(source: str | os.PathLike | None, *, name: str | None = None,
                   fingerprint: str | None = None) -> list[Path]:
    """Where the recovery file of ``source`` may be (a list, for compatibility: the cache folder only)."""
    return [recovery_path(source, name=name, fingerprint=fingerprint)]


def autosave(adata, source: str | os.PathLike | None, *, name: str | None = None,
             fingerprint: str | None = None) -> Path:
    """Write ``adata`` to its recovery file in the cache folder; atomic; ``adata`` is not modified.

    Safe to call from a worker thread on a snapshot (``adata.copy()`` taken by the caller).

    Parameters
    ----------
    adata
        The table being curated (or a snapshot of it).
    source
        The table (or image) the session started from; ``None`` for unsaved data.
    name, fingerprint
        Sample name and :func:`table_fingerprint` (computed when omitted), used when ``source``
        is ``None``.

    Returns
    -------
    pathlib.Path
        Where the recovery file was written.
    """
    if not source and fingerprint is None:
        fingerprint = table_fingerprint(adata)
    target = recovery_path(source, name=name, fingerprint=fingerprint)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_table(adata, target, overwrite=True, record=False)
    except OSError as err:
        raise SampleError(f"autosave failed ({err}).", path=target,
                          hint="Save your work with Save as.") from err


def find_recovery(source: str | os.PathLike | None, *, name: str | None = None,
                  fingerprint: str | None = None) -> Path | None:
    """The recovery file of ``source`` when it is newer than ``source`` itself, or None."""
    if source:
        restore_interrupted(source)
    src_m = Path(source).stat().st_mtime if source and Path(source).exists() else -1.0
    found = [p for p in recovery_paths(source, name=name, fingerprint=fingerprint) if p.is_file()]
    found = [p for p in found if p.stat().st_mtime > src_m]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def recover(source_or_recovery: str | os.PathLike, *, name: str | None = None, fingerprint: str | None = None):
    """Read the recovery table of ``source`` (or a recovery file given directly).

    Raises
    ------
    SampleError
        When there is no recovery file.
    """
    import anndata as ad

    p = Path(source_or_recovery)
    rec = p if p.name.endswith(RECOVERY_SUFFIX) else find_recovery(p, name=name, fingerprint=fingerprint)
    if rec is None or not rec.is_file():
        raise SampleError("no recovery file found.", path=p)
    try:
        adata = ad.read_h5ad(rec)
    except (OSError, ValueError, KeyError) as err:
        raise SampleError(f"the recovery file cannot be read ({type(err).__name__}: {err}).", path=rec,
                          hint="It is kept; your open table is unchanged.") from err
    log.info("recovered the table from %s", rec)
    return adata


def decline_recovery(recovery: str | os.PathLike) -> Path | None:
    """Set a recovery file aside without deleting it: renamed ``<file>.declined`` (``.declined-2``,
    ... when that exists). It is no longer offered; the user can still open it. Returns the new path."""
    p = Path(recovery)
    if not p.is_file():
        return None
    dst = p.with_name(p.name + DECLINED_SUFFIX)
    k = 2
    while dst.exists():
        dst = p.with_name(f"{p.name}{DECLINED_SUFFIX}-{k}")
        k += 1
    os.replace(p, dst)
    log.info("recovery file set aside as %s", dst)
    return dst


def discard_recovery(source: str | os.PathLike | None, *, name: str | None = None,
                     fingerprint: str | None = None) -> None:
    """Delete the recovery file of ``source`` (only after the work was saved successfully)."""
    for p in recovery_paths(source, name=name, fingerprint=fingerprint):
        try:
            p.unlink(missing_ok=True)
        except OSError as err:  # pragma: no cover
            log.warning("cannot remove recovery file %s: %s", p, err)


class AutosavePolicy:
    """Decide when to autosave: after ``every_edits`` edits or ``every_seconds`` since the last save.

    Parameters
    ----------
    every_edits
        Save after this many edits (default 5).
    every_seconds
        Or when this many seconds passed since the last save and there are unsaved edits.
    """

    def __init__(self, every_edits: int = 5, every_seconds: float = 120.0, clock=time.monotonic):
        self.every_edits = int(every_edits)
        self.every_seconds = float(every_seconds)
        self.clock = clock
        self.pending = 0
        self.last = clock()

    def note_edit(self) -> bool:
        """Count one edit; True when an autosave is due."""
        self.pending += 1
        return self.due()

    def due(self) -> bool:
        if self.pending <= 0:
            return False
        return self.pending >= self.every_edits or (self.clock() - self.last) >= self.every_seconds

    def saved(self) -> None:
        self.pending = 0
        self.last = self.clock()
