"""Ripley, nearest-neighbour distances and centrality: definitions and squidpy agreement."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.graph import spatial_graph
from napari_carspatial.analysis.ppatterns import centrality_scores, nn_distances, ripley


@pytest.fixture(scope="module")
def pancreas_e34(cytomapper_dir):
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    cells = cells[cells["ImageNb"] == 1]
    a = ad.AnnData(obs=pd.DataFrame({"CellType": pd.Categorical(cells["CellType"])}, index=cells["cell_id"].astype(str)))
    a.obsm["spatial"] = cells[["Pos_X", "Pos_Y"]].to_numpy(float)
    a.uns["carspatial"] = {"pixel_size_um": 1.0}
    return a


def _random(n=400, seed=1):
    rng = np.random.default_rng(seed)
    a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(rng.choice(["a", "b"], n))}, index=[str(i) for i in range(n)]))
    a.obsm["spatial"] = rng.random((n, 2)) * 1000
    a.uns["carspatial"] = {"pixel_size_um": 0.5}  # 500 µm square
    return a


def test_ripley_l_relation_to_squidpy(pancreas_e34):
    sq = pytest.importorskip("squidpy")
    a = pancreas_e34
    res = sq.gr.ripley(a, cluster_key="CellType", mode="L", n_simulations=1, n_steps=30, copy=True, seed=0)
    ours = ripley(a, cluster_key="CellType", mode="L", max_dist=float(res["bins"][-1]), n_steps=30, n_simulations=0)
    N = a.n_obs
    for c, grp in res["L_stat"].groupby("CellType", observed=True):
        n_c = int((a.obs["CellType"] == c).sum())
        ours_c = ours.stat[ours.stat["cluster"] == c]["stats"].to_numpy()
        np.testing.assert_allclose(ours_c, grp["stats"].to_numpy() * N / np.sqrt(n_c * (n_c - 1)), rtol=1e-10)


def test_ripley_under_csr_and_clustering():
    a = _random()
    res = ripley(a, cluster_key="t", mode="L", max_dist=60, n_steps=13, n_simulations=10, seed=0)
    w = res.wide()
    t = w.index.to_numpy()
    assert res.area == pytest.approx(500 * 500, rel=0.05)
    # L(t) ~ t for a uniform pattern (no edge correction: slightly below)
    assert np.all(np.abs(w["a"].to_numpy()[3:] - t[3:]) < 0.15 * t[3:])
    s = res.stat[res.stat["cluster"] == "a"]
    assert (s["csr_lo"] <= s["csr_hi"]).all()
    g = ripley(a, cluster_key="t", mode="G", max_dist=60, n_steps=13, n_simulations=0).wide()
    f = ripley(a, cluster_key="t", mode="F", max_dist=60, n_steps=13, n_simulations=0, seed=3).wide()
    for w2 in (g, f):
        assert w2.iloc[0].max() <= 1e-12 and (np.diff(w2["a"].to_numpy()) >= 0).all() and w2["a"].iloc[-1] > 0.95
    # deterministic for a seed
    pd.testing.assert_frame_equal(ripley(a, cluster_key="t", mode="F", seed=3, n_simulations=2).stat,
                                  ripley(a, cluster_key="t", mode="F", seed=3, n_simulations=2).stat)
    with pytest.raises(ValueError, match="mode"):
        ripley(a, cluster_key="t", mode="K")


def test_nn_distances_in_um():
    a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(["a", "a", "b", "c"], categories=["a", "b", "c", "d"])},
                                    index=list("0123")))
    a.obsm["spatial"] = np.array([[0, 0], [0, 10], [30, 0], [0, 100]], float)
    a.uns["carspatial"] = {"pixel_size_um": 2.0}
    d = nn_distances(a, cluster_key="t")
    assert d.loc["a", "a"] == 20 and d.loc["a", "b"] == pytest.approx(np.median([60, np.hypot(60, 20)]))
    assert np.isnan(d.loc["b", "b"]) and np.isnan(d.loc["d", "a"]) and d.loc["b", "a"] == 60


def test_centrality_equal_squidpy(pancreas_e34):
    sq = pytest.importorskip("squidpy")
    a = pancreas_e34.copy()
    g = spatial_graph(a, method="delaunay", max_distance=20)
    a.obsp["spatial_connectivities"] = g.connectivities
    a.obsp["spatial_distances"] = g.distances
    want = sq.gr.centrality_scores(a, cluster_key="CellType", copy=True, n_jobs=1, show_progress_bar=False)
    got = centrality_scores(a, cluster_key="CellType", graph=g)
    pd.testing.assert_frame_equal(got[want.columns].astype(float), want.astype(float), rtol=1e-10, check_names=False)
