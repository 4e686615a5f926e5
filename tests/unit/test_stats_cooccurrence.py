"""Co-occurrence: identical to ``squidpy.gr.co_occurrence`` (to 1e-9) for the same intervals."""

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
TOL = 1e-9


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


def test_squidpy_default_thresholds_whole_tissue(sq):
    """squidpy's default ``interval=50`` spans the tissue: evenly spaced bins, nearly all pairs."""
    rng = np.random.default_rng(11)
    n = 2500
    xy = rng.uniform(0, 2000, (n, 2))
    lab = np.array([f"t{i}" for i in rng.integers(0, 6, n)])
    a = _table(xy, lab)
    res = _check(sq, a, 50)
    occ_sq, _ = _squidpy(sq, a, 50)
    assert np.abs(res.occ - occ_sq).max() <= TOL
    # ordered pairs within the largest threshold, counted directly
    from scipy.spatial.distance import pdist

    d2 = pdist(xy.astype(np.float32).astype(np.float64), "sqeuclidean")
    t_last = float(res.interval_px[-1])
    assert abs(int(res.counts[:, :, -1].sum()) - 2 * int((d2 <= t_last * t_last).sum())) <= 2 * int(
        (np.abs(d2 - t_last * t_last) <= 1e-3 * t_last * t_last).sum())


def test_exact_ties_on_even_thresholds(sq):
    """Integer lattice + integer thresholds: many pairs sit exactly on a bin edge (3-4-5 ...)."""
    yy, xx = np.mgrid[0:40, 0:40]
    xy = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
    rng = np.random.default_rng(2)
    lab = np.array(["a", "b", "c"])[rng.integers(0, 3, len(xy))]
    a = _table(xy, lab)
    _check(sq, a, np.arange(0, 31, 5))  # evenly spaced: the direct-bin path with exact edge pairs
    _check(sq, a, np.array([0, 1, 2, 5, 5.5, 13, 25]))  # uneven: the comparison path


def test_float32_rounding_like_squidpy():
    """Pairs whose float32 ``d2`` depends on how ``dx*dx + dy*dy`` is rounded (squidpy's
    fastmath kernel contracts it to an FMA): thresholds set exactly on the competing values."""
    from squidpy.gr._ppatterns import _occur_count

    from napari_carspatial.analysis.cooccurrence import _pair_histogram

    rng = np.random.default_rng(0)
    f32 = np.float32
    cases = 0
    for _ in range(20000):
        p = rng.uniform(0, 3000, 4).astype(np.float32)
        dx, dy = f32(p[0] - p[1]), f32(p[2] - p[3])
        plain = f32(f32(dx * dx) + f32(dy * dy))
        fma_x = f32(np.float64(dx) * np.float64(dx) + np.float64(f32(dy * dy)))
        fma_y = f32(np.float64(dy) * np.float64(dy) + np.float64(f32(dx * dx)))
        vals = np.array(sorted({plain, fma_x, fma_y}), np.float32)
        if vals.size < 2:
            continue
        # one point and 40 copies of the other: the kernel's vectorised loop body, not only its tail
        xs = np.array([p[0]] + [p[1]] * 40, np.float32)
        ys = np.array([p[2]] + [p[3]] * 40, np.float32)
        ref = _occur_count(xs, ys, vals, np.zeros(41, np.int32), 41, 1, vals.size)[0, 0]
        xy32 = np.column_stack([xs, ys])
        ours = np.cumsum(_pair_histogram(xy32, np.zeros(41, np.int64), 1, vals,
                                         np.concatenate([[0], np.sqrt(vals)]).astype(np.float32))[0, 0])
        np.testing.assert_array_equal(ours, ref)
        cases += 1
        if cases >= 25:
            break
    assert cases >= 25
