"""Radius graph: the numba grid gives exactly scipy cKDTree.query_pairs' edges and distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from napari_carspatial.analysis import spatial_graph


def _kdtree_csr(xy, r):
    n = len(xy)
    p = cKDTree(xy).query_pairs(r, output_type="ndarray")
    rows = np.concatenate([p[:, 0], p[:, 1]])
    cols = np.concatenate([p[:, 1], p[:, 0]])
    d = np.linalg.norm(xy[rows] - xy[cols], axis=1)
    adj = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    dst = sp.csr_matrix((d, (rows, cols)), shape=(n, n))
    return adj, dst


def _same(xy, r):
    g = spatial_graph(xy, method="radius", radius=r)
    adj, dst = _kdtree_csr(xy, r)
    assert g.connectivities.nnz == adj.nnz
    assert abs(g.connectivities - adj).nnz == 0
    assert g.connectivities.has_sorted_indices
    dd = abs(g.distances - dst)
    assert dd.nnz == 0 or dd.max() == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_radius_equals_kdtree_random(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 400, (3000, 2))
    xy = rng.permutation(np.vstack([xy, xy[:20]]))  # duplicates, input not in spatial order
    _same(xy, 12.5)
    ints = np.round(rng.uniform(0, 60, (1500, 2)))  # integer lattice: pairs exactly at r (3-4-5)
    _same(ints, 5.0)


def test_radius_equals_kdtree_real(cytomapper_dir):
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    for _, sub in cells.groupby("ImageName"):
        _same(sub[["Pos_X", "Pos_Y"]].to_numpy(float), 15.0)
