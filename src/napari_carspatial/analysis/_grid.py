"""Uniform-grid ("cell list") spatial index shared by the radius graph, the kNN graph and co-occurrence.

Points are bucketed into square grid cells of side ``cell``; a query of radius ``r`` scans the
``(2 m + 1)^2`` cells around a point with ``m = ceil(r / cell)``, a nearest-point search scans
square rings of cells outwards. Everything is numba-compiled and parallel over points; no Python
loop touches individual cells or points. The scan helpers (:func:`row_span`, :func:`ring_span`,
:func:`cell_of`) also serve the Ripley kernels (``_ppatterns_kernels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class Grid:
    """Points sorted by grid cell.

    Attributes
    ----------
    order
        Permutation sorting the points by cell id (``xy[order]`` is cell-sorted).
    cell_start
        ``(n_cells + 1,)`` offsets into ``order`` of each cell (row-major, ``iy * nx + ix``).
    ix
        Cell column / row of every point (original order).
    iy
        Cell column / row of every point (original order).
    nx
        Grid shape.
    ny
        Grid shape.
    cell
        Cell side length (coordinate units).
    origin
        ``(xmin, ymin)`` of the grid.
    """

    order: np.ndarray
    cell_start: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    nx: int
    ny: int
    cell: float
    origin: tuple[float, float]


def build_grid(xy: np.ndarray, cell: float, *, max_cells_per_point: float = 4.0) -> Grid:
    """Bucket ``xy`` (n, 2) into a grid of side ``cell`` (enlarged if it would have too many cells)."""
    n = xy.shape[0]
    if n == 0:
        return Grid(np.zeros(0, np.int64), np.zeros(2, np.int64), np.zeros(0, np.int64),
                    np.zeros(0, np.int64), 1, 1, 1.0, (0.0, 0.0))
    xmin, ymin = float(xy[:, 0].min()), float(xy[:, 1].min())
    xmax, ymax = float(xy[:, 0].max()), float(xy[:, 1].max())
    span_x, span_y = max(xmax - xmin, 0.0), max(ymax - ymin, 0.0)
    cell = float(cell)
    if not math.isfinite(cell) or cell <= 0:
        cell = max(span_x, span_y, 1.0)
    # cap the number of cells (memory of cell_start) at a few per point
    max_cells = max_cells_per_point * n + 16
    while (math.floor(span_x / cell) + 1) * (math.floor(span_y / cell) + 1) > max_cells:
        cell *= 2.0
    nx = int(math.floor(span_x / cell)) + 1
    ny = int(math.floor(span_y / cell)) + 1
    ix = np.minimum(((xy[:, 0] - xmin) / cell).astype(np.int64), nx - 1)
    iy = np.minimum(((xy[:, 1] - ymin) / cell).astype(np.int64), ny - 1)
    cid = iy * nx + ix
    order = np.argsort(cid, kind="stable")
    counts = np.bincount(cid, minlength=nx * ny)
    cell_start = np.zeros(nx * ny + 1, dtype=np.int64)
    np.cumsum(counts, out=cell_start[1:])
    return Grid(order, cell_start, ix, iy, nx, ny, cell, (xmin, ymin))


def n_rings(radius: float, cell: float) -> int:
    """Number of cell rings to scan so that every point within ``radius`` is visited."""
    return max(1, int(math.ceil(radius / cell)))


# Scanning a cell-sorted grid (``cell_start`` of :class:`Grid`, or the counting sort of
# ``_ppatterns_kernels``): the cells of one grid row are contiguous in cell order, so the points
# of a run of cells in a row are one range of positions. Inlined into the numba kernels.


@numba.njit(cache=True, nogil=True, inline="always")
def cell_of(v, v0, cell, n):  # pragma: no cover - numba
    """Grid column (or row) of coordinate ``v``, clipped to ``0 .. n - 1``."""
    return min(max(int((v - v0) / cell), 0), n - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def row_span(cell_start, nx, gy, gx0, gx1):  # pragma: no cover - numba
    """Positions ``p0 .. p1 - 1`` (cell order) of the points in cells ``gx0 .. gx1`` of row ``gy``,
    the columns clipped to the grid (empty when none is inside)."""
    a = max(gx0, 0)
    b = min(gx1, nx - 1)
    if a > b:
        return 0, 0
    return cell_start[gy * nx + a], cell_start[gy * nx + b + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def ring_span(cell_start, nx, ny, cx, cy, r, t):  # pragma: no cover - numba
    """Run ``t`` (``0 <= t < 4 r + 2``) of the points of ring ``r`` around cell ``(cx, cy)``: the cells
    at Chebyshev cell distance ``r``, row by row (``cy - r + t // 2``). The first and last rows of
    the ring are whole (even ``t``; odd ``t`` is empty), the rows between hold two cells, at
    ``cx - r`` (even ``t``) and ``cx + r`` (odd ``t``). Positions ``p0 .. p1 - 1`` in cell order;
    visiting the runs in order of ``t`` visits the ring's points in cell order."""
    gy = cy - r + (t >> 1)
    if gy < 0 or gy >= ny:
        return 0, 0
    if gy == cy - r or gy == cy + r:
        if t & 1:
            return 0, 0
        return row_span(cell_start, nx, gy, cx - r, cx + r)
    gx = cx + r if t & 1 else cx - r
    return row_span(cell_start, nx, gy, gx, gx)


@numba.njit(parallel=True, cache=True)
def _radius_count(xs, ys, order, cell_start, ix, iy, nx, ny, m, r2):  # pragma: no cover - numba
    # points visited in cell order (xs[pos] is point order[pos]): neighbouring cells stay in cache
    n = xs.shape[0]
    counts = np.zeros(n, dtype=np.int64)
    for pos in numba.prange(n):
        i = order[pos]
        cx, cy = ix[i], iy[i]
        xi = xs[pos]
        yi = ys[pos]
        c = 0
        for gy in range(max(cy - m, 0), min(cy + m, ny - 1) + 1):
            a, e = row_span(cell_start, nx, gy, cx - m, cx + m)
            for p in range(a, e):
                dx = xi - xs[p]
                dy = yi - ys[p]
                if dx * dx + dy * dy <= r2:
                    c += 1
        counts[i] = c - 1  # the point itself
    return counts


@numba.njit(parallel=True, cache=True)
def _radius_fill(xs, ys, order, cell_start, ix, iy, nx, ny, m, r2, indptr):  # pragma: no cover
    n = xs.shape[0]
    nnz = indptr[n]
    indices = np.empty(nnz, dtype=np.int64)
    dist = np.empty(nnz, dtype=np.float64)
    for pos in numba.prange(n):
        i = order[pos]
        cx, cy = ix[i], iy[i]
        xi = xs[pos]
        yi = ys[pos]
        s = indptr[i]
        k = s
        for gy in range(max(cy - m, 0), min(cy + m, ny - 1) + 1):
            a, e = row_span(cell_start, nx, gy, cx - m, cx + m)
            for p in range(a, e):
                dx = xi - xs[p]
                dy = yi - ys[p]
                d2 = dx * dx + dy * dy
                if d2 <= r2 and p != pos:
                    indices[k] = order[p]
                    dist[k] = math.sqrt(d2)
                    k += 1
        # canonical CSR: insertion sort of the (short) row by column index
        for q in range(s + 1, k):
            vi = indices[q]
            vd = dist[q]
            t = q - 1
            while t >= s and indices[t] > vi:
                indices[t + 1] = indices[t]
                dist[t + 1] = dist[t]
                t -= 1
            indices[t + 1] = vi
            dist[t + 1] = vd
    return indices, dist


def radius_pairs_csr(xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs ``i != j`` with ``|xi - xj|^2 <= radius^2`` as CSR (indptr, indices, dist).

    The comparison is on squared float64 distances, exactly as scikit-learn's ``KDTree``
    (which squidpy uses) does it, so boundary cases agree.
    """
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    n = xy.shape[0]
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    grid = build_grid(xy, radius)
    m = n_rings(radius, grid.cell)
    x = np.ascontiguousarray(xy[:, 0])
    y = np.ascontiguousarray(xy[:, 1])
    r2 = float(radius) * float(radius)
    xs = x[grid.order]
    ys = y[grid.order]
    counts = _radius_count(xs, ys, grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, m, r2)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices, dist = _radius_fill(xs, ys, grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, m, r2,
                                 indptr)
    return indptr, indices, dist


@numba.njit(parallel=True, cache=True)
def _knn_kernel(xs, ys, order, cell_start, ix, iy, nx, ny, cell, k):  # pragma: no cover - numba
    # xs, ys: coordinates in cell order (xs[p] is point order[p]); loop in cell order (locality)
    n = xs.shape[0]
    out_i = np.empty((n, k), dtype=np.int64)
    out_d = np.empty((n, k), dtype=np.float64)
    max_ring = max(nx, ny)
    for pos in numba.prange(n):
        i = order[pos]
        xi = xs[pos]
        yi = ys[pos]
        bd = np.full(k, np.inf)  # sorted squared distances of the best k so far
        bi = np.full(k, -1, dtype=np.int64)
        cx, cy = ix[i], iy[i]
        for r in range(max_ring + 1):  # the square rings of cells around point i's cell
            for t in range(4 * r + 2):
                p0, p1 = ring_span(cell_start, nx, ny, cx, cy, r, t)
                for p in range(p0, p1):
                    if p == pos:
                        continue
                    j = order[p]
                    dx = xi - xs[p]
                    dy = yi - ys[p]
                    d2 = dx * dx + dy * dy
                    if d2 < bd[k - 1] or (d2 == bd[k - 1] and j < bi[k - 1]):
                        q = k - 1
                        while q > 0 and (bd[q - 1] > d2 or (bd[q - 1] == d2 and bi[q - 1] > j)):
                            bd[q] = bd[q - 1]
                            bi[q] = bi[q - 1]
                            q -= 1
                        bd[q] = d2
                        bi[q] = j
            # everything not yet visited is farther than r * cell from point i
            lim = r * cell
            if bi[k - 1] >= 0 and bd[k - 1] < lim * lim:
                break
        for q in range(k):
            out_i[i, q] = bi[q]
            out_d[i, q] = math.sqrt(bd[q])
    return out_i, out_d


def knn_grid(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)`` of the ``k`` nearest other points of every point, ``(n, k)``.

    Ties at equal distance are broken by the smaller index.
    """
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    n = xy.shape[0]
    span = max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 1e-12)
    # about 3 points per cell for a uniform layout
    cell = span / max(1.0, math.sqrt(n / 3.0))
    grid = build_grid(xy, cell)
    xs = xy[grid.order, 0].copy()
    ys = xy[grid.order, 1].copy()
    return _knn_kernel(xs, ys, grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, grid.cell, int(k))
