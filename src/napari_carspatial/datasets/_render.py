"""Pixel rendering of the synthetic demo, one tile at a time.

A tile is rendered from the mask, the nucleus flags and the per-cell expression table:
nucleus/cytoplasm pattern, autofluorescence, Gaussian PSF (with a halo so tiles join
seamlessly), smooth illumination, shot + read noise. The noise of tile ``(ty, tx)`` channel
``c`` is drawn from a fixed bank at an offset seeded by ``(seed, timepoint, ty, tx, c)``, so a
tile is identical whether it is rendered for the table (all channels) or for display (one
channel, lazily through dask).
"""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from ._cells import BACKGROUND, CHANNELS, pattern

log = logging.getLogger(__name__)

_BANK_SIZE = 1 << 22
_TRUNCATE = 3.0


class Renderer:
    """Render image tiles of one demo sample.

    Parameters
    ----------
    mask
        (Y, X) uint32 cell ids, 0 = background.
    nuc
        (Y, X) bool, nucleus pixels.
    id2idx
        Lookup table ``cell id -> row of expr``; background and unused ids map to ``len(expr)``.
    expr
        (n, channels) mean marker level per cell.
    seed_key
        Integers identifying the sample (seed, timepoint) for the noise streams.
    pixel_size_um
        Pixel size, sets the PSF width (0.5 µm sigma) in pixels.
    chunk
        Tile edge in pixels (also the dask chunk size).
    """

    def __init__(self, mask, nuc, id2idx, expr, seed_key, pixel_size_um, chunk=1024):
        self.mask, self.nuc, self.id2idx = mask, nuc, id2idx
        self.seed_key = tuple(int(k) for k in seed_key)
        self.n = expr.shape[0]
        self.chunk = int(chunk)
        nucw, cytw = pattern()
        outside = BACKGROUND * 0.35  # glass / extracellular matrix
        tab_nuc = np.vstack([expr * nucw + BACKGROUND, outside[None]])
        tab_cyt = np.vstack([expr * cytw + BACKGROUND, outside[None]])
        # (channels, 2 * (n + 1)): index 2 * row + is_nucleus
        self.table = np.empty((len(CHANNELS), 2 * (self.n + 1)), np.float32)
        self.table[:, 0::2] = tab_cyt.T
        self.table[:, 1::2] = tab_nuc.T
        self.sigma = 0.5 / pixel_size_um
        self.halo = int(_TRUNCATE * self.sigma + 0.5) + 1
        rng = np.random.default_rng([*self.seed_key, 99])
        self.bank = rng.standard_normal(_BANK_SIZE, dtype=np.float32)
        H, W = mask.shape
        ph = rng.uniform(0, 2 * np.pi, 2)
        per = 3000.0 / pixel_size_um
        self.illum_y = (1 + 0.06 * np.sin(2 * np.pi * np.arange(H) / per + ph[0])).astype(np.float32)
        self.illum_x = (1 + 0.06 * np.sin(2 * np.pi * np.arange(W) / (1.3 * per) + ph[1])).astype(np.float32)
        self.gain = 1.5
        self.read = 8.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(CHANNELS), *self.mask.shape)

    def tiles(self):
        """All tiles as ``(ty, tx, y0, y1, x0, x1)``."""
        H, W = self.mask.shape
        c = self.chunk
        for ty, y0 in enumerate(range(0, H, c)):
            for tx, x0 in enumerate(range(0, W, c)):
                yield ty, tx, y0, min(H, y0 + c), x0, min(W, x0 + c)

    def render(self, ty, tx, channels=None) -> np.ndarray:
        """Render tile ``(ty, tx)`` for ``channels`` (default all): (len(channels), h, w) float32."""
        H, W = self.mask.shape
        c = self.chunk
        y0, x0 = ty * c, tx * c
        y1, x1 = min(H, y0 + c), min(W, x0 + c)
        h = self.halo
        Y0, Y1, X0, X1 = max(0, y0 - h), min(H, y1 + h), max(0, x0 - h), min(W, x1 + h)
        rows = self.id2idx[self.mask[Y0:Y1, X0:X1]].astype(np.int64)
        rows *= 2
        rows += self.nuc[Y0:Y1, X0:X1]
        channels = range(len(CHANNELS)) if channels is None else channels
        illum = self.illum_y[y0:y1, None] * self.illum_x[None, x0:x1]
        out = np.empty((len(channels), y1 - y0, x1 - x0), np.float32)
        npx = (y1 - y0) * (x1 - x0)
        for k, ch in enumerate(channels):
            img = self.table[ch].take(rows)
            img = ndi.gaussian_filter(img, self.sigma, truncate=_TRUNCATE, mode="reflect")
            core = img[y0 - Y0: y1 - Y0, x0 - X0: x1 - X0] * illum
            off = np.random.default_rng([*self.seed_key, 5, ty, tx, ch]).integers(0, _BANK_SIZE - npx)
            noise = self.bank[off: off + npx].reshape(core.shape)
            core += np.sqrt(self.gain * np.maximum(core, 0) + self.read ** 2) * noise
            np.maximum(core, 0, out=out[k])
        return out

    def cell_means(self, *, workers: int | None = None, keep_factors: tuple[int, ...] | None = None):
        """Mean of every channel over each cell's pixels, rendered tile by tile: (n, channels) float32.

        With ``keep_factors``, also returns ``{f: (C, H // f, W // f) float32}``: the image
        mean-coarsened by each factor ``f`` (a power of two dividing the tile size), built from the
        same rendered tiles, so small pyramid levels cost no second rendering pass.
        """
        C = len(CHANNELS)
        sums = np.zeros((self.n + 1, C), np.float64)
        counts = np.zeros(self.n + 1, np.int64)
        H, W = self.mask.shape
        small = {f: np.zeros((C, H // f, W // f), np.float32) for f in keep_factors or ()}
        for f in small:
            if self.chunk % f:
                raise ValueError(f"coarsening factor {f} must divide the tile size {self.chunk}")

        def one(t):
            ty, tx, y0, y1, x0, x1 = t
            img = self.render(ty, tx)
            for f, arr in small.items():
                hb, wb = (y1 - y0) // f, (x1 - x0) // f
                if hb and wb:
                    blk = img[:, : hb * f, : wb * f].reshape(C, hb, f, wb, f).mean(axis=(2, 4), dtype=np.float64)
                    arr[:, y0 // f: y0 // f + hb, x0 // f: x0 // f + wb] = blk
            r = self.id2idx[self.mask[y0:y1, x0:x1]].ravel().astype(np.int64)
            fg = r < self.n
            if not fg.any():
                return 0, -1, np.zeros((0, C)), np.zeros(0, np.int64)
            lo, hi = int(r[fg].min()), int(r[fg].max())
            L = hi - lo + 1
            r -= lo
            r[~fg] = L  # background goes to an extra bin that is dropped
            part = np.empty((L, C), np.float64)
            for ch in range(C):
                part[:, ch] = np.bincount(r, weights=img[ch].ravel(), minlength=L + 1)[:L]
            return lo, hi, part, np.bincount(r, minlength=L + 1)[:L]

        workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as ex:
            for lo, hi, part, cnt in ex.map(one, list(self.tiles())):
                sums[lo: hi + 1] += part
                counts[lo: hi + 1] += cnt
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums[: self.n] / counts[: self.n, None]
        if keep_factors is not None:
            return means.astype(np.float32), small
        return means.astype(np.float32)

    def model_means(self, cnt: np.ndarray, ncnt: np.ndarray) -> np.ndarray:
        """Noise- and PSF-free per-cell means from the nucleus/cytoplasm pixel fractions."""
        f = (ncnt / np.maximum(cnt, 1)).astype(np.float32)[:, None]
        nucv = self.table[:, 1: 2 * self.n: 2].T
        cytv = self.table[:, 0: 2 * self.n: 2].T
        return (f * nucv + (1 - f) * cytv).astype(np.float32)

    def dask_array(self):
        """Level 0 as a lazy (C, Y, X) float32 dask array, one chunk per (channel, tile)."""
        import dask.array as da

        H, W = self.mask.shape
        c = self.chunk
        ych = tuple(min(c, H - y) for y in range(0, H, c))
        xch = tuple(min(c, W - x) for x in range(0, W, c))

        def block(block_info=None):
            ch, ty, tx = block_info[None]["chunk-location"]
            return self.render(ty, tx, [ch])

        return da.map_blocks(block, chunks=((1,) * len(CHANNELS), ych, xch), dtype=np.float32,
                             name=f"carspatial-demo-image-{uuid.uuid4().hex}",
                             meta=np.empty((0, 0, 0), np.float32))
