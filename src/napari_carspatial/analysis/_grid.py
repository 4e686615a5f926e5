"""Uniform-grid ("cell list") spatial index shared by the radius graph and co-occurrence.

Points are bucketed into square grid cells of side ``cell``; a query of radius ``r`` scans the
``(2 m + 1)^2`` cells around a point with ``m = ceil(r / cell)``. Everything is numba-compiled
and parallel over points; no Python loop touches individual cells or points.
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
    ix, iy
        Cell column / row of every point (original order).
    nx, ny
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


@numba.njit(parallel=True, cache=True)
def _radius_count(x, y, order, cell_start, ix, iy, nx, ny, m, r2):  # pragma: no cover - numba
    n = x.shape[0]
    counts = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        cx, cy = ix[i], iy[i]
        c = 0
        for gy in range(max(cy - m, 0), min(cy + m, ny - 1) + 1):
            for gx in range(max(cx - m, 0), min(cx + m, nx - 1) + 1):
                g = gy * nx + gx
                for p in range(cell_start[g], cell_start[g + 1]):
                    j = order[p]
                    if j == i:
                        continue
                    dx = x[i] - x[j]
                    dy = y[i] - y[j]
                    if dx * dx + dy * dy <= r2:
                        c += 1
        counts[i] = c
    return counts


@numba.njit(parallel=True, cache=True)
def _radius_fill(x, y, order, cell_start, ix, iy, nx, ny, m, r2, indptr):  # pragma: no cover
    n = x.shape[0]
    nnz = indptr[n]
    indices = np.empty(nnz, dtype=np.int64)
    dist = np.empty(nnz, dtype=np.float64)
    for i in numba.prange(n):
        cx, cy = ix[i], iy[i]
        k = indptr[i]
        for gy in range(max(cy - m, 0), min(cy + m, ny - 1) + 1):
            for gx in range(max(cx - m, 0), min(cx + m, nx - 1) + 1):
                g = gy * nx + gx
                for p in range(cell_start[g], cell_start[g + 1]):
                    j = order[p]
                    if j == i:
                        continue
                    dx = x[i] - x[j]
                    dy = y[i] - y[j]
                    d2 = dx * dx + dy * dy
                    if d2 <= r2:
                        indices[k] = j
                        dist[k] = math.sqrt(d2)
                        k += 1
        # sort the row by column index (canonical CSR)
        s, e = indptr[i], indptr[i + 1]
        if e - s > 1:
            o = np.argsort(indices[s:e])
            indices[s:e] = indices[s:e][o]
            dist[s:e] = dist[s:e][o]
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
    counts = _radius_count(x, y, grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, m, r2)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices, dist = _radius_fill(
        x, y, grid.order, grid.cell_start, grid.ix, grid.iy, grid.nx, grid.ny, m, r2, indptr
    )
    return indptr, indices, dist
