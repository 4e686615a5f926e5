"""Co-occurrence: identical to ``squidpy.gr.co_occurrence`` (to 1e-6) for the same intervals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_carspatial.analysis import co_occurrence
from napari_carspatial.model.conventions import set_pixel_size_um

anndata = pytest.importorskip("anndata")
TOL = 1e-6


@pytest.fixture(scope="module")
def sq():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("squidpy")


def _table(xy, labels, categories=None):
    return anndata.AnnData(
        obs=pd.DataFrame({"ct": pd.Categorical(labels, categories=categories)},
                         index=[f"c{i}" for i in range(len(labels))]),
        obsm={"spatial": np.asarray(xy, dtype=np.float64)},
    )


def _squidpy(sq, a, interval):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sq.gr.co_occurrence(a, cluster_key="ct", interval=interval, copy=True)


def _check(sq, a, interval):
    occ_sq, iv_sq = _squidpy(sq, a, interval)
    res = co_occurrence(a, cluster_key="ct", interval=interval)
    np.testing.assert_array_equal(res.interval_px, iv_sq)
    assert res.occ.shape == occ_sq.shape
    np.testing.assert_allclose(res.occ, occ_sq, rtol=0, atol=TOL)
    return res


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 600), n_types=st.integers(2, 5),
       integer_coords=st.booleans(), rmax=st.floats(5.0, 400.0), n_thr=st.integers(2, 12))
def test_equal_squidpy_random(sq, seed, n, n_types, integer_coords, rmax, n_thr):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    if integer_coords:  # exact ties on thresholds: float32 comparison must match squidpy's
        xy = np.round(xy)
    lab = rng.integers(0, n_types, n)
    lab[:n_types] = np.arange(n_types)  # every category present (squidpy needs that)
    a = _table(xy, np.array([f"t{i}" for i in lab]))
    thr = np.sort(rng.uniform(0, rmax, n_thr))
    if integer_coords:
        thr = np.round(thr)
    _check(sq, a, thr)


def test_default_int_interval(sq):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (800, 2))
    a = _table(xy, rng.choice(["a", "b", "c"], 800))
    res = _check(sq, a, 10)
    assert res.occ.shape == (3, 3, 9)


def test_equal_squidpy_demo(sq):
    from napari_carspatial.datasets import demo
    t = demo.demo_sample(n_cells=3000, image=False, seed=3).table
    t.obs["ct"] = t.obs["cell_type"]
    t.obs["ct"] = t.obs["ct"].cat.remove_unused_categories()
    px = t.uns["carspatial"]["pixel_size_um"]
    thr_um = np.linspace(0, 150, 16)  # 0..150 µm
    occ_sq, _ = _squidpy(sq, t, (thr_um / px).astype(np.float32))  # squidpy works in pixels
    res = co_occurrence(t, cluster_key="ct", interval=thr_um)  # we take µm (pixel size in uns)
    np.testing.assert_allclose(res.interval, thr_um)
    np.testing.assert_allclose(res.occ, occ_sq, rtol=0, atol=TOL)
    # copy=False stores squidpy's keys, interval in pixels
    co_occurrence(t, cluster_key="ct", interval=thr_um, copy=False)
    np.testing.assert_allclose(t.uns["ct_co_occurrence"]["occ"], occ_sq, atol=TOL)
    np.testing.assert_allclose(t.uns["ct_co_occurrence"]["interval"], thr_um / px, rtol=1e-6)


def test_equal_squidpy_real(sq, cytomapper_dir):
    df = pd.read_csv(cytomapper_dir / "cells.csv")
    for _, sub in df.groupby("ImageName"):
        a = _table(sub[["Pos_X", "Pos_Y"]].to_numpy(), sub["CellType"].to_numpy())
        a.obs["ct"] = a.obs["ct"].cat.remove_unused_categories()
        _check(sq, a, np.linspace(0, 60, 13))
        _check(sq, a, 20)


def test_edge_cases(sq):
    rng = np.random.default_rng(4)
    n = 300
    xy = rng.uniform(0, 200, (n, 2))
    lab = rng.choice(["a", "b"], n).astype(object)
    lab[5] = "single"
    thr = np.linspace(0, 50, 6)
    a = _table(xy, lab)
    _check(sq, a, thr)  # a type with one cell
    # isolated cells far away: they only dilute p(type) at large thresholds
    xy2 = np.vstack([xy, rng.uniform(10_000, 20_000, (10, 2))])
    b = _table(xy2, np.concatenate([lab, ["a"] * 10]))
    _check(sq, b, thr)
    # one type: occ == 1 wherever there is a pair
    c = _table(xy, ["a"] * n)
    r1 = _check(sq, c, thr)
    assert np.allclose(r1.occ[0, 0][r1.counts[0, 0] > 0], 1.0)
    # unused category: squidpy sizes by the categories present (and mis-indexes otherwise);
    # we keep every category and give the unused one zeros
    d = _table(xy, lab, categories=["a", "absent", "b", "single"])
    res = co_occurrence(d, cluster_key="ct", interval=thr)
    assert res.occ.shape == (4, 4, 5)
    assert np.all(res.occ[1] == 0) and np.all(res.occ[:, 1] == 0)
    ref = co_occurrence(a, cluster_key="ct", interval=thr)  # categories a, b, single
    np.testing.assert_allclose(res.occ[np.ix_([0, 2, 3], [0, 2, 3])], ref.occ, atol=1e-12)
    # pixel-size conversion and errors
    set_pixel_size_um(a, 2.0)
    r_um = co_occurrence(a, cluster_key="ct", interval=thr * 2.0)
    np.testing.assert_allclose(r_um.occ, ref.occ, atol=1e-12)
    with pytest.raises(ValueError, match=">= 2"):
        co_occurrence(a, cluster_key="ct", interval=np.array([5.0]))
    assert "ct_co_occurrence" not in a.uns
