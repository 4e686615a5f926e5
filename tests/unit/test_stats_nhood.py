"""Neighbourhood enrichment: exact join-count moments and agreement with squidpy.

Error bound used against squidpy (derived in docs/statistics.md): squidpy's z-score is
``(C - m) / s`` with ``m``, ``s`` the mean and std of ``N`` permuted counts. With ``z`` the exact
z-score, the delta method gives ``z_hat - z ~ -e1 / sqrt(N) - z * delta`` where ``e1 ~ N(0, 1)``
and ``delta = s / sigma - 1`` has variance ``(kappa - 1) / (4 N)`` (``kappa`` the kurtosis, 3
for a normal count) and covariance ``gamma / (2 N)`` with the mean (``gamma`` the skewness). So

    sd(z_hat - z) = sqrt((1 + z * gamma + z^2 (kappa - 1) / 4) / N)  ~  sqrt((1 + z^2 / 2) / N)

and we test ``|z_hat - z| <= 4 sd`` with the normal-count value. Every pair on the random,
demo and real layouts meets it (the join counts are close to normal here); should a rare pair
with a strongly skewed count fail, the skewness/kurtosis term is the first thing to check.
"""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_carspatial.analysis import (
    join_count_moments,
    nhood_enrichment,
    spatial_graph,
    store_graph,
)
from napari_carspatial.analysis.nhood import _perm_kernel, graph_summary

anndata = pytest.importorskip("anndata")
N_SQ = 1000


@pytest.fixture(scope="module")
def sq():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("squidpy")


def mc_bound(z: np.ndarray, n_perms: int, k: float = 4.0) -> np.ndarray:
    """``k`` standard deviations of the permutation z-score around the exact one (normal count)."""
    return k * np.sqrt((1.0 + z**2 / 2.0) / n_perms)


def _table(xy, labels, categories=None):
    cat = pd.Categorical(labels, categories=categories)
    return anndata.AnnData(
        obs=pd.DataFrame({"ct": cat}, index=[f"c{i}" for i in range(len(labels))]),
        obsm={"spatial": np.asarray(xy, dtype=np.float64)},
    )


