"""Spatial graphs: equal to squidpy's ``spatial_neighbors`` for the same parameters."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_carspatial.analysis import SpatialGraph, spatial_graph, store_graph
from napari_carspatial.model.conventions import set_pixel_size_um

anndata = pytest.importorskip("anndata")


@pytest.fixture(scope="module")
def sq():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("squidpy")


def _adata(xy):
    a = anndata.AnnData(obsm={"spatial": np.asarray(xy, dtype=np.float64)})
    a.obs_names = [f"c{i}" for i in range(len(xy))]
    return a


def _assert_same(ours: SpatialGraph, ref, *, check_dist: bool = True):
    A = sp.csr_matrix(ref.connectivities)
    D = sp.csr_matrix(ref.distances)
    assert ours.connectivities.shape == A.shape
    assert abs(ours.connectivities - A).nnz == 0, "edge sets differ"
    assert ours.connectivities.nnz == A.nnz
    if check_dist:
        assert ours.distances.nnz == D.nnz
        np.testing.assert_allclose(ours.distances.toarray(), D.toarray(), rtol=1e-12, atol=1e-9)


def _squidpy(sq, xy, method, **kw):
    a = _adata(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "delaunay":
            return sq.gr.spatial_neighbors_delaunay(a, copy=True, **kw)
        return sq.gr.spatial_neighbors(a, coord_type="generic", copy=True, **kw)


def _layout(seed: int, n: int, clustered: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not clustered:
        return rng.uniform(0, 500, (n, 2))
    centers = rng.uniform(0, 500, (4, 2))
    return centers[rng.integers(0, 4, n)] + rng.normal(0, 25, (n, 2))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(10, 400), clustered=st.booleans(),
       k=st.integers(1, 8), r=st.floats(5.0, 60.0))
def test_graphs_equal_squidpy_random(sq, seed, n, clustered, k, r):
    xy = _layout(seed, n, clustered)
    _assert_same(spatial_graph(xy, method="delaunay"), _squidpy(sq, xy, "delaunay"))
    _assert_same(spatial_graph(xy, method="delaunay", radius=r), _squidpy(sq, xy, "delaunay", radius=r))
    _assert_same(spatial_graph(xy, method="radius", radius=r), _squidpy(sq, xy, "radius", radius=r))
    _assert_same(
        spatial_graph(xy, method="radius", radius=(r / 3, r)), _squidpy(sq, xy, "radius", radius=(r / 3, r))
    )
    if k < n:
        _assert_same(spatial_graph(xy, method="knn", n_neighs=k), _squidpy(sq, xy, "knn", n_neighs=k))


def test_graph_properties():
    xy = _layout(1, 2000, True)
    for method, kw in [("delaunay", {}), ("radius", {"radius": 20.0}), ("knn", {"n_neighs": 5})]:
        g = spatial_graph(xy, method=method, **kw)
        A = g.connectivities
        assert A.dtype == np.float32 and np.all(A.data == 1)
        assert A.diagonal().sum() == 0
        assert A.has_sorted_indices and g.distances.has_sorted_indices
        if method != "knn":
            assert abs(A - A.T).nnz == 0
        # distances are Euclidean edge lengths
        D = g.distances.tocoo()
        np.testing.assert_allclose(D.data, np.linalg.norm(xy[D.row] - xy[D.col], axis=1), rtol=1e-12)
    g = spatial_graph(xy, method="knn", n_neighs=5, symmetrize=True)
    assert abs(g.connectivities - g.connectivities.T).nnz == 0
    assert spatial_graph(xy, method="radius", radius=20.0, set_diag=True).connectivities.diagonal().min() == 1


def test_pixel_size_conversion():
    xy = _layout(2, 500, False)
    a = _adata(xy)
    g_px = spatial_graph(xy, method="radius", radius=30.0)
    # 15 µm at 0.5 µm/px is 30 px: the argument...
    g_um = spatial_graph(a, method="radius", radius=15.0, pixel_size_um=0.5)
    assert abs(g_um.connectivities - g_px.connectivities).nnz == 0
    assert g_um.pixel_size_um == 0.5
    # ... or the table's uns
    set_pixel_size_um(a, 0.5)
    g_tab = spatial_graph(a, method="radius", radius=15.0)
    assert abs(g_tab.connectivities - g_px.connectivities).nnz == 0
    # distances stay in pixels, like obsm["spatial"]
    assert g_tab.distances.max() <= 30.0 + 1e-9
    # Delaunay max_distance is in µm too
    d1 = spatial_graph(a, method="delaunay", max_distance=10.0)
    d2 = spatial_graph(xy, method="delaunay", radius=20.0)
    assert abs(d1.connectivities - d2.connectivities).nnz == 0


def test_store_graph_like_squidpy(sq):
    xy = _layout(3, 300, False)
    a = _adata(xy)
    b = _adata(xy)
    store_graph(a, method="delaunay")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.spatial_neighbors(b, coord_type="generic", delaunay=True)
    for key in ("spatial_connectivities", "spatial_distances"):
        assert key in a.obsp
        assert abs(a.obsp[key] - b.obsp[key]).max() < 1e-9
    assert a.uns["spatial_neighbors"]["connectivities_key"] == "spatial_connectivities"
    assert a.uns["spatial_neighbors"]["distances_key"] == "spatial_distances"
    # a bare spatial_graph call never mutates
    c = _adata(xy)
    spatial_graph(c, method="knn")
    assert len(c.obsp) == 0 and "spatial_neighbors" not in c.uns


def test_edge_cases(sq):
    # isolated cells: a far-away cell has no radius neighbours
    xy = np.vstack([_layout(4, 50, False), [[10_000.0, 10_000.0]]])
    g = spatial_graph(xy, method="radius", radius=30.0)
    assert g.connectivities[50].nnz == 0
    _assert_same(g, _squidpy(sq, xy, "radius", radius=30.0))
    # duplicate points: kept in connectivities, zero length not stored in distances (as squidpy)
    xy2 = np.vstack([xy[:50], xy[:5]])
    for method, kw in [("radius", {"radius": 30.0}), ("knn", {"n_neighs": 4})]:
        ours = spatial_graph(xy2, method=method, **kw)
        ref = _squidpy(sq, xy2, method, **({"radius": 30.0} if method == "radius" else {"n_neighs": 4}))
        assert abs(ours.connectivities - sp.csr_matrix(ref.connectivities)).nnz == 0
        assert ours.distances.nnz == sp.csr_matrix(ref.distances).nnz
    # tiny inputs
    assert spatial_graph(np.array([[0.0, 0.0], [1.0, 0.0]]), method="delaunay").connectivities.nnz == 2
    assert spatial_graph(np.zeros((0, 2)), method="radius", radius=1.0).connectivities.shape == (0, 0)
    with pytest.raises(ValueError, match="n_neighs"):
        spatial_graph(np.zeros((3, 2)), method="knn", n_neighs=3)
    with pytest.raises(ValueError, match="NaN"):
        spatial_graph(np.array([[0.0, np.nan], [1.0, 1.0]]), method="knn", n_neighs=1)
    with pytest.raises(ValueError, match="radius"):
        spatial_graph(xy, method="radius")
    with pytest.raises(KeyError, match="obsm"):
        spatial_graph(anndata.AnnData(np.zeros((3, 1))), method="knn")


def test_real_cytomapper_graphs(sq, cytomapper_dir):
    df = pd.read_csv(cytomapper_dir / "cells.csv")
    for _, sub in df.groupby("ImageName"):
        xy = sub[["Pos_X", "Pos_Y"]].to_numpy(dtype=np.float64)
        _assert_same(spatial_graph(xy, method="delaunay"), _squidpy(sq, xy, "delaunay"))
        _assert_same(spatial_graph(xy, method="radius", radius=20.0), _squidpy(sq, xy, "radius", radius=20.0))
        _assert_same(spatial_graph(xy, method="knn", n_neighs=6), _squidpy(sq, xy, "knn", n_neighs=6))


# ----------------------------------------------------------------- certified fast Delaunay
def _qhull_adj(xy):
    return spatial_graph(xy, method="delaunay", delaunay_backend="qhull").connectivities


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.integers(4, 2000),
       kind=st.sampled_from(["uniform", "clustered", "anisotropic", "lattice", "rounded", "dupes", "line"]))
@example(seed=5134, n=1386, kind="anisotropic")  # qhull keeps a non-Delaunay diagonal here (exact check)
def test_fast_delaunay_equals_qhull(seed, n, kind):
    from napari_carspatial.analysis._delaunay import delaunay_edges_certified

    rng = np.random.default_rng(seed)
    if kind == "uniform":
        xy = rng.uniform(0, 1e4, (n, 2))
    elif kind == "clustered":
        xy = _layout(seed, n, True)
    elif kind == "anisotropic":
        xy = rng.normal(0, 1, (n, 2)) * [1.0, 1e-3]
    elif kind == "lattice":  # co-circular points everywhere: must fall back to qhull
        xy = np.round(rng.uniform(0, 20, (n, 2)))
    elif kind == "rounded":
        xy = rng.uniform(0, 1e3, (n, 2)).round(1)
    elif kind == "dupes":
        xy = rng.uniform(0, 100, (n, 2))
        xy[: n // 3] = xy[n // 3: 2 * (n // 3)]
    else:  # collinear
        xy = np.column_stack([np.arange(n, dtype=float), 2.0 * np.arange(n)])
    fast = delaunay_edges_certified(xy)
    if kind in ("uniform", "clustered") and n >= 10:
        assert fast is not None, "the fast path should certify generic input"
    if kind in ("dupes", "line") and n >= 6:
        assert fast is None
    if kind == "line":
        return  # qhull cannot triangulate collinear points (neither can squidpy)
    ours = spatial_graph(xy, method="delaunay")
    qh = _qhull_adj(xy).tocsr()
    diff = (ours.connectivities - qh).tocoo()
    if diff.nnz == 0:
        return
    # qhull works in floating point: on near-degenerate input (e.g. 1000:1 anisotropy) it can keep
    # a non-Delaunay diagonal. Where the two differ, each difference must be one flipped quad whose
    # diagonal we keep is the Delaunay one in exact rational arithmetic.
    A = ours.connectivities.tocsr()
    only_ours = {(i, j) for i, j, v in zip(diff.row, diff.col, diff.data, strict=True) if i < j and v > 0}
    only_qhull = {(i, j) for i, j, v in zip(diff.row, diff.col, diff.data, strict=True) if i < j and v < 0}
    assert len(only_ours) == len(only_qhull)
    for i, j in only_ours:
        flips = [(a, b) for a, b in only_qhull
                 if {a, b} <= set(A[i].indices) & set(A[j].indices) and {i, j} <= set(qh[a].indices) & set(qh[b].indices)]
        assert len(flips) == 1, (i, j, flips)
        a, b = flips[0]
        assert _delaunay_diagonal_exact(xy, i, j, a, b), (i, j, a, b)


def _delaunay_diagonal_exact(xy, i, j, a, b) -> bool:
    """In the convex quad i-a-j-b, is (i, j) the Delaunay diagonal (b not inside circle(i, j, a))?"""
    from fractions import Fraction

    def p(k):
        return Fraction(float(xy[k, 0])), Fraction(float(xy[k, 1]))

    (ix, iy), (jx, jy), (ax, ay), (bx, by) = p(i), p(j), p(a), p(b)
    orient = (jx - ix) * (ay - iy) - (jy - iy) * (ax - ix)  # > 0: i, j, a counter-clockwise
    ux, uy, vx, vy, wx, wy = ix - bx, iy - by, jx - bx, jy - by, ax - bx, ay - by
    incircle = ((ux * ux + uy * uy) * (vx * wy - wx * vy) - (vx * vx + vy * vy) * (ux * wy - wx * uy)
                + (wx * wx + wy * wy) * (ux * vy - vx * uy))  # > 0: b inside circle(i, j, a) when ccw
    return incircle * orient < 0


def test_fast_delaunay_real_and_demo(cytomapper_dir):
    from napari_carspatial.analysis._delaunay import delaunay_edges_certified

    df = pd.read_csv(cytomapper_dir / "cells.csv")
    for _, sub in df.groupby("ImageName"):
        xy = sub[["Pos_X", "Pos_Y"]].to_numpy(dtype=np.float64)
        assert delaunay_edges_certified(xy) is not None
        assert abs(spatial_graph(xy, method="delaunay").connectivities - _qhull_adj(xy)).nnz == 0
    from napari_carspatial.datasets import demo
    xy = demo.demo_sample(n_cells=3000, image=False, seed=3).table.obsm["spatial"]
    assert abs(spatial_graph(xy, method="delaunay").connectivities - _qhull_adj(xy)).nnz == 0


@pytest.mark.parametrize("clustered", [False, True])
def test_grid_knn_path_equals_squidpy(sq, clustered):
    """n > 5000 uses the numba grid kNN: still squidpy's graph."""
    rng = np.random.default_rng(7)
    xy = _layout(7, 6000, clustered) if clustered else rng.uniform(0, 3000, (6000, 2))
    for k in (1, 6, 15):
        _assert_same(spatial_graph(xy, method="knn", n_neighs=k), _squidpy(sq, xy, "knn", n_neighs=k))


