"""A row append after a segmentation commit without AnnData's check of every obs name (issue 14):
the table is exactly the one the checked path and ``anndata.concat`` give."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.editing.seg_table import append_rows, new_names_unique


def _base(n=60):
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), "area": rng.integers(5, 50, n),
                        "ecc": rng.random(n), "flag": rng.random(n) > 0.5, "note": ["x"] * n,
                        "cell_type": pd.Categorical(rng.choice(["a", "b"], n))},
                       index=[f"c{i}" for i in range(1, n + 1)])
    t = ad.AnnData(X=rng.random((n, 3)).astype(np.float32), obs=obs,
                   obsm={"spatial": rng.random((n, 2)), "bbox": rng.integers(0, 9, (n, 4))},
                   layers={"raw": rng.random((n, 3))}, uns={"cell_type_colors": np.array(["#ff0000", "#00ff00"]),
                                                          "carspatial": {"stale": True}})
    return t


def _rows(names, t):
    k = len(names)
    new = pd.DataFrame({"cell_id": np.arange(100, 100 + k), "area": np.full(k, 3.5), "ecc": np.full(k, 0.1),
                        "flag": np.zeros(k, bool), "note": [""] * k,
                        "cell_type": pd.Categorical(["a"] * k, categories=["a", "b"])}, index=names)
    return ad.AnnData(X=np.ones((k, 3), np.float32), obs=new, var=t.var.copy(),
                      obsm={"spatial": np.zeros((k, 2)), "bbox": np.ones((k, 4), np.int64)},
                      layers={"raw": np.zeros((k, 3))})


def _assert_same(a, b):
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.obs.columns) == list(b.obs.columns)
    for c in a.obs.columns:
        assert a.obs[c].dtype == b.obs[c].dtype, c
        pd.testing.assert_series_equal(a.obs[c], b.obs[c])
    pd.testing.assert_frame_equal(a.var, b.var)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.dtype == b.X.dtype
    for m in ("obsm", "layers"):
        assert set(getattr(a, m).keys()) == set(getattr(b, m).keys())
        for k in getattr(a, m):
            x, y = np.asarray(getattr(a, m)[k]), np.asarray(getattr(b, m)[k])
            assert x.dtype == y.dtype, k
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("remove", [False, True])
def test_fast_append_equals_checked_path_and_anndata_concat(remove):
    keep = None
    if remove:
        keep = np.ones(60, bool)
        keep[[0, 7, 59]] = False
    t_fast, t_slow = _base(), _base()
    rows = _rows(["c100", "c101"], t_fast)
    assert new_names_unique(t_fast, rows, keep)
    fast = append_rows(t_fast, rows, keep=keep, names_unique=True)
    slow = append_rows(t_slow, _rows(["c100", "c101"], t_slow), keep=keep, names_unique=False)
    _assert_same(fast, slow)
    assert fast.uns.keys() == slow.uns.keys() == t_fast.uns.keys()
    np.testing.assert_array_equal(fast.uns["cell_type_colors"], slow.uns["cell_type_colors"])
    assert fast.uns["carspatial"] == slow.uns["carspatial"]
    # the reference: AnnData's own subsetting and concatenation (which drops uns, as documented)
    ref = ad.concat([_base()[keep if keep is not None else slice(None)], _rows(["c100", "c101"], t_fast)],
                    merge="same")
    _assert_same(fast, ref)
    assert fast.obs_names.is_unique


def test_names_clashing_with_a_kept_row_are_not_taken_as_unique():
    t = _base()
    keep = np.ones(60, bool)
    keep[4] = False                                    # "c5" is dropped: its name is free again
    assert new_names_unique(t, _rows(["c5", "c100"], t), keep)
    assert not new_names_unique(t, _rows(["c6", "c100"], t), keep)   # a kept row's name
    assert not new_names_unique(t, _rows(["c100", "c100"], t), keep)  # twice among the new rows
    # not checked: AnnData checks and warns, as before
    with pytest.warns(UserWarning, match="not unique"):
        out = append_rows(t, _rows(["c6", "c100"], t), names_unique=False)
    assert not out.obs_names.is_unique