def _squidpy_z(sq, a, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z, c = sq.gr.nhood_enrichment(a, cluster_key="ct", n_perms=N_SQ, seed=seed, copy=True,
                                      show_progress_bar=False)
    return np.asarray(z), np.asarray(c)


def _compare(sq, a, *, min_r=0.99):
    res = nhood_enrichment(a, cluster_key="ct")
    z_sq, c_sq = _squidpy_z(sq, a)
    np.testing.assert_array_equal(res.count, c_sq)
    np.testing.assert_array_equal(np.isnan(res.zscore), np.isnan(z_sq))
    ok = np.isfinite(res.zscore)
    dz = np.abs(res.zscore - z_sq)[ok]
    bound = mc_bound(res.zscore[ok], N_SQ)
    assert np.all(dz <= bound), f"|dz| {dz.max():.3f} exceeds the Monte Carlo bound at {np.argmax(dz - bound)}"
    if ok.sum() >= 3 and np.ptp(res.zscore[ok]) > 0:
        r = np.corrcoef(res.zscore[ok], z_sq[ok])[0, 1]
        assert r >= min_r, r
    return res


# --------------------------------------------------------------------------- exact moments
def _brute_moments(M: np.ndarray, labels: np.ndarray, K: int):
    """Mean and variance over all n! relabellings, in exact rational arithmetic."""
    n = len(labels)
    s1 = np.zeros((K, K), dtype=object)
    s2 = np.zeros((K, K), dtype=object)
    cnt = 0
    for perm in itertools.permutations(range(n)):
        P = np.eye(K, dtype=np.int64)[labels[list(perm)]]
        C = P.T @ M @ P
        s1 = s1 + C.astype(object)
        s2 = s2 + (C.astype(object) ** 2)
        cnt += 1
    mean = np.vectorize(lambda v: Fraction(v, cnt))(s1)
    var = np.vectorize(lambda v: Fraction(v, cnt))(s2) - mean**2
    return mean.astype(float), var.astype(float)


@pytest.mark.parametrize("kind", ["symmetric", "directed", "with_loops"])
def test_exact_moments_equal_full_enumeration(kind):
    rng = np.random.default_rng({"symmetric": 0, "directed": 1, "with_loops": 2}[kind])
    n = 7
    M = (rng.random((n, n)) < 0.45).astype(np.int64)
    np.fill_diagonal(M, 0)
    if kind == "symmetric":
        M = np.triu(M, 1)
        M = M + M.T
    if kind == "with_loops":
        np.fill_diagonal(M, rng.random(n) < 0.5)
    labels = np.array([0, 0, 0, 1, 1, 2, 3])  # includes a single-cell type
    K = 5  # category 4 absent
    mean_b, var_b = _brute_moments(M, labels, K)
    mean, var = join_count_moments(np.bincount(labels, minlength=K), graph_summary(sp.csr_matrix(M)))
    np.testing.assert_allclose(mean, mean_b, atol=1e-12)
    np.testing.assert_allclose(var, var_b, atol=1e-10)


@pytest.mark.parametrize("graph", ["delaunay", "knn_directed_with_loops"])
def test_exact_moments_match_monte_carlo(graph):
    """10^5 random relabellings of a 60-cell graph: MC mean/var within MC error."""
    rng = np.random.default_rng(5)
    n = 60
    xy = rng.uniform(0, 100, (n, 2))
    if graph == "delaunay":
        adj = spatial_graph(xy, method="delaunay").connectivities
    else:  # directed kNN with self loops: exercises the non-symmetric counting path
        adj = spatial_graph(xy, method="knn", n_neighs=4, set_diag=True).connectivities
    labels = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05]).astype(np.int64)
    K = 4
    N = 100_000
    perms = _perm_kernel(adj.indptr.astype(np.int64), adj.indices.astype(np.int64), labels, K, N, 123)
    perms = perms.astype(np.float64)
    mean, var = join_count_moments(np.bincount(labels, minlength=K), graph_summary(adj))
    m_mc = perms.mean(0)
    v_mc = perms.var(0)
    m4 = ((perms - m_mc) ** 4).mean(0)
    se_mean = np.sqrt(v_mc / N)
    se_var = np.sqrt(np.maximum(m4 - v_mc**2, 0) / N)
    assert np.all(np.abs(m_mc - mean) <= 5 * se_mean + 1e-12)
    assert np.all(np.abs(v_mc - var) <= 5 * se_var + 1e-12)
    # and the numba permutations do shuffle: label multiset preserved, counts vary
    assert np.all(perms.sum(axis=(1, 2)) == adj.nnz)
    assert perms[:, 0, 0].std() > 0


def test_precision_large_n():
    """At 10^6 cells the closed form keeps precision (no catastrophic cancellation)."""
    from napari_carspatial.analysis.nhood import GraphSummary

    n = 1_000_000
    deg = 6
    g = GraphSummary(n=n, s0=n * deg, s_t=n * deg, r2=n * deg**2, c2=n * deg**2, x=n * deg**2, d=0, y=0)
    nk = np.array([500_000, 499_990, 10])
    mean, var = join_count_moments(nk, g)
    with np.errstate(all="ignore"):
        Fr = Fraction
        a, b = Fr(int(nk[0])), Fr(int(nk[1]))
        N = Fr(n)
        s0 = Fr(n * deg)
        r2 = Fr(n * deg**2)
        q2 = a * b / (N * (N - 1))
        q3B = a * b * (b - 1) / (N * (N - 1) * (N - 2))
        q3A = a * (a - 1) * b / (N * (N - 1) * (N - 2))
        q4 = a * (a - 1) * b * (b - 1) / (N * (N - 1) * (N - 2) * (N - 3))
        P1, P2, P3, P4, P5 = s0, s0, r2 - s0, r2 - s0, r2 - s0
        P7 = s0**2 - P1 - P2 - P3 - P4 - 2 * P5
        exact = P1 * q2 + P3 * q3B + P4 * q3A + P7 * q4 - (s0 * q2) ** 2
    assert var[0, 1] == pytest.approx(float(exact), rel=1e-9)
    assert np.all(var >= 0)


