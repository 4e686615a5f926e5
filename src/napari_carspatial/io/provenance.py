"""Checksums and provenance of a sample's files: :func:`sha256_file` (streamed, cached by file
identity in this process and in the user cache, with progress), :func:`provenance` / :func:`store_provenance` (what
``uns["carspatial"]["provenance"]`` records). Re-exported by :mod:`.write`.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.conventions import UNS_KEY

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

log = logging.getLogger(__name__)

#: bytes read per step when checksumming
CHUNK = 4 * 2**20


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


def clear_checksum_cache() -> None:
    """Forget every checksum known to this process (as a new process would; the user cache stays)."""
    _hash_cache.clear()


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


def store_provenance(adata: AnnData, paths: dict, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Store :func:`provenance` of ``paths`` in ``adata.uns["carspatial"]["provenance"]`` and return it.

    Parameters
    ----------
    adata
        The cell table (modified in place).
    paths
        ``{part: path}`` of the sample's sources (``Sample.paths``).
    progress
        Optional ``progress(done_bytes, total_bytes)`` while the checksums are computed.

    Returns
    -------
    dict
        The provenance stored: per part its path, size and SHA-256.
    """
    prov = provenance(paths, progress=progress)
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["provenance"] = prov
    adata.uns[UNS_KEY] = meta
    return prov
