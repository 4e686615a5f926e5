"""The demo's tiled, compressed mask equals the whole-slide rasteriser, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.datasets import _cells
from napari_carspatial.datasets._layout import make_layout
from napari_carspatial.datasets._tiles import TileStore


def _cells_for(H, W, ps=0.5, seed=0):
    lay = make_layout(np.random.default_rng([seed, 1]), H * ps, W * ps)
    pts = _cells.lattice(H, W, ps, np.random.default_rng([seed, 2]))
    p = _cells.keep_probability(lay, pts[:, 0] * ps, pts[:, 1] * ps)
    pts = pts[np.random.default_rng([seed, 3]).random(len(p)) < p]
    types, _ = _cells.assign_types(lay, pts, ps, "post", np.random.default_rng([seed, 4, 1]))
    shp = _cells.cell_shapes(types, lay, pts, ps, np.random.default_rng([seed, 5, 1]))
    return pts, shp


@pytest.mark.parametrize("chunk", [128, 200, 256])
def test_tiled_mask_equals_whole_slide(chunk):
    H, W = 700, 530
    pts, shp = _cells_for(H, W)
    lab, nuc, cnt, ncnt, my, mx = _cells.rasterize((H, W), pts, shp)
    n = len(pts)
    lut = np.zeros(n + 1, np.uint32)
    lut[1:] = np.random.default_rng(7).choice(np.arange(1, 2 * n), n, replace=False)
    levels, nuc_t, cnt_t, ncnt_t, my_t, mx_t = _cells.rasterize_tiled((H, W), pts, shp, lut, chunk=chunk,
                                                                         keep_nuc=True, workers=2)
    ids = lut[lab]
    np.testing.assert_array_equal(np.asarray(levels[1]), ids)
    np.testing.assert_array_equal(np.asarray(nuc_t), nuc)
    for f, store in levels.items():
        np.testing.assert_array_equal(np.asarray(store.dask()), ids[::f, ::f])
    np.testing.assert_array_equal(cnt_t, cnt)
    np.testing.assert_array_equal(ncnt_t, ncnt)
    np.testing.assert_array_equal(my_t, my)
    np.testing.assert_array_equal(mx_t, mx)


def test_tile_store_windows():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (300, 410)).astype(np.uint32)
    st = TileStore(a.shape, a.dtype, 128)
    for ty in range(st.ny):
        for tx in range(st.nx):
            st.put(ty, tx, a[ty * 128:(ty + 1) * 128, tx * 128:(tx + 1) * 128])
    st.cache_tiles = 2  # force evictions
    for y0, y1, x0, x1 in [(0, 300, 0, 410), (5, 140, 120, 260), (127, 129, 255, 257), (299, 300, 0, 1)]:
        np.testing.assert_array_equal(st[y0:y1, x0:x1], a[y0:y1, x0:x1])
    np.testing.assert_array_equal(st[::3, 1::2], a[::3, 1::2])
    np.testing.assert_array_equal(st.dask()[10:200, 50:400].compute(), a[10:200, 50:400])
    assert st.nbytes_compressed < a.nbytes
    with pytest.raises(ValueError, match="shape"):
        st.put(0, 0, a[:10, :10])
