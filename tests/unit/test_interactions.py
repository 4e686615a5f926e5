"""Interaction matrices against imcRtools (real cytomapper data) and squidpy."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.graph import spatial_graph
from napari_carspatial.analysis.interactions import count_interactions, interaction_matrix


@pytest.fixture(scope="module")
def pancreas(cytomapper_dir):
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    obs = pd.DataFrame({
        "CellType": pd.Categorical(cells["CellType"], categories=["celltype_A", "celltype_B", "celltype_C"]),
        "ImageNb": pd.Categorical(cells["ImageNb"].astype(str), categories=["1", "2", "3"]),
        "cell_id": cells["CellNb"].to_numpy(),
        "image": cells["ImageName"].str.replace("_imc.tiff", "", regex=False).to_numpy(),
    }, index=cells["cell_id"].astype(str))
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = cells[["Pos_X", "Pos_Y"]].to_numpy(float)
    a.uns["carspatial"] = {"pixel_size_um": 1.0}
    exp = json.loads((cytomapper_dir / "expected_results_imcRtools.json").read_text())
    return a, exp


@pytest.mark.parametrize("method", ["classic", "histocat"])
def test_count_interactions_equal_imcrtools(pancreas, method):
    a, exp = pancreas
    g = spatial_graph(a, method="knn", n_neighs=3, library_key="ImageNb")
    df = count_interactions(a, cluster_key="CellType", graph=g, group_key="ImageNb", method=method)
    assert len(df) == 27
    assert list(df["group"].iloc[[0, 9, 18]]) == ["1", "2", "3"]
    want = np.array([np.nan if v is None else v for v in exp[f"countInteractions_{method}_ct"]])
    got = df["ct"].to_numpy()
    assert np.array_equal(np.isnan(want), np.isnan(got))
    assert np.nanmax(np.abs(want - got)) < 1e-6


def test_patch_method_definition(pancreas):
    a, _ = pancreas
    g = spatial_graph(a, method="knn", n_neighs=3, library_key="ImageNb")
    classic = count_interactions(a, cluster_key="CellType", graph=g, group_key="ImageNb")
    patch1 = count_interactions(a, cluster_key="CellType", graph=g, group_key="ImageNb", method="patch", patch_size=1)
    patch4 = count_interactions(a, cluster_key="CellType", graph=g, group_key="ImageNb", method="patch", patch_size=4)
    ok = classic["ct"].notna()
    assert (patch1["ct"][ok] <= classic["ct"][ok] + 1e-12).all()  # P(n >= 1) <= E[n]
    assert (patch4["ct"][ok] == 0).all()  # at most 3 neighbours with k = 3
    with pytest.raises(ValueError, match="method"):
        count_interactions(a, cluster_key="CellType", graph=g, method="bogus")


def test_delaunay_edge_counts_equal_imcrtools(pancreas):
    a, exp = pancreas
    e = exp["buildSpatialGraph_edge_counts"]
    assert spatial_graph(a, method="delaunay", library_key="ImageNb").n_edges == e["delaunay"] == 2082
    g20 = spatial_graph(a, method="delaunay", max_distance=20, library_key="ImageNb", pixel_size_um=1.0)
    assert g20.n_edges == e["delaunay_max_dist_20"] == 1956
    assert spatial_graph(a, method="knn", n_neighs=5, library_key="ImageNb").n_edges == 5 * a.n_obs


def test_interaction_matrix_equal_squidpy(pancreas):
    sq = pytest.importorskip("squidpy")
    a, _ = pancreas
    a = a.copy()
    g = spatial_graph(a, method="delaunay", library_key="ImageNb")
    a.obsp["spatial_connectivities"] = g.connectivities
    a.obsp["spatial_distances"] = g.distances
    res = interaction_matrix(a, cluster_key="CellType", graph=g)
    want = sq.gr.interaction_matrix(a, cluster_key="CellType", copy=True)
    np.testing.assert_array_equal(res.count, want)
    wantn = sq.gr.interaction_matrix(a, cluster_key="CellType", normalized=True, copy=True)
    np.testing.assert_allclose(res.normalized, wantn)
    assert res.count.sum() == g.n_edges
    assert list(res.to_frame("normalized").index) == ["celltype_A", "celltype_B", "celltype_C"]
