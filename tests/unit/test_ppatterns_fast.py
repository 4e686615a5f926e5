"""Ripley's L / G / F by counting: equal to brute force, to squidpy's L, and a sound envelope."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import ConvexHull, cKDTree
from scipy.spatial.distance import pdist

from napari_carspatial.analysis import _ppatterns_kernels as kern
from napari_carspatial.analysis.ppatterns import _HullSampler, ripley


def _table(xy, labels, px=None):
    a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(labels)}, index=[str(i) for i in range(len(labels))]))
    a.obsm["spatial"] = np.asarray(xy, float)
    if px is not None:
        a.uns["carspatial"] = {"pixel_size_um": px}
    return a


@pytest.mark.parametrize("integer", [False, True])
def test_pair_counts_equal_pdist(integer):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 200, (700, 2))
    support = np.linspace(0, 120, 25)
    if integer:  # distances 0, 5, 10, ... sit exactly on support values: strict "<" matters
        xy = np.round(xy / 5) * 5
    h = kern.pair_hist(xy[:, 0].copy(), xy[:, 1].copy(), np.zeros(len(xy), np.int64), 1, support, len(xy),
                       kern.pair_params(support, np.float64))
    ours = np.cumsum(h[0, :-1])
    d = pdist(xy)
    ref = (d[None, :] < support[:, None]).sum(axis=1)  # squidpy's _l_function comparison
    np.testing.assert_array_equal(ours, ref)


def test_prefix_buckets_equal_separate_patterns():
    """One pattern, several prefix sizes: each prefix's counts equal counting it alone."""
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 100, 600), rng.uniform(0, 100, 600)
    sizes = np.array([40, 150, 151, 600])
    bucket = np.searchsorted(sizes, np.arange(600), side="right").astype(np.int64)
    support = np.linspace(0, 60, 13)
    for dtype in (np.float64, np.float32):
        xs, ys = x.astype(dtype), y.astype(dtype)
        h = kern.pair_hist(xs, ys, bucket, len(sizes), support, 600, kern.pair_params(support, dtype))
        nested = np.cumsum(h[:, :-1], axis=0)  # the last column (beyond the support) is not a count
        for b, s in enumerate(sizes):
            alone = kern.pair_hist(xs[:s].copy(), ys[:s].copy(), np.zeros(s, np.int64), 1, support, s,
                                   kern.pair_params(support, dtype))[0]
            np.testing.assert_array_equal(nested[b], alone[:-1])
        g = kern.nn_hist(x, y, sizes, support)
        f = kern.empty_space_hist(x, y, sizes, x[:50] + 0.5, y[:50], support)
        # one joint search for all prefixes == one search per prefix
        np.testing.assert_array_equal(kern.nn_hist_joint(x, y, bucket, len(sizes), support), g)
        np.testing.assert_array_equal(
            kern.empty_space_hist_joint(x, y, bucket, len(sizes), x[:50] + 0.5, y[:50], support), f)
        sim = kern.simulate(1, x[None], y[None], bucket, sizes, support, x[:50] + 0.5, y[:50])[0]
        np.testing.assert_array_equal(sim, g)  # small prefixes separately, the rest jointly
        sim = kern.simulate(2, x[None], y[None], bucket, sizes, support, x[:50] + 0.5, y[:50])[0]
        np.testing.assert_array_equal(sim, f)
        tiny = np.array([10, 150, 151, 600])  # a prefix under 1/16 of the pattern: searched on its own
        bt = np.searchsorted(tiny, np.arange(600), side="right").astype(np.int64)
        for mode, ref in ((1, kern.nn_hist(x, y, tiny, support)),
                          (2, kern.empty_space_hist(x, y, tiny, x[:50] + 0.5, y[:50], support))):
            np.testing.assert_array_equal(kern.simulate(mode, x[None], y[None], bt, tiny, support,
                                                        x[:50] + 0.5, y[:50])[0], ref)
        for b, s in enumerate(sizes):
            np.testing.assert_array_equal(g[b], kern.nn_hist(x[:s].copy(), y[:s].copy(), np.array([s]), support)[0])
            np.testing.assert_array_equal(
                f[b], kern.empty_space_hist(x[:s].copy(), y[:s].copy(), np.array([s]), x[:50] + 0.5, y[:50], support)[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_pairs_kernel_equals_grid_kernel(dtype):
    """Every pair by index (support spanning the window) == the grid kernel, prefixes and edges."""
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 100, 501), rng.uniform(0, 100, 501)
    x[:200], y[:200] = np.round(x[:200] / 5) * 5, np.round(y[:200] / 5) * 5  # distances on bin edges
    sizes = np.array([3, 150, 151, 501])
    bucket = np.searchsorted(sizes, np.arange(501), side="right").astype(np.int64)
    support = np.linspace(0, 120, 25)
    xs, ys = x.astype(dtype), y.astype(dtype)
    par = kern.pair_params(support, dtype)
    grid = kern.pair_hist(xs, ys, bucket, len(sizes), support, 501, par)
    every = kern.pair_hist_all(xs, ys, bucket, len(sizes), support, 501, par)
    np.testing.assert_array_equal(every[:, :-1], grid[:, :-1])
    assert every.sum() == 501 * 500 // 2  # every pair counted once (beyond the support: last column)
    if dtype is np.float64:
        d = pdist(np.column_stack([x, y]))
        np.testing.assert_array_equal(np.cumsum(every.sum(0)[:-1]), (d[None, :] < support[:, None]).sum(1))
    sim = kern.simulate(0, xs[None], ys[None], bucket, sizes, support, np.zeros(0), np.zeros(0), all_pairs=True)[0]
    np.testing.assert_array_equal(sim, every)
    assert kern.spans_window(support, 100.0 * 100.0) and not kern.spans_window(support / 10, 100.0 * 100.0)


def test_hull_sampler_equals_numpy_expression():
    rng = np.random.default_rng(3)
    hull = ConvexHull(rng.uniform(0, 50, (40, 2)))
    s = _HullSampler(hull)
    x, y = s.sample(np.random.default_rng(1), (3, 200))
    u = np.random.default_rng(1).random((3, 200, 3))
    tri = np.minimum(np.searchsorted(s.cum, u[..., 0], side="right"), len(s.cum) - 1)
    a, b = u[..., 1], u[..., 2]
    flip = a + b > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    np.testing.assert_array_equal(x, s.a[0] + a * s.e1[tri, 0] + b * s.e2[tri, 0])
    np.testing.assert_array_equal(y, s.a[1] + a * s.e1[tri, 1] + b * s.e2[tri, 1])
    assert x.shape == (3, 200)


def test_g_and_f_equal_kdtree():
    rng = np.random.default_rng(2)
    xy = np.vstack([rng.uniform(0, 300, (400, 2)), rng.normal(150, 8, (100, 2))])  # CSR + a cluster
    xy = np.vstack([xy, xy[:3]])  # duplicates: nearest neighbour at distance 0
    support = np.linspace(0, 40, 21)
    nn = cKDTree(xy).query(xy, k=2)[0][:, 1]
    g = np.cumsum(kern.nn_hist(xy[:, 0].copy(), xy[:, 1].copy(), np.array([len(xy)]), support)[0, :-1]) / len(xy)
    np.testing.assert_allclose(g, (nn[None, :] <= support[:, None]).mean(axis=1), atol=0)
    q = rng.uniform(-20, 320, (300, 2))  # also outside the points' bounding box
    dq = cKDTree(xy).query(q, k=1)[0]
    f = kern.empty_space_hist(xy[:, 0].copy(), xy[:, 1].copy(), np.array([len(xy)]), q[:, 0].copy(),
                              q[:, 1].copy(), support)[0]
    np.testing.assert_allclose(np.cumsum(f[:-1]) / len(q), (dq[None, :] <= support[:, None]).mean(axis=1), atol=0)


def test_l_equal_squidpy_random():
    sq = pytest.importorskip("squidpy")
    rng = np.random.default_rng(3)
    n = 900
    xy = np.vstack([rng.uniform(0, 1000, (n - 150, 2)), rng.normal(500, 40, (150, 2))])
    lab = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    lab[-150:] = "clustered"
    a = _table(xy, lab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sq.gr.ripley(a, cluster_key="t", mode="L", n_simulations=2, n_steps=40, copy=True, seed=0)
    ours = ripley(a, cluster_key="t", mode="L", max_dist=float(res["bins"][-1]), n_steps=40, n_simulations=20)
    np.testing.assert_allclose(ours.support, res["bins"], rtol=1e-15)
    for c, grp in res["L_stat"].groupby("t", observed=True):
        n_c = int((lab == c).sum())
        o = ours.stat[ours.stat["cluster"] == c]["stats"].to_numpy()
        np.testing.assert_allclose(o, grp["stats"].to_numpy() * n / np.sqrt(n_c * (n_c - 1)), rtol=1e-12)
    s = ours.stat[ours.stat["cluster"] == "clustered"]
    assert (s["stats"] > s["csr_hi"]).iloc[5:20].all()  # a cluster is above the CSR envelope
    assert (s["pvalue"].iloc[5:20] <= 2 / 21 + 1e-12).all()


def test_hull_sampler_uniform_inside():
    rng = np.random.default_rng(4)
    pts = rng.normal(0, 1, (300, 2)) * [3, 1]
    hull = ConvexHull(pts)
    x, y = _HullSampler(hull).sample(np.random.default_rng(0), (20000,))
    eq = hull.equations
    assert np.all(eq[:, :2] @ np.vstack([x, y]) + eq[:, 2:3] <= 1e-9)
    # uniform: the mean is the hull's area centroid
    v = pts[hull.vertices]
    tri = [(v[0], v[i], v[i + 1]) for i in range(1, len(v) - 1)]
    areas = np.array([0.5 * abs((b - a)[0] * (c - a)[1] - (b - a)[1] * (c - a)[0]) for a, b, c in tri])
    cents = np.array([(a + b + c) / 3 for a, b, c in tri])
    centroid = (areas[:, None] * cents).sum(0) / areas.sum()
    sd = np.array([x.std(), y.std()]) / np.sqrt(x.size)
    assert np.all(np.abs(np.array([x.mean(), y.mean()]) - centroid) < 5 * sd)


def test_shared_prefix_envelope_matches_independent_patterns():
    """The simulated L of a type (prefix of a shared pattern) has the distribution of an
    independent uniform pattern of that size in the window."""
    rng = np.random.default_rng(6)
    n = 1200
    xy = rng.uniform(0, 800, (n, 2))
    lab = np.where(np.arange(n) < 200, "small", "large")
    a = _table(xy, lab)
    res = ripley(a, cluster_key="t", mode="L", max_dist=100, n_steps=11, n_simulations=200, seed=1)
    # independent patterns of 200 points in the same window
    hull = ConvexHull(xy)
    smp = _HullSampler(hull)
    r2 = np.random.default_rng(9)
    sup = res.support
    ind = []
    for _ in range(200):
        x, y = smp.sample(r2, (200,))
        h = kern.pair_hist(x, y, np.zeros(200, np.int64), 1, sup, 200, kern.pair_params(sup, np.float64))[0, :-1]
        ind.append(np.sqrt(hull.volume * 2 * np.cumsum(h) / (200 * 199) / np.pi))
    ind = np.array(ind)
    s = res.stat[res.stat["cluster"] == "small"]
    k = 8  # t = 80 µm
    # the envelope of 200 simulations vs 200 independent patterns: same mean (within 4 SE)
    se = ind[:, k].std() / np.sqrt(200) * np.sqrt(2)
    assert abs(s["csr_mean"].iloc[k] - ind[:, k].mean()) < 4 * se
    lo, hi = s["csr_lo"].iloc[k], s["csr_hi"].iloc[k]
    assert np.quantile(ind[:, k], 0.02) > lo - 3 * ind[:, k].std() and np.quantile(ind[:, k], 0.98) < hi + 3 * ind[:, k].std()
    big = res.stat[res.stat["cluster"] == "large"]
    assert (big["csr_hi"] - big["csr_lo"]).iloc[k] < (hi - lo)  # more points: a narrower envelope


def test_g_f_equal_kdtree_on_real_cells(cytomapper_dir):
    """G and F of the real IMC cell types equal a cKDTree count of the same definition."""
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    sub = cells[cells["ImageNb"] == 1]
    xy = sub[["Pos_X", "Pos_Y"]].to_numpy(float)
    a = _table(xy, sub["CellType"].to_numpy(), px=1.0)
    for mode in ("G", "F"):
        res = ripley(a, cluster_key="t", mode=mode, max_dist=40, n_steps=21, n_simulations=5, seed=2)
        q = None
        if mode == "F":
            q = np.column_stack(_HullSampler(ConvexHull(xy)).sample(np.random.default_rng(2), (1000,)))
        for c, grp in res.stat.groupby("cluster", observed=True):
            pts = xy[sub["CellType"].to_numpy() == c]
            if mode == "G" and len(pts) < 2:
                assert grp["stats"].isna().all()
                continue
            d = cKDTree(pts).query(pts, k=2)[0][:, 1] if mode == "G" else cKDTree(pts).query(q, k=1)[0]
            np.testing.assert_allclose(grp["stats"].to_numpy(), (d[None, :] <= res.support[:, None]).mean(1), atol=0)
            assert (grp["csr_lo"] <= grp["csr_hi"]).all()
