"""Co-occurrence probabilities, identical to ``squidpy.gr.co_occurrence``, without all pairs.

squidpy's definition (``squidpy/gr/_ppatterns.py``, 1.8)
--------------------------------------------------------
* Coordinates are cast to float32; thresholds ``t`` are float32; squidpy uses ``t[1:]`` only
  (the first value is a lower end that is never used) and compares squared float32 distances
  ``dx*dx + dy*dy <= t[r]^2`` (cumulative: "within distance ``t[r+1]``", not a ring).
* An ``int`` interval means ``np.linspace(t_min, t_max, num=interval)`` (float32) with
  ``t_min`` = distance between the two cells with the smallest ``x + y`` and ``t_max`` = half
  the distance between the cells with the smallest and the largest ``x + y``.
* ``count[A, B, r]`` = number of ordered pairs ``(i, j)``, ``i != j``, with labels ``(A, B)``
  within ``t[r+1]``; ``row[B, r] = sum_A count[A, B, r]``; ``p[B, r] = row[B, r] / sum row``;
  ``occ[A, B, r] = (count[B, A, r] / row[B, r]) / p[A, r]`` (0 where ``p`` or ``row`` is 0).
  Output shape ``(K, K, len(interval) - 1)``.

Algorithm here
--------------
Cells are bucketed in a uniform grid with cells of 1/8 of the largest threshold; each unordered
pair within the largest threshold is visited once (grid rows at or below a point, only the
columns whose nearest corner is within range, so the scanned area is close to the disk; numba,
parallel over interleaved blocks of points). Its squared float32 distance uses squidpy's own
expression and float semantics (``dx*dx + dy*dy`` under ``fastmath``, i.e. the same FMA
contraction; a test pins this on pairs where the rounding matters).

The bin of a pair is found without comparing it with every threshold: for evenly spaced
thresholds (squidpy's ``linspace`` default, ``np.arange``) from ``(sqrt(d2) - t0) / step`` in a
vectorised pass; pairs within 1e-3 bins of an edge (about 0.2 %) and every pair of unevenly
spaced thresholds get the exact bin by comparing ``d2`` with the float32 squared thresholds, as
squidpy does. Counts go into four interleaved int32 histograms per thread (independent
read-modify-write chains), and a cumulative sum over bins gives squidpy's cumulative counts, so
the counts are *equal* to squidpy's, not approximately equal.

Work is proportional to the number of pairs within the largest threshold, not to
``n^2 * len(interval)``. With squidpy's default thresholds (up to half the slide diagonal) most
pairs are within range: an exact answer then has to look at each of them (distance bins of
~64 px against ~20 px cell spacing leave no block of cells whose pairs all fall into one bin,
so dual-tree or grid block counting cannot skip them); the gain there is in the cost per pair
(about 1 ns instead of squidpy's ``2 * len(interval)`` comparisons): 27x at 50,000 cells
(``benchmarks/bench_stats.py``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from napari_carspatial.analysis._grid import build_grid
from napari_carspatial.analysis.graph import get_coordinates, resolve_pixel_size
from napari_carspatial.analysis.nhood import _get_labels
from napari_carspatial.model.conventions import SPATIAL_KEY

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = ["CoOccurrenceResult", "co_occurrence", "squidpy_default_interval"]


@dataclass
class CoOccurrenceResult:
    """Result of :func:`co_occurrence`.

    Attributes
    ----------
    occ
        ``(K, K, L - 1)`` co-occurrence ratios ``p(A | B within t) / p(A)`` (squidpy's ``occ``):
        ``occ[A, B, r]`` uses threshold ``interval[r + 1]``.
    interval
        The ``L`` thresholds in the units of the call (µm when a pixel size was used, else
        coordinate units).
    interval_px
        The thresholds in coordinate units (pixels), float32, as squidpy stores them.
    counts
        ``(K, K, L - 1)`` cumulative ordered-pair counts ``count[A, B, r]``.
    categories
        The ``K`` categories.
    pixel_size_um
        Pixel size used for the conversion, or ``None``.
    """

    occ: np.ndarray
    interval: np.ndarray
    interval_px: np.ndarray
    counts: np.ndarray
    categories: list
    pixel_size_um: float | None = None


def squidpy_default_interval(xy32: np.ndarray, num: int) -> np.ndarray:
    """squidpy's thresholds for an ``int`` interval (float32), computed exactly as squidpy does."""
    xy32 = np.asarray(xy32, dtype=np.float32)
    if xy32.shape[0] < 3:
        raise ValueError("an int `interval` needs at least 3 cells to derive thresholds from")
    coord_sum = np.sum(xy32, axis=1)
    min_idx, min_idx2 = np.argpartition(coord_sum, 2)[:2]
    max_idx = np.argmax(coord_sum)
    try:  # squidpy uses scikit-learn's pairwise_distances (float32 in, float32 out)
        from sklearn.metrics import pairwise_distances

        tmax = pairwise_distances(xy32[min_idx].reshape(1, -1), xy32[max_idx].reshape(1, -1))[0, 0] / 2.0
        tmin = pairwise_distances(xy32[min_idx].reshape(1, -1), xy32[min_idx2].reshape(1, -1))[0, 0]
    except ImportError:  # pragma: no cover - sklearn ships with squidpy; fallback is equivalent
        a, b, c = (xy32[i].astype(np.float64) for i in (min_idx, max_idx, min_idx2))
        tmax = np.float32(np.sqrt(((a - b) ** 2).sum())) / np.float32(2.0)
        tmin = np.float32(np.sqrt(((a - c) ** 2).sum()))
    return np.linspace(np.float32(tmin), np.float32(tmax), num=num, dtype=np.float32)


@numba.njit(fastmath=True, cache=True, inline="always")
def _exact_bin(d2, t2, lut, lut_scale, f_m):  # pragma: no cover - numba
    """First ``r`` with ``d2 <= t2[r]`` (``len(t2)`` beyond the last), from a LUT lower bound."""
    r = lut[np.int32(min(d2 * lut_scale, f_m))]
    L = t2.shape[0]
    while r < L and d2 > t2[r]:
        r += 1
    return r


@numba.njit(fastmath=True, cache=True, inline="always")
def _run(xi, yi, base, p0, p1, xs, ys, lsL, buf, dbuf, h4, kkl1, uniform, t0, inv_step, delta,
         t2, lut, lut_scale):  # pragma: no cover - numba
    """Pairs of one point with the contiguous run of points ``p0 .. p1 - 1``."""
    cnt = p1 - p0
    # views indexed by a range variable: provably non-negative indices, so no wrap-around
    # checks in the loops (they kept LLVM from vectorising pass 1)
    xr = xs[p0:p1]
    yr = ys[p0:p1]
    lr = lsL[p0:p1]
    L = t2.shape[0]
    f_m = np.float32(lut.shape[0] - 1)
    f_lo = np.float32(-0.5)
    f_hi = np.float32(L - 0.5)
    one = np.float32(1.0)
    # pass 1 (vectorised): squidpy's float32 d2 and, for even thresholds, the bin
    if uniform:
        for q in range(cnt):
            dx = xi - xr[q]
            dy = yi - yr[q]
            d2 = dx * dx + dy * dy
            f = (np.sqrt(d2) - t0) * inv_step
            f = min(max(f, f_lo), f_hi)
            fl = np.floor(f)
            g = f - fl
            r = np.int32(fl) + np.int32(1)
            buf[q] = lr[q] + r if (g >= delta) & (g <= one - delta) else np.int32(-1)
            dbuf[q] = d2
    else:
        for q in range(cnt):
            dx = xi - xr[q]
            dy = yi - yr[q]
            buf[q] = np.int32(-1)
            dbuf[q] = dx * dx + dy * dy
    # pass 2 (scalar): scatter into four interleaved histograms, unrolled
    n4 = cnt // 4
    for k in range(n4):
        for u in range(4):
            q = 4 * k + u
            v = buf[q]
            if v < 0:
                v = lr[q] + _exact_bin(dbuf[q], t2, lut, lut_scale, f_m)
            h4[u * kkl1 + base + v] += 1
    for q in range(4 * n4, cnt):
        v = buf[q]
        if v < 0:
            v = lr[q] + _exact_bin(dbuf[q], t2, lut, lut_scale, f_m)
        h4[base + v] += 1


@numba.njit(parallel=True, fastmath=True, cache=True)
def _cooc_kernel(xs, ys, lsL, li_base, t2, uniform, t0, inv_step, delta, lut, lut_scale,
                 cell_start, cxs, cys, nx, ny, halfw, n_chunks, block, kkl1):  # pragma: no cover - numba
    """Per-(type, type, bin) counts of unordered pairs (histogram, not cumulative).

    ``xs, ys`` float32 coordinates in grid-cell order; ``lsL[p] = label * (L + 1)``,
    ``li_base[p] = label * K * (L + 1)``; bin ``L`` collects pairs beyond the last threshold.
    For every point, the pairs ahead of it (grid rows at or below its own, within ``halfw``
    columns) come in contiguous runs of points (adjacent rows merged); each run is done in two
    passes (:func:`_run`): a vectorised one computing squidpy's float32 ``d2`` and, for evenly
    spaced thresholds, the bin from ``(sqrt(d2) - t0) / step`` (pairs near a bin edge are marked
    -1), then a scalar scatter into four interleaved int32 histograms (independent
    read-modify-write chains). Marked pairs (within ``delta`` of an edge, about 0.2 %) and all
    pairs of unevenly spaced thresholds get the exact bin by comparing ``d2`` with the float32
    squared thresholds, as squidpy does.
    """
    n = xs.shape[0]
    m = halfw.shape[0] - 1
    hist = np.zeros((n_chunks, kkl1), dtype=np.int64)
    n_blocks = (n + block - 1) // block
    for ch in numba.prange(n_chunks):
        h4 = np.zeros(4 * kkl1, dtype=np.int32)
        buf = np.empty(n, dtype=np.int32)
        dbuf = np.empty(n, dtype=np.float32)
        out = hist[ch]
        for b in range(ch, n_blocks, n_chunks):
            for pos in range(b * block, min(n, (b + 1) * block)):
                xi = xs[pos]
                yi = ys[pos]
                base = li_base[pos]
                cx = cxs[pos]
                cy = cys[pos]
                r0 = 0
                r1 = 0
                for dyc in range(min(m, ny - 1 - cy) + 1):
                    w = halfw[dyc]
                    row = (cy + dyc) * nx
                    p0 = cell_start[row + max(cx - w, 0)]
                    if dyc == 0:
                        p0 = pos + 1
                    p1 = cell_start[row + min(cx + w, nx - 1) + 1]
                    if p1 <= p0:
                        continue
                    if p0 == r1:  # continues the current run (full-width rows)
                        r1 = p1
                        continue
                    if r1 > r0:
                        _run(xi, yi, base, r0, r1, xs, ys, lsL, buf, dbuf, h4, kkl1, uniform, t0,
                             inv_step, delta, t2, lut, lut_scale)
                    r0 = p0
                    r1 = p1
                if r1 > r0:
                    _run(xi, yi, base, r0, r1, xs, ys, lsL, buf, dbuf, h4, kkl1, uniform, t0,
                         inv_step, delta, t2, lut, lut_scale)
            # flush the int32 histograms once per block (no overflow below ~30M cells)
            for k in range(kkl1):
                out[k] += np.int64(h4[k]) + h4[kkl1 + k] + h4[2 * kkl1 + k] + h4[3 * kkl1 + k]
            h4[:] = 0
    return hist


def _bin_setup(t2: np.ndarray, interval_px: np.ndarray):
    """Parameters of the kernel's bin computation for the float32 squared thresholds ``t2``.

    ``lut[k]`` (``k = int(d2 * lut_scale)``) is a lower bound of the bin of any ``d2`` in LUT
    cell ``k`` (the number of thresholds certainly below it); the exact bin follows by
    comparison. Evenly spaced thresholds (squidpy's ``linspace``, ``np.arange``) also get the
    direct formula, with a margin ``delta`` (in bins) far above float32 rounding.
    """
    L = t2.size
    M = 8192
    t2max = float(t2[-1])
    lut_scale = np.float32(M / t2max) if t2max > 0 else np.float32(0.0)
    if t2max > 0:
        edges = np.arange(M + 1, dtype=np.float64) / float(lut_scale) * (1.0 - 1e-5)
        lut = np.searchsorted(t2.astype(np.float64), edges, side="left").astype(np.int32)
    else:
        lut = np.zeros(M + 1, np.int32)
    t = np.asarray(interval_px[1:], dtype=np.float64)
    uniform, t0, inv_step, delta = False, 0.0, 0.0, 0.5
    if L >= 2 and t[-1] > t[0]:
        step = (t[-1] - t[0]) / (L - 1)
        dev = float(np.max(np.abs(t - (t[0] + step * np.arange(L))))) / step
        # float32 error of (sqrt(d2) - t0) / step, in bins: a few ulps of t_max / step
        err = 4.0 * 2.0 ** -23 * (abs(t[-1]) + abs(t[0])) / step + 2.0 * dev
        delta = max(1e-3, 8.0 * err)
        uniform = bool(delta < 0.05 and np.all(np.diff(t) > 0))
        t0, inv_step = t[0], 1.0 / step
    return uniform, np.float32(t0), np.float32(inv_step), np.float32(delta), lut, lut_scale


def _occ_from_counts(counts: np.ndarray) -> np.ndarray:
    """squidpy's probability formula on cumulative counts (K, K, L)."""
    counts = counts.astype(np.float64)
    row_sums = counts.sum(axis=0)  # (K, L): row_sums[c, r] = sum_a counts[a, c, r]
    totals = row_sums.sum(axis=0)  # (L,)
    with np.errstate(divide="ignore", invalid="ignore"):
        probs = row_sums / totals[None, :]  # probs[i, r]
        # occ[i, c, r] = (counts[c, i, r] / row_sums[c, r]) / probs[i, r]
        cond = counts.transpose(1, 0, 2) / row_sums[None, :, :]
        occ = cond / probs[:, None, :]
    ok = (probs[:, None, :] != 0) & (row_sums[None, :, :] != 0)
    return np.where(ok, occ, 0.0)


def co_occurrence(
    adata: AnnData,
    *,
    cluster_key: str,
    interval: int | np.ndarray = 50,
    spatial_key: str = SPATIAL_KEY,
    pixel_size_um: float | None = None,
    copy: bool = True,
    grid_refine: int = 8,
) -> CoOccurrenceResult:
    """Co-occurrence ratios of every pair of categories, equal to ``squidpy.gr.co_occurrence``.

    Parameters
    ----------
    adata
        AnnData with ``obs[cluster_key]`` and ``obsm[spatial_key]``.
    cluster_key
        Column of ``obs`` with the cell types (made categorical if it is not).
    interval
        Distance thresholds (sorted, at least 2; only ``interval[1:]`` are used, as squidpy),
        in µm when a pixel size is known (argument or ``uns["carspatial"]``), else in
        coordinate units. An ``int`` uses squidpy's data-derived ``linspace`` (coordinate units).
    spatial_key
        Key in ``obsm`` with (x, y) coordinates in pixels.
    pixel_size_um
        µm per pixel, overrides the table's.
    copy
        If ``True`` (default) ``adata`` is not modified; if ``False`` the result is also stored
        like squidpy: ``uns[f"{cluster_key}_co_occurrence"] = {"occ", "interval"}`` (interval
        in coordinate units).
    grid_refine
        Grid cells are ``max threshold / grid_refine`` wide (speed only, not the result).

    Returns
    -------
    CoOccurrenceResult
        ``occ`` of shape ``(K, K, len(interval) - 1)`` plus counts and thresholds.

    Notes
    -----
    All categories of the column are kept; a category without cells gets all-zero rows and
    columns (squidpy's 0 convention; squidpy itself sizes its output by the categories that
    occur and mis-indexes when a category is unused).
    """
    t0 = time.perf_counter()
    labels, categories = _get_labels(adata, cluster_key)
    K = len(categories)
    xy32 = get_coordinates(adata, spatial_key=spatial_key).astype(np.float32)
    px = resolve_pixel_size(adata, pixel_size_um)
    if isinstance(interval, (int, np.integer)) and not isinstance(interval, bool):
        interval_px = squidpy_default_interval(xy32, int(interval))
        interval_user = interval_px if px is None else interval_px.astype(np.float64) * px
    else:
        interval_user = np.array(sorted(np.asarray(interval, dtype=np.float64).ravel()))
        scaled = interval_user if px is None else interval_user / px
        interval_px = np.array(scaled, dtype=np.float32)
    if len(interval_px) <= 1:
        raise ValueError(f"Expected interval to be of length `>= 2`, found `{len(interval_px)}`.")
    t2 = (interval_px[1:]) ** 2  # float32, as squidpy
    L = t2.size

    n = xy32.shape[0]
    h = _pair_histogram(xy32, labels, K, t2, interval_px, grid_refine=grid_refine)
    counts = np.cumsum(h, axis=2)  # "within t[r+1]" is cumulative
    occ = _occ_from_counts(counts)
    res = CoOccurrenceResult(
        occ=occ,
        interval=np.asarray(interval_user),
        interval_px=interval_px,
        counts=counts,
        categories=categories,
        pixel_size_um=px,
    )
    logger.info(
        "co_occurrence: %d cells, %d categories, %d thresholds up to %.1f px in %.3f s",
        n, K, L + 1, float(interval_px[-1]), time.perf_counter() - t0,
    )
    if not copy:
        adata.uns[f"{cluster_key}_co_occurrence"] = {"occ": occ, "interval": interval_px}
    return res


def _pair_histogram(xy32: np.ndarray, labels: np.ndarray, K: int, t2: np.ndarray, interval_px: np.ndarray,
                    *, grid_refine: int = 8) -> np.ndarray:
    """``(K, K, L)`` ordered-pair counts per bin (pair in bin ``r``: ``t2[r-1] < d2 <= t2[r]``)."""
    n = xy32.shape[0]
    L = t2.size
    if n < 2 or K == 0:
        return np.zeros((K, K, L), np.int64)
    rmax = math.sqrt(float(t2[-1])) * (1.0 + 1e-5) + 1e-6  # margin: float32 d2 may round down
    grid = build_grid(xy32.astype(np.float64), rmax / max(1, int(grid_refine)))
    mr = rmax / grid.cell
    m = max(1, int(math.ceil(mr)))
    # columns to scan in the grid row ``d`` below a point: cells whose nearest corner is within rmax
    d = np.arange(m + 1)
    e = np.maximum(d - 1, 0).astype(np.float64)
    halfw = np.minimum(m, np.floor(np.sqrt(np.maximum(mr * mr - e * e, 0.0))).astype(np.int64) + 1)
    o = grid.order
    ls = labels[o].astype(np.int64)
    L1 = L + 1
    uniform, t0, inv_step, delta, lut, lut_scale = _bin_setup(t2, interval_px)
    n_chunks = max(1, min(4 * numba.get_num_threads(), (n + 63) // 64))
    hist = _cooc_kernel(
        np.ascontiguousarray(xy32[o, 0]), np.ascontiguousarray(xy32[o, 1]), (ls * L1).astype(np.int32),
        ls * (K * L1), t2, uniform, t0, inv_step, delta, lut, lut_scale, grid.cell_start,
        grid.ix[o], grid.iy[o], grid.nx, grid.ny, halfw, n_chunks, 64, K * K * L1,
    )
    h = hist.sum(axis=0).reshape(K, K, L1)[:, :, :L]
    return h + h.transpose(1, 0, 2)  # ordered pairs (i, j) and (j, i)
