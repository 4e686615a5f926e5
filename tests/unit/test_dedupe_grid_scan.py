"""The grid scan helpers shared by the kNN / radius graphs and the Ripley kernels (analysis._grid)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.analysis._grid import build_grid, cell_of, ring_span, row_span


def _grid(seed=0, n=400):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * [90.0, 50.0]
    g = build_grid(xy, 7.0)
    assert g.nx > 3 and g.ny > 3
    return xy, g


def _cells_of_positions(g, positions):
    """(column, row) of the points at cell-order positions."""
    pts = g.order[np.asarray(positions, np.int64)]
    return np.column_stack([g.ix[pts], g.iy[pts]])


@pytest.mark.parametrize("center", [(0, 0), (5, 3), (12, 7), (3, 6)])
def test_rings_cover_each_cell_once_in_cell_order(center):
    _, g = _grid()
    cx, cy = min(center[0], g.nx - 1), min(center[1], g.ny - 1)
    seen = []
    for r in range(max(g.nx, g.ny) + 1):
        ring = []
        for t in range(4 * r + 2):
            p0, p1 = ring_span(g.cell_start, g.nx, g.ny, cx, cy, r, t)
            ring.extend(range(p0, p1))
        assert ring == sorted(ring)  # a ring's points come in cell order
        cells = _cells_of_positions(g, ring).reshape(-1, 2)
        cheb = np.maximum(np.abs(cells[:, 0] - cx), np.abs(cells[:, 1] - cy))
        assert np.all(cheb == r)  # only the cells of ring r
        seen.extend(ring)
    assert sorted(seen) == list(range(len(g.order)))  # every point exactly once


def test_row_span_clips_to_the_grid():
    _, g = _grid(1)
    gy = g.ny // 2
    p0, p1 = row_span(g.cell_start, g.nx, gy, -5, g.nx + 5)
    assert (p0, p1) == (g.cell_start[gy * g.nx], g.cell_start[(gy + 1) * g.nx])
    assert row_span(g.cell_start, g.nx, 0, -3, -1) == (0, 0)  # left of the grid: empty
    assert row_span(g.cell_start, g.nx, g.ny - 1, g.nx, g.nx + 2) == (0, 0)  # right of it
    assert cell_of(-1.0, 0.0, 7.0, g.nx) == 0 and cell_of(1e9, 0.0, 7.0, g.nx) == g.nx - 1
