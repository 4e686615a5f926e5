"""Which cell ids a mask holds, fast: one pass that marks ids in a presence bitmap (no sort of
every pixel), cached by the mask file's identity.

:func:`mask_ids` is what :meth:`~napari_carspatial.model.Sample.validate` checks the table
against. Reading a 21836 x 21836 uint32 mask (1,001,421 cells, 1.9 GB of pixels) is then the
cost of decompressing it (a few seconds on 2 cores) instead of a ``numpy.unique`` per block and
a pandas ``groupby`` (:func:`~napari_carspatial.model.mask_stats.label_stats`, ~25-60 s), and a
mask opened again (same path, size and modification time, see
:func:`~napari_carspatial.model.file_identity.file_identity`) is not read at all.

:func:`small_level_ids` is the cheap, partial check: the ids visible in the pyramid's smallest
level (every one of them must be a table id).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from .file_identity import cached_array, file_identity, identity_key, store_array

log = logging.getLogger(__name__)

#: a presence bitmap is used while the largest id stays below this (128 MB of bools)
BITMAP_MAX_ID = 1 << 27
#: rows per strip when a numpy mask is scanned
STRIP = 1024
CACHE_KIND = "mask-ids"


class _Presence:
    """Thread-safe set of ids: a growing bitmap for ids below :data:`BITMAP_MAX_ID`, sorted
    unique arrays for the rest (negative ids, huge ids)."""

    def __init__(self):
        self.seen = np.zeros(0, dtype=bool)
        self.other: list[np.ndarray] = []
        self.lock = threading.Lock()

    def add(self, block) -> None:
        b = np.asarray(block)
        if b.size == 0:
            return
        b = b.ravel()
        lo, hi = b.min(), b.max()
        if (np.issubdtype(b.dtype, np.signedinteger) and lo < 0) or int(hi) >= BITMAP_MAX_ID:
            with self.lock:
                self.other.append(np.unique(b))
            return
        hi = int(hi)
        with self.lock:
            if hi >= self.seen.size:
                grown = np.zeros(max(hi + 1, 2 * self.seen.size), dtype=bool)
                grown[: self.seen.size] = self.seen
                self.seen = grown
            self.seen[b] = True

    def ids(self) -> np.ndarray:
        out = np.flatnonzero(self.seen).astype(np.int64)
        if self.other:
            # uint64 ids >= 2**63 wrap to negative values, which the caller refuses (as label_stats does)
            rest = np.unique(np.concatenate([o.astype(np.int64) for o in self.other]))
            out = np.union1d(out, rest)
        return out[out != 0]


def scan_ids(labels, *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Sorted unique ids (> 0, and any negative ones) of a 2-D label image, in one pass.

    Parameters
    ----------
    labels
        numpy or dask array (dask: block by block, in dask's threads; memory stays bounded by
        a few blocks plus the bitmap).
    progress
        Optional ``progress(done, total)`` in blocks (called from worker threads).

    Returns
    -------
    numpy.ndarray of int64
        Equal to ``np.unique(labels)`` without 0.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got {labels.ndim} dimensions")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label image must have an integer dtype, got {labels.dtype}")
    pres = _Presence()
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        da = None
    if da is not None and isinstance(labels, da.Array):
        nb = int(np.prod(labels.numblocks))
        done = [0]

        def mark(block):
            pres.add(block)
            if progress is not None:
                with pres.lock:
                    done[0] += 1
                    n = done[0]
                progress(n, nb)
            return np.zeros((1,) * block.ndim, dtype=np.uint8)

        labels.map_blocks(mark, dtype=np.uint8, chunks=(1,) * labels.ndim,
                          meta=np.empty((0,) * labels.ndim, np.uint8)).compute()
    else:
        arr = np.asarray(labels)
        n = max(1, -(-arr.shape[0] // STRIP))
        for k, y0 in enumerate(range(0, arr.shape[0], STRIP)):
            pres.add(arr[y0:y0 + STRIP])
            if progress is not None:
                progress(k + 1, n)
    return pres.ids()


def mask_ids(labels, *, source=None, progress: Callable[[int, int], None] | None = None,
             scan: Callable[..., np.ndarray] | None = None) -> np.ndarray:
    """The ids of ``labels`` (level 0 of a mask), cached by the identity of the file it was read from.

    Parameters
    ----------
    labels
        The level-0 label image.
    source
        The file or folder the mask was read from (``Sample.paths["mask"]``; SpatialData
        ``"store::labels/name"`` works). Without one (a mask in memory) nothing is cached.
    progress
        See :func:`scan_ids`.
    scan
        What reads the pixels on a cache miss, called as ``scan(labels, progress=progress)``
        (default :func:`scan_ids`; the deferred id check passes one that runs it in a separate
        process, :class:`napari_carspatial.io.measure_job.IdCheckJob`). Must return what
        :func:`scan_ids` returns.

    Returns
    -------
    numpy.ndarray of int64
        Sorted unique ids without 0 (negative ids included: the caller refuses them).
    """
    # only a lazy array read from the file is what the file holds: its dask name (deterministic for
    # the readers' ``from_zarr`` / tifffile arrays) is part of the key, so a mask edited in memory
    # (the segmentation editor's working copy) or a numpy array never uses the file's entry
    name = getattr(labels, "name", None) if hasattr(labels, "dask") else None
    ident = file_identity(source) if (source and name) else None
    key = None
    if ident is not None:
        key = identity_key(CACHE_KIND, ident, [list(map(int, labels.shape)), str(labels.dtype), str(name)])
        hit = cached_array(CACHE_KIND, key)
        if hit is not None:
            log.debug("mask ids of %s from the cache", source)
            return hit.astype(np.int64, copy=False)
    ids = (scan or scan_ids)(labels, progress=progress)
    # the file may have changed while it was read: store only under the identity it still has
    if key is not None and file_identity(source) == ident:
        store_array(CACHE_KIND, key, ids)
    return ids


#: a smallest level up to this many bytes is read at once and scanned in numpy (no dask graph)
SMALL_LEVEL_BYTES = 64 << 20


def small_level_ids(levels) -> np.ndarray:
    """Ids visible in the smallest level of a label pyramid (a subset of the mask's ids)."""
    small = levels[-1] if isinstance(levels, (list, tuple)) else levels
    if hasattr(small, "dask") and small.nbytes <= SMALL_LEVEL_BYTES:
        small = np.asarray(small)
    return scan_ids(small)
