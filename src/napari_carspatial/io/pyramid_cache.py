"""Multiscale cache for images stored without a pyramid (flat OME-TIFF / TIFF exports).

A flat slide has only level 0, so any overview touches every level-0 tile (a 9 GB file: ~8 s
and GBs of memory for the first frame, every time). The first time such a slide is opened,
:func:`build_pyramid_cache` (headless; a GUI runs :func:`iter_build_pyramid_cache` in a thread
worker for progress and cancel) writes its lower levels once into an OME-Zarr in the user
cache; :func:`cached_levels` (used by :func:`napari_carspatial.io.read_image`) returns them from
then on, so later opens read only the small levels.

What is cached
    The nearest-neighbour levels the reader would otherwise stride lazily,
    ``level0[:, ::2**k, ::2**k]`` for ``k = 1 ..``, continued down to <= :data:`CACHE_MIN_SIZE`
    px like a pyramid written by the scanner (the lazy strided pyramid stops at 2048 px because
    every level of it reads all of level 0; a cached level costs nothing): the pixels of the
    shared levels do not change, only where they come from, and an overview of a whole slide
    reads a level of about a thousand pixels. Level 0 is always read from the file itself.
Key
    The file's identity: resolved path, size and modification time (ns), plus the level-0
    shape and dtype and a format version. A changed, moved or replaced file gets a new entry;
    an entry is used only when it is complete (written to a temporary folder, then renamed).
Where
    ``$CARSPATIAL_CACHE_DIR``, else the platform's user cache folder
    (``~/.cache/napari-carspatial/pyramids`` on Linux).
Memory
    The build reads level 0 in bands of up to 4096 rows of one channel at a time
    (about 100 MB for a 12,000 px wide slide) and writes chunk-aligned blocks of every level
    from the same band: one pass over the file, bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ._util import PYRAMID_MIN_SIZE

log = logging.getLogger(__name__)

__all__ = ["cache_root", "cache_path", "cached_levels", "build_pyramid_cache", "iter_build_pyramid_cache",
           "needs_pyramid_cache", "clear_pyramid_cache"]

#: bump when the layout of a cache entry changes (old entries are then ignored)
CACHE_VERSION = 2
#: chunk edge of the cached levels
CHUNK = 512
#: the cached pyramid goes down to a level of at most this many pixels
CACHE_MIN_SIZE = 1024
#: most rows of level 0 read at a time
MAX_BAND_ROWS = 4096


def cache_root() -> Path:
    """Folder of the pyramid cache (``$CARSPATIAL_CACHE_DIR`` or the user cache folder)."""
    env = os.environ.get("CARSPATIAL_CACHE_DIR")
    if env:
        return Path(env) / "pyramids"
    try:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("napari-carspatial"))
    except ImportError:  # pragma: no cover - platformdirs ships with napari's dependencies
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "napari-carspatial"
    return base / "pyramids"


def _n_levels(shape_yx, min_size: int = CACHE_MIN_SIZE) -> int:
    """How many halvings below level 0 until the level is at most ``min_size`` px."""
    h, w = int(shape_yx[0]), int(shape_yx[1])
    n = 0
    while max(h, w) > min_size:
        h, w = -(-h // 2), -(-w // 2)
        n += 1
    return n


def needs_pyramid_cache(level0) -> bool:
    """True for an image of one level large enough that the reader strides it lazily."""
    return level0.ndim == 3 and _n_levels(level0.shape[-2:], PYRAMID_MIN_SIZE) > 0


def _identity(path, level0) -> dict:
    p = Path(path).resolve()
    st = p.stat()
    return {"path": os.fspath(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "shape": [int(s) for s in level0.shape], "dtype": str(np.dtype(level0.dtype)), "version": CACHE_VERSION}


def cache_path(path, level0) -> Path:
    """The cache entry of ``path`` (whose level 0 is ``level0``); it may not exist yet."""
    ident = _identity(path, level0)
    key = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    name = Path(ident["path"]).name.split(".")[0][:40] or "image"
    return cache_root() / f"{name}-{key}.ome.zarr"


def cached_levels(path, level0) -> list | None:
    """``[level0, level1, ...]`` with the lower levels from a complete cache entry, else ``None``.

    Never raises: a missing, partial or unreadable entry means ``None`` (the caller falls back
    to lazy strided levels), logged at debug level.
    """
    try:
        if not needs_pyramid_cache(level0) or not Path(path).is_file():
            return None
        entry = cache_path(path, level0)
        meta_file = entry / "carspatial_cache.json"
        if not meta_file.exists():
            return None
        meta = json.loads(meta_file.read_text())
        if meta.get("identity") != _identity(path, level0) or not meta.get("complete"):
            return None
        import dask.array as da
        import zarr

        g = zarr.open_group(os.fspath(entry), mode="r")
        levels = [level0]
        for k in range(1, int(meta["n_levels"]) + 1):
            arr = g[str(k)]
            want = (int(level0.shape[0]), -(-int(level0.shape[1]) // 2 ** k), -(-int(level0.shape[2]) // 2 ** k))
            if tuple(arr.shape) != want:
                log.debug("pyramid cache %s: level %d has shape %s, expected %s", entry, k, arr.shape, want)
                return None
            levels.append(da.from_zarr(arr))
        log.debug("pyramid cache hit for %s: %s", path, entry)
        return levels
    except Exception as err:  # noqa: BLE001 - a cache must never break opening the file
        log.debug("pyramid cache not usable for %s: %s", path, err)
        return None


def iter_build_pyramid_cache(path, level0=None, *, band_rows: int | None = None) -> Iterator[float]:
    """Write the cache entry of ``path``, yielding the fraction done (0..1) after each band.

    Stop iterating to cancel (nothing is left behind but a temporary folder that is removed).
    Safe to run while another process builds the same entry: the first complete one wins.

    Parameters
    ----------
    path
        The image file (a flat TIFF / OME-TIFF).
    level0
        Its level 0 as a lazy (C, Y, X) array (default: read with :func:`~napari_carspatial.io.tiff.read_tiff`).
    band_rows
        Rows of level 0 read at a time (default ``min(512 * 2**n_levels, 4096)``; a multiple of
        ``2**n_levels``, so every level gets whole rows of chunks).
    """
    import zarr
    from numcodecs import Blosc

    if level0 is None:
        from .tiff import read_tiff

        level0 = read_tiff(path).levels[0]
    if not needs_pyramid_cache(level0) or not Path(path).is_file():
        yield 1.0
        return
    C, H, W = (int(s) for s in level0.shape)
    n = _n_levels((H, W))
    f_max = 2 ** n
    band = int(band_rows or min(CHUNK * f_max, max(MAX_BAND_ROWS, f_max)))
    if band % f_max:
        raise ValueError(f"band_rows must be a multiple of {f_max}")
    entry = cache_path(path, level0)
    if cached_levels(path, level0) is not None:
        yield 1.0
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
    t0 = time.perf_counter()
    try:
        root = zarr.open_group(os.fspath(tmp), mode="w", zarr_format=2)
        comp = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE)
        arrays = {}
        for k in range(1, n + 1):
            f = 2 ** k
            shape = (C, -(-H // f), -(-W // f))
            arrays[k] = root.create_array(str(k), shape=shape, chunks=(1, min(CHUNK, band // f), CHUNK),
                                          dtype=level0.dtype, compressors=comp)
        ident = _identity(path, level0)
        root.attrs["multiscales"] = [{
            "version": "0.4", "name": Path(ident["path"]).name,
            "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0 ** k, 2.0 ** k]}]}
                         for k in range(1, n + 1)],
            "metadata": {"method": "level0[:, ::2**k, ::2**k] (napari_carspatial.io.pyramid_cache)"},
        }]
        total = C * (-(-H // band))
        done = 0
        for c in range(C):
            for y0 in range(0, H, band):
                y1 = min(H, y0 + band)
                blk = np.asarray(level0[c, y0:y1, :])  # one band of one channel
                for k in range(1, n + 1):
                    f = 2 ** k
                    sub = blk[::f, ::f]
                    arrays[k][c, y0 // f: y0 // f + sub.shape[0], :] = sub
                done += 1
                yield done / total
        meta = {"identity": ident, "n_levels": n, "complete": True, "seconds": round(time.perf_counter() - t0, 3),
                "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "carspatial_cache.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, entry)  # atomic on one file system; fails if another build won
        except OSError:
            if cached_levels(path, level0) is None:  # a stale incomplete entry: replace it
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(tmp, entry)
        log.info("pyramid cache for %s: %d levels in %.1f s -> %s", path, n, time.perf_counter() - t0, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_pyramid_cache(path, level0=None, *, band_rows: int | None = None) -> Path:
    """Write the cache entry of ``path`` (see :func:`iter_build_pyramid_cache`); return its folder."""
    for _ in iter_build_pyramid_cache(path, level0, band_rows=band_rows):
        pass
    if level0 is None:
        from .tiff import read_tiff

        level0 = read_tiff(path).levels[0]
    return cache_path(path, level0)


def clear_pyramid_cache(older_than_days: float | None = None) -> int:
    """Delete cache entries (all, or those not modified for ``older_than_days``); return how many."""
    root = cache_root()
    if not root.exists():
        return 0
    limit = None if older_than_days is None else time.time() - older_than_days * 86400
    n = 0
    for p in root.iterdir():
        if p.is_dir() and (limit is None or p.stat().st_mtime < limit):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n
