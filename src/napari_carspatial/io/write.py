"""Safe saving of cell tables (``.h5ad`` / AnnData ``.zarr``), provenance, autosave and recovery.

One headless function, :func:`write_table`, is what the GUI's "Save as" and scripts share:

* **atomic**: the table is written to a temporary file (folder for ``.zarr``) in the *same*
  folder, flushed and ``fsync``-ed, then renamed over the target with :func:`os.replace`. A
  crash (or ``kill -9``) at any moment leaves either the previous file or the new one, never a
  half-written table. For ``.zarr`` (a folder, which cannot be replaced atomically) the old
  folder is first renamed to a hidden backup, the new one renamed into place, and the backup
  removed; if the process dies between the two renames, the next :func:`write_table`,
  :func:`restore_interrupted` or :func:`find_recovery` call puts the backup back.
* **never overwrites by accident**: an existing target raises :class:`SampleError` unless
  ``overwrite=True``.
* **clear errors**: an unwritable folder raises :class:`SampleError` naming it; nothing in
  memory is touched, so the user can save elsewhere.
* **provenance**: ``uns["carspatial"]["provenance"]`` records the image, mask and source table
  paths with their size and SHA-256 (streamed in 4 MiB chunks; cached by path, size and mtime).

Autosave writes the same way to a recovery file beside the source table
(``<table>.carspatial-recovery.h5ad``) or, when that folder is read-only, to the user cache
folder (``$XDG_CACHE_HOME/napari-carspatial/recovery``). :func:`find_recovery` tells whether a
recovery file newer than the source exists; :func:`recover` reads it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
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
_hash_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike, *, chunk: int = CHUNK) -> str:
    """SHA-256 hex digest of a file, or of a folder (zarr: every file's relative path and bytes, sorted).

    Streamed in ``chunk``-byte reads; cached by (path, size, mtime), so re-saving is free.
    """
    p = Path(path)
    st = p.stat()
    key = (os.fspath(p.resolve()), int(st.st_size), int(st.st_mtime_ns))
    if key in _hash_cache:
        return _hash_cache[key]
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(os.fspath(f.relative_to(p)).encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    break
                h.update(b)
    digest = h.hexdigest()
    _hash_cache[key] = digest
    return digest


def provenance(paths: dict) -> dict:
    """``{part: {"path", "size", "sha256"}}`` for every existing path in ``paths`` (Sample.paths)."""
    out = {}
    for part, path in (paths or {}).items():
        if not path:
            continue
        p = Path(path)
        entry = {"path": os.fspath(p.resolve()) if p.exists() else os.fspath(p)}
        if p.exists():
            try:
                entry["size"] = int(p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file()))
                entry["sha256"] = sha256_file(p)
            except OSError as err:
                log.warning("cannot checksum %s: %s", p, err)
                entry["sha256"] = ""
        else:
            entry["sha256"] = ""
        out[str(part)] = entry
    return out


def store_provenance(adata, paths: dict) -> dict:
    """Store :func:`provenance` of ``paths`` in ``adata.uns["carspatial"]["provenance"]`` and return it."""
    prov = provenance(paths)
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


def restore_interrupted(path: str | os.PathLike) -> bool:
    """Put back a ``.zarr`` table whose replacement was interrupted between two renames.

    Returns True when a backup was restored. Leftover temporary files of killed writers are
    removed.
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
    baks = sorted((e for e in entries if e.name.startswith(f".{p.name}{_BAK_TAG}")), key=lambda e: e.stat().st_mtime)
    if baks and not p.exists():
        os.replace(baks[-1], p)
        log.warning("%s: restored the previous table from an interrupted save", p)
        restored = True
        baks = baks[:-1]
    for e in baks:
        shutil.rmtree(e, ignore_errors=True)
    for e in entries:
        if e.name.startswith(f".{p.name}{_TMP_TAG}") and e.exists():
            try:
                pid = int(e.name[len(f".{p.name}{_TMP_TAG}"):].split("-")[0])
            except ValueError:
                pid = -1
            if pid != os.getpid() and not _alive(pid):
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() else e.unlink(missing_ok=True)
    return restored


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


def write_table(adata, path: str | os.PathLike, *, overwrite: bool = False, paths: dict | None = None) -> Path:
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
        are stored in ``uns["carspatial"]["provenance"]`` before writing.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    SampleError
        The target exists (without ``overwrite``), the suffix is not ``.h5ad`` / ``.zarr``, or
        the folder cannot be written (read-only, missing, full). ``adata`` is unchanged apart
        from the provenance entry.
    """
    target = Path(path)
    kind = _kind(target)
    folder = target.parent if os.fspath(target.parent) else Path(".")
    if not folder.is_dir():
        raise SampleError("the folder does not exist.", path=folder, hint="Create it or choose another folder.")
    restore_interrupted(target)
    if target.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=target,
                          hint="Choose a new name, or pass overwrite=True to replace it.")
    if paths:
        store_provenance(adata, paths)
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["saved"] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "path": os.fspath(target)}
    adata.uns[UNS_KEY] = meta

    tag = f"{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{target.name}{tag}{'.h5ad' if kind == 'h5ad' else '.zarr'}"
    t0 = time.perf_counter()
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
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    log.info("table written to %s in %.2f s", target, time.perf_counter() - t0)
    return target


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
def cache_dir() -> Path:
    """The user cache folder for recovery files (``$XDG_CACHE_HOME/napari-carspatial/recovery``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-carspatial" / "recovery"


def _cache_recovery_path(source: str | os.PathLike | None, name: str | None) -> Path:
    key = os.fspath(Path(source).resolve()) if source else f"unsaved:{name}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    stem = Path(source).name if source else (name or "table")
    return cache_dir() / f"{stem}-{digest}{RECOVERY_SUFFIX}"


def recovery_paths(source: str | os.PathLike | None, *, name: str | None = None) -> list[Path]:
    """Where the recovery file of ``source`` may be: beside it, then in the cache folder."""
    out = []
    if source:
        s = Path(source)
        out.append(s.with_name(s.name + RECOVERY_SUFFIX))
    out.append(_cache_recovery_path(source, name))
    return out


def autosave(adata, source: str | os.PathLike | None, *, name: str | None = None) -> Path:
    """Write ``adata`` to its recovery file (beside ``source``, else the cache folder); atomic.

    Parameters
    ----------
    adata
        The table being curated.
    source
        The table (or image) the session started from; ``None`` for unsaved data (then
        ``name`` names the recovery file in the cache folder).
    name
        Sample name, used when ``source`` is ``None``.

    Returns
    -------
    pathlib.Path
        Where the recovery file was written.
    """
    last = None
    for cand in recovery_paths(source, name=name):
        try:
            cand.parent.mkdir(parents=True, exist_ok=True)
            return write_table(adata, cand, overwrite=True)
        except (SampleError, OSError) as err:
            last = err
            log.info("autosave: %s not writable (%s); trying the next location", cand, err)
    raise SampleError(f"autosave failed ({last}).", path=source)


def find_recovery(source: str | os.PathLike | None, *, name: str | None = None) -> Path | None:
    """The newest recovery file of ``source`` that is newer than ``source`` itself, or None."""
    if source:
        restore_interrupted(source)
    src_m = Path(source).stat().st_mtime if source and Path(source).exists() else -1.0
    found = [p for p in recovery_paths(source, name=name) if p.is_file()]
    found = [p for p in found if p.stat().st_mtime > src_m]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def recover(source_or_recovery: str | os.PathLike, *, name: str | None = None):
    """Read the recovery table of ``source`` (or a recovery file given directly).

    Raises
    ------
    SampleError
        When there is no recovery file.
    """
    import anndata as ad

    p = Path(source_or_recovery)
    rec = p if p.name.endswith(RECOVERY_SUFFIX) else find_recovery(p, name=name)
    if rec is None or not rec.is_file():
        raise SampleError("no recovery file found.", path=p)
    adata = ad.read_h5ad(rec)
    log.info("recovered the table from %s", rec)
    return adata


def discard_recovery(source: str | os.PathLike | None, *, name: str | None = None) -> None:
    """Delete the recovery files of ``source`` (after a successful save or a declined recovery)."""
    for p in recovery_paths(source, name=name):
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