def test_analysis_import_is_light():
    """Importing the analysis package must not pull in squidpy, napari or Qt."""
    import subprocess
    import sys

    code = ("import sys, napari_carspatial.analysis as a; "
            "bad = [m for m in ('squidpy', 'napari', 'qtpy', 'magicgui') if m in sys.modules]; "
            "assert not bad, bad; print(sorted(a.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "nhood_enrichment" in out.stdout and "co_occurrence" in out.stdout


def test_stored_results_write_to_h5ad(tmp_path):
    from napari_carspatial.analysis import co_occurrence, nhood_enrichment

    rng = np.random.default_rng(0)
    n = 300
    a = _adata(rng.uniform(0, 300, (n, 2)))
    a.obs["ct"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    a.obs["lib"] = pd.Categorical(rng.choice(["x", "y"], n))
    set_pixel_size_um(a, 0.5)
    for method, kw in [("delaunay", {"max_distance": 20.0}), ("radius", {"radius": (2.0, 10.0)}),
                       ("knn", {"library_key": "lib"})]:
        store_graph(a, method=method, **kw)
        nhood_enrichment(a, cluster_key="ct", copy=False)
        co_occurrence(a, cluster_key="ct", interval=np.arange(0, 50, 10.0), copy=False)
        a.write_h5ad(tmp_path / f"{method}.h5ad")
        b = anndata.read_h5ad(tmp_path / f"{method}.h5ad")
        assert b.uns["spatial_neighbors"]["params"]["method"] == method
        assert abs(b.obsp["spatial_connectivities"] - a.obsp["spatial_connectivities"]).nnz == 0
        np.testing.assert_array_equal(b.uns["ct_nhood_enrichment"]["count"], a.uns["ct_nhood_enrichment"]["count"])
    # library graph: no edges between libraries
    A = a.obsp["spatial_connectivities"].tocoo()
    lib = a.obs["lib"].to_numpy()
    assert np.all(lib[A.row] == lib[A.col])
