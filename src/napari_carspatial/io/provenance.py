"""Checksums and provenance of a sample's files: :func:`sha256_file` (streamed, cached by the
files' paths, sizes and mtimes), :func:`provenance` / :func:`store_provenance` (what
``uns["carspatial"]["provenance"]`` records). Re-exported by :mod:`.write`.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..model.conventions import UNS_KEY

log = logging.getLogger(__name__)

#: bytes read per step when checksumming
CHUNK = 4 * 2**20


_hash_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike, *, chunk: int = CHUNK) -> str:
    """SHA-256 hex digest of a file, or of a folder (zarr: every file's relative path and bytes, sorted).

    Streamed in ``chunk``-byte reads; cached by (path, size, mtime) of the file, or of every file
    in the folder (a zarr store rewritten inside gets a new hash), so re-saving is free.
    """
    p = Path(path)
    st = p.stat()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    if p.is_file():
        key = (os.fspath(p.resolve()), int(st.st_size), int(st.st_mtime_ns))
    else:  # a folder's own mtime does not change when a file inside is rewritten: key by its files
        stats = [(os.fspath(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        key = (os.fspath(p.resolve()), len(stats), hash(tuple(stats)))
    if key in _hash_cache:
        return _hash_cache[key]
    h = hashlib.sha256()
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


def forget_checksums(paths) -> None:
    """Drop the cached checksums of ``paths`` (the GUI calls it when their sample is closed)."""
    gone = {os.fspath(Path(p).resolve()) for p in paths if p}
    for key in [k for k in _hash_cache if k[0] in gone]:
        del _hash_cache[key]


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
