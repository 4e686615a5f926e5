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
Cells are bucketed in a uniform grid with cells of about the largest threshold; each unordered
pair within the largest threshold is visited once (the neighbouring grid cells ahead of the
cell, in numba, parallel over spatially contiguous chunks), its squared float32 distance is
computed with the same expression and float semantics as squidpy, its bin found by binary
search over the squared thresholds, and per-(type, type, bin) counts are accumulated; a
cumulative sum over bins gives squidpy's cumulative counts. Work is proportional to the number
of pairs within the largest threshold (times ``log`` of the number of thresholds), not to
``n^2 * len(interval)``. If the thresholds reach across the whole slide (squidpy's default
``interval=50`` goes up to half the slide diagonal) most pairs are within range and no
algorithm can avoid visiting them; this one then still does half squidpy's pair visits and
one binary search instead of ``len(interval)`` comparisons per pair.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numba
import numpy as np

from napari_carspatial.analysis._grid import build_grid
from napari_carspatial.analysis.graph import get_coordinates, resolve_pixel_size
from napari_carspatial.analysis.nhood import _get_labels
from napari_carspatial.model.conventions import SPATIAL_KEY

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


@numba.njit(parallel=True, fastmath=True, cache=True)
def _cooc_kernel(xs, ys, ls, t2, order, cell_start, ix, iy, nx, ny, m, K, n_chunks):  # pragma: no cover
    # xs, ys, ls: coordinates and labels in cell order (xs[p] belongs to point order[p])
    n = xs.shape[0]
    L = t2.shape[0]
    tmax = t2[L - 1]
    hist = np.zeros((n_chunks, K, K, L), dtype=np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for ch in numba.prange(n_chunks):
        s = ch * step
        e = min(n, s + step)
        for pos in range(s, e):
            i = order[pos]
            li = ls[pos]
            xi = xs[pos]
            yi = ys[pos]
            cx = ix[i]
            cy = iy[i]
            own = cy * nx + cx
            for gy in range(cy, min(cy + m, ny - 1) + 1):
                for gx in range(max(cx - m, 0), min(cx + m, nx - 1) + 1):
                    g = gy * nx + gx
                    if g < own:
                        continue
                    p0 = cell_start[g]
                    if g == own:
                        p0 = pos + 1
                    for p in range(p0, cell_start[g + 1]):
                        # same expression and float32 semantics as squidpy's _occur_count
                        dx = xi - xs[p]
                        dy = yi - ys[p]
                        d2 = dx * dx + dy * dy
                        if d2 <= tmax:
                            lo = 0
                            hi = L - 1
                            while lo < hi:  # first r with d2 <= t2[r]
                                mid = (lo + hi) // 2
                                if d2 <= t2[mid]:
                                    hi = mid
                                else:
                                    lo = mid + 1
                            hist[ch, li, ls[p], lo] += 1
    return hist


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
    adata,
    *,
    cluster_key: str,
    interval: int | np.ndarray = 50,
    spatial_key: str = SPATIAL_KEY,
    pixel_size_um: float | None = None,
    copy: bool = True,
    grid_refine: int = 2,
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
    rmax = math.sqrt(float(t2[-1])) * (1.0 + 1e-5) + 1e-6  # margin: float32 d2 may round down
    xy64 = xy32.astype(np.float64)
    grid = build_grid(xy64, rmax / max(1, int(grid_refine)))
    m = max(1, int(math.ceil(rmax / grid.cell)))
    n_chunks = max(1, min(8 * numba.get_num_threads(), n // 256 + 1))
    hist = _cooc_kernel(
        xy32[grid.order, 0].copy(), xy32[grid.order, 1].copy(), labels[grid.order].copy(), t2,
        grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, m, K, n_chunks,
    )
    h = hist.sum(axis=0)
    h = h + h.transpose(1, 0, 2)  # ordered pairs (i, j) and (j, i)
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
