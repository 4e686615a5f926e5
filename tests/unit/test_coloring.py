"""Headless core of the cell colouring: luts, tile mapping, outlines, colours, counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari.coloring import (
    category_colors,
    category_lut,
    codes_pyramid,
    column_choices,
    counts_by_code,
    default_colors,
    in_polygon,
    label_lut,
    map_labels,
    numeric_values,
    outline,
)


def _random_labels(rng, shape, ids):
    """A label image whose pixels are drawn from ``ids`` and background 0 (in 2x2 blocks)."""
    pool = np.concatenate([[0], ids])
    small = rng.choice(pool, size=(shape[0] // 2, shape[1] // 2))
    return np.kron(small, np.ones((2, 2), dtype=small.dtype))


def _naive(tile, ids, values, fill):
    d = {int(i): v for i, v in zip(ids, values, strict=False)}
    out = np.empty(tile.shape, dtype=np.asarray(values).dtype)
    for idx, lab in np.ndenumerate(tile):
        out[idx] = d.get(int(lab), fill) if lab != 0 else fill
    return out


@pytest.mark.parametrize("max_id", [500, 2**40])
def test_category_lut_equals_naive_per_cell_mapping(max_id):
    rng = np.random.default_rng(1)
    ids = rng.choice(np.arange(1, max_id, max(1, max_id // 10_000)), size=300, replace=False).astype(np.int64)
    codes = rng.integers(-1, 7, size=ids.size)                     # -1 = missing
    extra = np.array([max_id + 5, 3 * max_id + 1], dtype=np.int64)  # ids in the mask, not in the table
    tile = _random_labels(rng, (40, 60), np.concatenate([ids, extra]))
    lut = category_lut(ids, codes)
    assert (lut.dense is None) == (max_id > 2**30)                 # huge ids: sorted search, no dense array
    got = map_labels(tile, lut)
    want = _naive(tile, ids, (codes + 1).astype(np.uint8), 0)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.uint8


def test_float_lut_nan_background_and_forced_sparse():
    rng = np.random.default_rng(2)
    ids = np.array([3, 10, 11, 400], dtype=np.int64)
    vals = np.array([0.5, 1.5, np.nan, 7.0], dtype=np.float32)
    tile = _random_labels(rng, (20, 20), np.array([3, 10, 11, 400, 999]))
    for kw in ({}, {"dense_max_id": 10}):
        lut = label_lut(ids, vals, fill=np.nan, dtype=np.float32, **kw)
        got = map_labels(tile, lut)
        want = _naive(tile, ids, vals, np.float32(np.nan))
        np.testing.assert_array_equal(got, want)  # NaN == NaN for assert_array_equal


def test_map_labels_plain_array_and_empty():
    lut = np.array([0, 5, 6], dtype=np.uint8)
    np.testing.assert_array_equal(map_labels(np.array([[0, 1, 2, 9]]), lut), [[0, 5, 6, 0]])
    assert map_labels(np.zeros((0, 3), np.uint32), lut).shape == (0, 3)


def test_outline_marks_exactly_the_boundary_pixels():
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(3)
    lab = _random_labels(rng, (50, 70), np.array([7, 8, 9, 12345]))
    lab[10:30, 10:40] = 77                                            # one big cell with an interior
    got = outline(lab)
    np.testing.assert_array_equal(got, find_boundaries(lab, mode="inner", connectivity=1))
    assert got[10, 20]
    assert got[29, 20]
    assert got[20, 10]
    assert got[20, 39]   # its four sides
    assert not got[20, 20]                                           # interior not outlined
    assert not got[lab == 0].any()                                   # background never


def test_outline_pyramid_is_exact_across_tiles_and_at_the_border():
    import dask.array as da

    rng = np.random.default_rng(4)
    lab = _random_labels(rng, (64, 96), np.array([1, 2, 3, 500]))
    ids = np.array([1, 2, 3, 500])
    lut = category_lut(ids, np.array([0, 1, 2, 3]))
    lvl = da.from_array(lab, chunks=(16, 24))
    got = np.asarray(codes_pyramid([lvl], lut, outline_only=True)[0])
    padded = np.pad(lab, 1)                                          # the image border is a boundary
    edge = outline(padded)[1:-1, 1:-1]
    np.testing.assert_array_equal(got, np.where(edge, map_labels(lab, lut), 0))
    filled = np.asarray(codes_pyramid([lvl], lut)[0])
    np.testing.assert_array_equal(filled, map_labels(lab, lut))


def test_codes_pyramid_is_lazy():
    import dask.array as da

    def boom(block):
        raise AssertionError("a tile was computed")

    lvl = da.zeros((4096, 4096), chunks=1024, dtype=np.uint32).map_blocks(boom, dtype=np.uint32)
    pyr = codes_pyramid([lvl, lvl[::2, ::2]], category_lut(np.array([1]), np.array([0])), outline_only=True)
    assert [p.shape for p in pyr] == [(4096, 4096), (2048, 2048)]
    assert pyr[0].dtype == np.uint8


def _table():
    import anndata as ad

    obs = pd.DataFrame({
        "cell_id": [5, 9, 11, 20],
        "cell_type": pd.Categorical(["CAR T", "Tumor", "Tumor", "Stroma"], categories=["Tumor", "CAR T", "Stroma"]),
        "gate": [True, False, True, False],
        "area": [10.0, 20.0, 30.0, np.nan],
    }, index=list("abcd"))
    t = ad.AnnData(X=np.arange(8, dtype=np.float32).reshape(4, 2), obs=obs)
    t.var_names = ["CD3", "CAR"]
    return t


def test_column_choices_and_values():
    t = _table()
    ch = column_choices(t)
    assert ch["categorical"] == ["cell_type", "gate"]
    assert ch["numeric"] == ["area"]                                  # the id column is not offered
    assert ch["markers"] == ["CD3", "CAR"]
    np.testing.assert_array_equal(numeric_values(t, "CAR"), [1, 3, 5, 7])
    assert np.isnan(numeric_values(t, "area")[3])
    with pytest.raises(KeyError):
        numeric_values(t, "nope")


def test_colors_stored_scanpy_style_and_reused():
    t = _table()
    cols = category_colors(t, "cell_type")
    assert list(t.uns["cell_type_colors"]) == cols
    assert len(cols) == 3
    from napari_carspatial.model.palette import semantic_color

    assert cols[1] == semantic_color("CAR T")                         # CAR T gets the loud colour
    assert len(set(cols)) == 3
    t.uns["cell_type_colors"] = ["red", "#00ff00", "blue"]            # valid user colours are kept
    assert category_colors(t, "cell_type") == ["#ff0000", "#00ff00", "#0000ff"]
    t.uns["cell_type_colors"] = ["red"]                               # wrong length: replaced
    assert len(category_colors(t, "cell_type")) == 3
    many = default_colors([f"cluster {i}" for i in range(60)])
    assert len(set(many)) == 60


def test_counts_and_polygon():
    codes = np.array([0, 1, 1, -1, 2, 2, 2])
    np.testing.assert_array_equal(counts_by_code(codes, 3), [1, 2, 3])
    np.testing.assert_array_equal(counts_by_code(codes, 3, codes != 2), [1, 2, 0])
    yx = np.array([[1, 1], [5, 5], [9, 9], [5, 1]], dtype=float)
    tri = np.array([[0, 0], [10, 0], [10, 10]], dtype=float)         # (y, x): lower-left triangle
    np.testing.assert_array_equal(in_polygon(yx, tri), [False, False, False, True])
