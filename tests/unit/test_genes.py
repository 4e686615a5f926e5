"""Gene accessors on sparse tables (against scipy / scanpy) and RNA cell types on the Xenium crop."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_carspatial.analysis.genes import (
    cell_types_from_scores,
    gene_counts,
    gene_summary,
    gene_values,
    leiden_cell_types,
    marker_cell_types,
    normalize_log1p,
    sparse_columns,
    store_cell_types,
    top_genes,
)


def _table(n=300, g=40, seed=0):
    X = sp.random(n, g, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    X.data = np.ceil(X.data * 10)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1)}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(g)]))


def test_gene_values_equal_scipy_columns(monkeypatch):
    a = _table()
    import napari_carspatial.analysis.genes as genes

    monkeypatch.setattr(genes, "NNZ_PIECE", 97)  # many pieces, so the piecewise scan is exercised
    for g in ("G0", "G7", "G39"):
        np.testing.assert_array_equal(gene_values(a, g), a[:, g].X.toarray().ravel())
    np.testing.assert_array_equal(gene_values(a, ["G3", "G1"]), a[:, ["G3", "G1"]].X.toarray())
    np.testing.assert_array_equal(gene_values(a, ["G3", "G3", "G0"]), a.X[:, [3, 3, 0]].toarray())
    dense = ad.AnnData(a.X.toarray(), obs=a.obs, var=a.var)
    np.testing.assert_array_equal(gene_values(dense, "G5"), gene_values(a, "G5"))
    csc = ad.AnnData(a.X.tocsc(), obs=a.obs, var=a.var)
    np.testing.assert_array_equal(gene_values(csc, "G5"), gene_values(a, "G5"))
    assert sp.issparse(a.X) and a.X.format == "csr"  # nothing densified in place
    with pytest.raises(KeyError, match="no gene 'IL18'"):
        gene_values(a, "IL18")


def test_sparse_columns_sum_duplicates_like_scipy():
    X = sp.csr_matrix((np.array([1.0, 2.0, 5.0]), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 3))
    assert not X.has_canonical_format
    np.testing.assert_array_equal(sparse_columns(X, [1, 0]), X.toarray()[:, [1, 0]])


def test_gene_counts_prefers_the_counts_layer():
    a = _table()
    a.layers["counts"] = a.X.copy()
    a.X = a.X * 0.5
    np.testing.assert_array_equal(gene_counts(a, "G2"), a.layers["counts"][:, 2].toarray().ravel())


def test_top_genes_and_summary():
    a = _table()
    row = a.X[5].toarray().ravel()
    t = top_genes(a, 5, n=3)
    order = np.argsort(-row, kind="stable")[:3]
    assert list(t["gene"]) == [f"G{i}" for i in order] and list(t["value"]) == list(row[order])
    np.testing.assert_allclose(t["fraction"], row[order] / row.sum())
    assert list(top_genes(a, 6, by="instance", n=2)["gene"]) == list(top_genes(a, 5, n=2)["gene"])
    assert list(top_genes(a, "c5", by="name")["gene"]) == list(top_genes(a, 5)["gene"])
    s = gene_summary(a).set_index("gene")
    np.testing.assert_allclose(s.loc[a.var_names, "total"], np.asarray(a.X.sum(0)).ravel())
    np.testing.assert_array_equal(s.loc[a.var_names, "n_cells"], (a.X.toarray() > 0).sum(0))


def test_normalize_log1p_equals_scanpy():
    import scanpy as sc

    a = _table()
    a.X[3] = 0  # a cell without counts stays 0
    a.X.eliminate_zeros()
    ln = normalize_log1p(a)
    b = a.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    assert sp.issparse(ln)
    np.testing.assert_allclose(ln.toarray(), b.X.toarray(), rtol=1e-5)
    assert np.all(ln[3].toarray() == 0)


def test_scores_rule():
    scores = pd.DataFrame({"T": [0.5, -0.1, 0.2], "B": [0.1, -0.2, 0.9]})
    lab = cell_types_from_scores(scores, min_score=0.0)
    assert list(lab) == ["T", "Unassigned", "B"] and list(lab.categories) == ["T", "B", "Unassigned"]


@pytest.fixture(scope="module")
def xenium_table(real_data_root):
    sc = pytest.importorskip("scanpy")
    return sc.read_10x_h5(real_data_root / "xenium_crop" / "cell_feature_matrix.h5", gex_only=False)


def test_rna_cell_types_on_the_xenium_crop(xenium_table):
    """The crop is a Jurkat (T-ALL) / Raji (Burkitt B) cell mix: markers and Leiden find the two."""
    from sklearn.metrics import adjusted_rand_score

    a = xenium_table
    m = marker_cell_types(a, {"T cell (Jurkat)": ["CD3D", "CD3E", "LEF1", "FYB1"], "B cell (Raji)": ["POU2AF1", "SPIB"]})
    counts = pd.Series(np.asarray(m.labels)).value_counts()
    assert counts["T cell (Jurkat)"] > 200 and counts["B cell (Raji)"] > 200
    cd3 = gene_values(a, "CD3D")
    assert cd3[np.asarray(m.labels) == "T cell (Jurkat)"].mean() > 5 * cd3[np.asarray(m.labels) == "B cell (Raji)"].mean()
    lei = leiden_cell_types(a, resolution=0.5, seed=0)
    assert 2 <= len(lei.labels.categories) <= 4
    assert adjusted_rand_score(np.asarray(m.labels), np.asarray(lei.labels)) > 0.6
    assert any("POU2AF1" in c or "SPIB" in c for c in lei.labels.categories)  # named by their markers
    key = store_cell_types(a, lei, key="leiden_type")
    assert a.obs[key].dtype == "category" and len(a.uns["leiden_type_colors"]) == len(a.obs[key].cat.categories)
    assert a.uns["carspatial"]["cell_typing"]["leiden_type"]["method"] == "leiden"
    with pytest.raises(ValueError, match="already has a column"):
        store_cell_types(a, lei, key="leiden_type")
    assert sp.issparse(a.X)
