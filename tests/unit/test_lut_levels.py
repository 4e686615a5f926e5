"""Lazy display levels (LutLevel) against the dask reference (codes_pyramid) on the same labels:
every level, slices napari asks for (corners, steps, integers, beyond the edge), filled and
outline, integer and float luts; a new lut or the outline flag shows at the next slice; the
label tiles are read once."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_carspatial._napari.lut import (
    LutLevel,
    LutState,
    TileCache,
    category_lut,
    codes_pyramid,
    label_lut,
    lut_pyramid,
)

KEYS = [
    (slice(None), slice(None)),
    (slice(10, 100), slice(3, 250)),
    (slice(0, 5), slice(0, None)),
    (5, slice(2, 9)),
    (slice(None, None, 3), slice(1, None, 2)),
    (Ellipsis,),
    (slice(290, 400), slice(200, 300)),
    (slice(-20, None), slice(-7, -1)),
    (17, 33),
]


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 5000), size=60, replace=False)
    coarse = ids[rng.integers(0, 60, size=(80, 70))]
    coarse[rng.random(coarse.shape) < 0.2] = 0
    lab = np.repeat(np.repeat(coarse, 4, 0), 4, 1)[:301, :257].astype(np.uint32)
    return lab, np.unique(lab[lab > 0])


@pytest.mark.parametrize("outline_only", [False, True])
@pytest.mark.parametrize("kind", ["codes", "float"])
def test_levels_equal_the_dask_reference(outline_only, kind):
    lab, ids = _labels()
    levels = [da.from_array(lab, chunks=64), da.from_array(lab[::2, ::2], chunks=50), lab[::4, ::4]]
    rng = np.random.default_rng(1)
    if kind == "codes":
        lut = category_lut(ids, rng.integers(-1, 6, ids.size))
    else:
        vals = rng.normal(size=ids.size).astype(np.float32)
        vals[::7] = np.nan
        lut = label_lut(ids, vals, fill=np.nan, dtype=np.float32)
    ref = [np.asarray(x) for x in codes_pyramid(levels, lut, outline_only=outline_only)]
    ours = lut_pyramid(levels, LutState(lut, outline_only=outline_only))
    for r, o in zip(ref, ours, strict=True):
        assert o.shape == r.shape and o.dtype == r.dtype and o.ndim == 2 and o.size == r.size
        np.testing.assert_array_equal(np.asarray(o), r)
        for key in KEYS:
            try:
                want = r[key]
            except IndexError:
                with pytest.raises(IndexError):
                    o[key]
                continue
            got = o[key]
            assert got.shape == want.shape, key
            np.testing.assert_array_equal(got, want)


def test_a_new_lut_and_the_outline_flag_show_at_the_next_slice_without_reading_labels_again():
    lab, ids = _labels(2)
    reads = []

    class Counting(np.ndarray):
        def __getitem__(self, key):
            reads.append(key)
            return np.asarray(super().__getitem__(key))

    level = lab.view(Counting)
    state = LutState(category_lut(ids, np.zeros(ids.size, int)))
    cache = TileCache()
    lvl = LutLevel(level, state, cache)
    key = (slice(20, 120), slice(30, 200))
    a = lvl[key]
    n_reads = len(reads)
    assert set(np.unique(a)) <= {0, 1}
    state.set(category_lut(ids, np.ones(ids.size, int)))
    b = lvl[key]
    assert set(np.unique(b)) <= {0, 2} and (b[a == 1] == 2).all()
    assert len(reads) == n_reads          # the labels tile came from the cache
    state.set(outline_only=True)
    c = lvl[key]
    ref = np.asarray(codes_pyramid([lab], state.lut, outline_only=True)[0])[key]
    np.testing.assert_array_equal(c, ref)
    assert state.version == 2 and cache.hits >= 1


def test_tile_cache_is_bounded():
    cache = TileCache(max_bytes=10_000, max_tiles=3)
    lab = np.zeros((100, 100), np.uint32)
    for k in range(6):
        cache.get(lab, ((k, k + 10), (0, 100)))
    assert len(cache._tiles) <= 2          # 4 kB per tile, 10 kB at most