# --------------------------------------------------------------------------- vs squidpy
def _layout(seed, n, n_types, clustered):
    rng = np.random.default_rng(seed)
    if clustered:
        centers = rng.uniform(0, 400, (n_types, 2))
        lab = rng.integers(0, n_types, n)
        xy = centers[lab] + rng.normal(0, 40, (n, 2))
    else:
        xy = rng.uniform(0, 400, (n, 2))
        lab = rng.integers(0, n_types, n)
    return xy, np.array([f"t{i}" for i in lab])


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(200, 800), n_types=st.integers(2, 5),
       clustered=st.booleans(), method=st.sampled_from(["delaunay", "knn", "radius"]))
def test_exact_vs_squidpy_random(sq, seed, n, n_types, clustered, method):
    xy, lab = _layout(seed, n, n_types, clustered)
    a = _table(xy, lab)
    store_graph(a, method=method, radius=25.0 if method == "radius" else None)
    _compare(sq, a, min_r=0.99 if n_types > 2 else -1)


def test_exact_vs_squidpy_demo(sq):
    from napari_carspatial.datasets import demo
    t = demo.demo_sample(n_cells=3000, image=False, seed=3).table
    t.obs["ct"] = t.obs["cell_type"]
    for method, kw in [("delaunay", {}), ("radius", {"radius": 20.0})]:  # 20 µm (pixel size in uns)
        store_graph(t, method=method, **kw)
        _compare(sq, t)


def test_exact_vs_squidpy_real(sq, cytomapper_dir):
    df = pd.read_csv(cytomapper_dir / "cells.csv")
    for _, sub in df.groupby("ImageName"):
        a = _table(sub[["Pos_X", "Pos_Y"]].to_numpy(), sub["CellType"].to_numpy())
        for method in ("delaunay", "knn"):
            store_graph(a, method=method)
            _compare(sq, a, min_r=0.99 if a.obs["ct"].nunique() > 2 else -1)


def test_permutation_path_matches_exact_and_squidpy(sq):
    xy, lab = _layout(11, 600, 4, True)
    a = _table(xy, lab)
    store_graph(a, method="delaunay")
    ex = nhood_enrichment(a, cluster_key="ct")
    pm = nhood_enrichment(a, cluster_key="ct", method="permutation", n_perms=1000, seed=7)
    np.testing.assert_array_equal(pm.count, ex.count)
    assert np.all(np.abs(pm.zscore - ex.zscore) <= mc_bound(ex.zscore, 1000))
    z_sq, _ = _squidpy_z(sq, a)
    assert np.corrcoef(pm.zscore.ravel(), z_sq.ravel())[0, 1] >= 0.99
    # seeded and thread-schedule independent
    pm2 = nhood_enrichment(a, cluster_key="ct", method="permutation", n_perms=1000, seed=7)
    np.testing.assert_array_equal(pm.zscore, pm2.zscore)
    assert pm.pvalue_enriched.shape == (4, 4)
    assert np.all((pm.pvalue_enriched > 0) & (pm.pvalue_enriched <= 1))
    # strongly clustered layout: same-type pairs enriched
    assert np.all(np.diag(ex.zscore) > 3) and pm.pvalue_enriched[0, 0] < 0.01


