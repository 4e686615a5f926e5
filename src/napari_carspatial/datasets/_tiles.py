"""Compressed in-memory tiles: the demo mask without holding it whole.

A :class:`TileStore` keeps one 2-D array as zstd-compressed tiles (the demo's uint32 mask
compresses about 35x: cells are runs of one id) and reads any window back by decompressing
the tiles it touches (a small LRU cache of decoded tiles serves the renderer's overlapping
windows). :meth:`TileStore.dask` gives the lazy dask array of a pyramid level.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

import numpy as np


def _codec():
    from numcodecs import Zstd

    # zstd level 1: ~35x on the demo mask at ~500 MB/s (lz4: ~12x, blosc shuffles: 5-20x)
    return Zstd(level=1)


class TileStore:
    """A (H, W) array kept as compressed tiles of ``tile`` x ``tile`` (edge tiles smaller).

    Parameters
    ----------
    shape
        (H, W) of the whole array.
    dtype
        Element type.
    tile
        Tile edge in pixels.
    """

    ndim = 2

    def __init__(self, shape: tuple[int, int], dtype, tile: int):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.tile = int(tile)
        self.ny = -(-self.shape[0] // self.tile)
        self.nx = -(-self.shape[1] // self.tile)
        self._blobs: dict[tuple[int, int], bytes] = {}
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._codec = _codec()
        self.cache_tiles = 12

    @property
    def nbytes_compressed(self) -> int:
        return sum(len(b) for b in self._blobs.values())

    def tile_shape(self, ty: int, tx: int) -> tuple[int, int]:
        t = self.tile
        return min(t, self.shape[0] - ty * t), min(t, self.shape[1] - tx * t)

    def put(self, ty: int, tx: int, arr: np.ndarray) -> None:
        """Store tile ``(ty, tx)`` (compressed; thread-safe)."""
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape != self.tile_shape(ty, tx):
            raise ValueError(f"tile {(ty, tx)} has shape {arr.shape}, expected {self.tile_shape(ty, tx)}")
        blob = self._codec.encode(arr)
        with self._lock:
            self._blobs[(ty, tx)] = bytes(blob)

    def get_tile(self, ty: int, tx: int) -> np.ndarray:
        """Decoded tile ``(ty, tx)`` (read-only view of a cached array)."""
        key = (ty, tx)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            blob = self._blobs[key]
        arr = np.frombuffer(self._codec.decode(blob), dtype=self.dtype).reshape(self.tile_shape(ty, tx))
        arr.flags.writeable = False
        with self._lock:
            self._cache[key] = arr
            while len(self._cache) > self.cache_tiles:
                self._cache.popitem(last=False)
        return arr

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        if len(key) != 2 or not all(isinstance(k, slice) for k in key):
            return self.read(0, self.shape[0], 0, self.shape[1])[key]
        (y0, y1, sy), (x0, x1, sx) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        if sy != 1 or sx != 1:
            return self.read(y0, y1, x0, x1)[::sy, ::sx]
        return self.read(y0, y1, x0, x1)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The window ``[y0:y1, x0:x1]`` as a new array."""
        out = np.empty((max(0, y1 - y0), max(0, x1 - x0)), self.dtype)
        if out.size == 0:
            return out
        t = self.tile
        for ty in range(y0 // t, (y1 - 1) // t + 1):
            for tx in range(x0 // t, (x1 - 1) // t + 1):
                a = self.get_tile(ty, tx)
                ty0, tx0 = ty * t, tx * t
                ya, yb = max(y0, ty0), min(y1, ty0 + a.shape[0])
                xa, xb = max(x0, tx0), min(x1, tx0 + a.shape[1])
                out[ya - y0: yb - y0, xa - x0: xb - x0] = a[ya - ty0: yb - ty0, xa - tx0: xb - tx0]
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.read(0, self.shape[0], 0, self.shape[1])
        return a if dtype is None else a.astype(dtype)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The compressed tiles as two arrays (for a cache file): ``blob`` (uint8, every tile's
        bytes in row-major tile order) and ``offsets`` (int64, ``ny * nx + 1``)."""
        with self._lock:
            blobs = [self._blobs[(ty, tx)] for ty in range(self.ny) for tx in range(self.nx)]
        offsets = np.zeros(len(blobs) + 1, np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        return {"blob": np.frombuffer(b"".join(blobs), np.uint8), "offsets": offsets}

    @classmethod
    def from_arrays(cls, shape: tuple[int, int], dtype, tile: int, blob: np.ndarray, offsets: np.ndarray) -> TileStore:
        """The store :meth:`to_arrays` wrote (raises ``ValueError`` when the arrays do not fit ``shape``)."""
        store = cls(shape, dtype, tile)
        if offsets.shape != (store.ny * store.nx + 1,) or int(offsets[-1]) != blob.size or offsets[0] != 0:
            raise ValueError("tile arrays do not match the store's shape")
        raw = blob.tobytes()
        k = 0
        for ty in range(store.ny):
            for tx in range(store.nx):
                store._blobs[(ty, tx)] = raw[int(offsets[k]): int(offsets[k + 1])]
                k += 1
        return store

    def dask(self, name: str = "carspatial-demo-tiles"):
        """Lazy dask array, one chunk per tile."""
        import dask.array as da

        ych = tuple(self.tile_shape(ty, 0)[0] for ty in range(self.ny))
        xch = tuple(self.tile_shape(0, tx)[1] for tx in range(self.nx))

        def block(block_info=None):
            ty, tx = block_info[None]["chunk-location"]
            return np.array(self.get_tile(ty, tx))

        return da.map_blocks(block, chunks=(ych, xch), dtype=self.dtype, name=f"{name}-{uuid.uuid4().hex}",
                             meta=np.empty((0, 0), self.dtype))