# --------------------------------------------------------------------------- edge cases
def test_edge_cases_match_squidpy(sq):
    rng = np.random.default_rng(3)
    n = 400
    xy = rng.uniform(0, 300, (n, 2))
    lab = rng.choice(["a", "b", "c"], n).astype(object)
    lab[17] = "single"  # a type with one cell
    a = _table(xy, lab, categories=["a", "b", "c", "single", "absent"])  # an unused category
    store_graph(a, method="delaunay")
    res = _compare(sq, a)
    i_single, i_absent = 3, 4
    assert np.isnan(res.zscore[i_single, i_single])  # one cell: its self-count is always 0
    assert np.isfinite(res.zscore[i_single, 0])
    assert np.all(np.isnan(res.zscore[i_absent])) and np.all(np.isnan(res.zscore[:, i_absent]))
    assert res.count[i_absent].sum() == 0

    # isolated cells (degree 0) in a radius graph
    xy2 = np.vstack([xy, rng.uniform(5000, 9000, (20, 2))])
    lab2 = np.concatenate([lab, rng.choice(["a", "b"], 20)])
    b = _table(xy2, lab2)
    store_graph(b, method="radius", radius=30.0)
    assert (np.diff(b.obsp["spatial_connectivities"].indptr) == 0).sum() >= 20
    _compare(sq, b)

    # a region with one type: squidpy refuses (needs 2 clusters); we return NaN z
    c = _table(xy, np.array(["a"] * n))
    store_graph(c, method="delaunay")
    r1 = nhood_enrichment(c, cluster_key="ct")
    assert r1.count[0, 0] == c.obsp["spatial_connectivities"].nnz
    assert np.isnan(r1.zscore[0, 0]) and r1.std[0, 0] == 0
    # ... and with a second, unused category squidpy runs and agrees (NaN everywhere)
    c2 = _table(xy, np.array(["a"] * n), categories=["a", "b"])
    store_graph(c2, method="delaunay")
    z_sq, _ = _squidpy_z(sq, c2)
    assert np.all(np.isnan(z_sq)) and np.all(np.isnan(nhood_enrichment(c2, cluster_key="ct").zscore))


def test_api_storage_and_errors():
    xy, lab = _layout(1, 300, 3, False)
    a = _table(xy, lab)
    with pytest.raises(KeyError, match="store_graph"):
        nhood_enrichment(a, cluster_key="ct")
    g = spatial_graph(a, method="delaunay")
    res = nhood_enrichment(a, cluster_key="ct", connectivities=g)
    assert "ct_nhood_enrichment" not in a.uns and len(a.obsp) == 0  # not mutated
    res2 = nhood_enrichment(a, cluster_key="ct", connectivities=g, copy=False)
    stored = a.uns["ct_nhood_enrichment"]
    np.testing.assert_array_equal(stored["zscore"], res2.zscore)
    np.testing.assert_array_equal(stored["count"], res.count)
    assert list(res.to_frame().index) == ["t0", "t1", "t2"]
    with pytest.raises(KeyError, match="obs has no column"):
        nhood_enrichment(a, cluster_key="nope", connectivities=g)
    a.obs["ct2"] = a.obs["ct"].astype(object)
    a.obs.loc[a.obs_names[0], "ct2"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nhood_enrichment(a, cluster_key="ct2", connectivities=g)
    with pytest.raises(ValueError, match="method"):
        nhood_enrichment(a, cluster_key="ct", connectivities=g, method="bogus")


def test_library_key_matches_squidpy(sq, cytomapper_dir):
    """Three images in one table: per-image graph, labels permuted within images."""
    df = pd.read_csv(cytomapper_dir / "cells.csv")
    a = _table(df[["Pos_X", "Pos_Y"]].to_numpy(), df["CellType"].to_numpy())
    a.obs["image"] = pd.Categorical(df["ImageName"].to_numpy())
    store_graph(a, method="delaunay", library_key="image")
    b = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.spatial_neighbors(b, coord_type="generic", delaunay=True, library_key="image")
        z_sq, c_sq = sq.gr.nhood_enrichment(b, cluster_key="ct", library_key="image", n_perms=N_SQ, seed=0,
                                            copy=True, show_progress_bar=False)
    assert abs(a.obsp["spatial_connectivities"] - b.obsp["spatial_connectivities"]).nnz == 0
    ex = nhood_enrichment(a, cluster_key="ct", library_key="image")
    np.testing.assert_array_equal(ex.count, c_sq)
    ok = np.isfinite(ex.zscore)
    assert np.all(np.abs(ex.zscore - z_sq)[ok] <= mc_bound(ex.zscore[ok], N_SQ))
    # exact per-library moments equal the sum of per-image moments
    pm = nhood_enrichment(a, cluster_key="ct", library_key="image", method="permutation", n_perms=4000, seed=1)
    assert np.all(np.abs(pm.zscore - ex.zscore)[ok] <= mc_bound(ex.zscore[ok], 4000))
    # a graph with edges between libraries is refused for the exact method
    store_graph(a, method="delaunay")
    with pytest.raises(ValueError, match="between libraries"):
        nhood_enrichment(a, cluster_key="ct", library_key="image")
