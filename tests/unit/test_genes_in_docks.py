"""Genes in every dock, headless: gating on counts, colour-by-gene values, the inspector's top
genes and reference percentiles, RNA cell types feeding curation and the audit trail; on the
real Xenium crop and on a sparse table that must never be densified."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_carspatial.analysis.genes import (
    column_percentile,
    gene_counts,
    is_count_table,
    top_genes,
)
from napari_carspatial.editing import GatingSession
from napari_carspatial.editing.cell_typing import (
    compute_cell_types,
    default_key,
    format_markers,
    panel_markers,
    parse_markers,
    store_typing,
    type_cells,
)
from napari_carspatial.model import Sample, get_log

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


class NoDense(sp.csr_matrix):
    """A CSR matrix that refuses to become dense beyond 1 M values (a 1M x 5,000 table is 20 GB)."""

    def _big(self):
        return self.shape[0] * self.shape[1] > 1_000_000

    def toarray(self, *a, **k):
        if self._big():
            raise AssertionError(f"densified a {self.shape} sparse matrix")
        return super().toarray(*a, **k)

    def todense(self, *a, **k):
        if self._big():
            raise AssertionError(f"densified a {self.shape} sparse matrix")
        return super().todense(*a, **k)

    def __array__(self, *a, **k):
        if self._big():
            raise AssertionError(f"densified a {self.shape} sparse matrix")
        return super().toarray()


def _sparse_sample(n=20_000, m=2_000, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, m, density=0.01, format="csr", random_state=seed, data_rvs=lambda k: rng.integers(1, 9, k))
    X = NoDense(X.astype(np.float32))
    genes = [f"G{i}" for i in range(m)]
    genes[3], genes[7] = "IL18", "CAR"
    t = ad.AnnData(X=X, obs=pd.DataFrame({"cell_id": np.arange(1, n + 1)}, index=[f"c{i}" for i in range(n)]),
                   var=pd.DataFrame(index=genes))
    t.obsm["spatial"] = rng.uniform(0, 1000, (n, 2))
    return Sample("sparse", image=[], channel_names=[], pixel_size_um=0.5, table=t)


@pytest.fixture(scope="module")
def xenium():
    if not (REAL / "xenium_crop").exists():
        pytest.skip("real data folder xenium_crop is absent (it ships only with the project's shared/ folder)")
    from napari_carspatial.io import read_sample

    (s,) = read_sample(REAL / "xenium_crop")
    return s


def test_gating_on_counts_of_a_real_gene(xenium):
    s = xenium
    g = GatingSession(s, reviewer="tester")
    assert g.counts and is_count_table(s.table)
    assert g.transform == "log" and g.cofactor == 1.0            # log(1 + counts)
    g.set_marker("CD3D")
    assert g.unit() == "counts"
    np.testing.assert_array_equal(g.values(), gene_counts(s.table, "CD3D"))
    np.testing.assert_array_equal(g.values(), s.table[:, "CD3D"].X.toarray().ravel())
    g.set_threshold(0.5)
    assert g.threshold_text() == "CD3D ≥ 1 count"
    n_pos = int((gene_counts(s.table, "CD3D") >= 1).sum())
    assert g.count_text().startswith(f"{n_pos:,} positive / 526 cells")
    assert n_pos == 383          # gene_summary's n_cells of CD3D on this crop
    g.add_gate()
    g.set_marker("POU2AF1")
    g.set_threshold(2.5)
    assert g.threshold_text() == "POU2AF1 ≥ 3 counts"
    g.add_gate()
    g.add_rule("T cell", "CD3D+ POU2AF1-")
    g.add_rule("B cell", "POU2AF1+ CD3D-")
    t = s.table.copy()
    copy = Sample(s.name, image=[], channel_names=[], pixel_size_um=s.pixel_size_um, table=t)
    res = g.apply(copy)
    cd3 = gene_counts(t, "CD3D") >= 1
    pou = gene_counts(t, "POU2AF1") >= 3
    assert res.counts["T cell"] == int((cd3 & ~pou).sum())
    assert res.counts["B cell"] == int((pou & ~cd3).sum())
    log = get_log(t)
    assert log.iloc[-1]["action"] == "gating.apply" and log.iloc[-1]["column"] == "phenotype_gated"
    assert "CD3D > 0.5" in log.iloc[-1]["note"] and log.iloc[-1]["reviewer"] == "tester"


def test_nothing_densifies_a_sparse_table():
    s = _sparse_sample()
    X = s.table.X
    with pytest.raises(AssertionError, match="densified"):
        X.toarray()
    g = GatingSession(s)
    g.set_marker("IL18")
    ref = sp.csr_matrix(X)[:, 3].toarray().ravel()
    np.testing.assert_array_equal(g.values(), ref)
    g.suggest("otsu")
    assert g.histogram() is not None
    from napari_carspatial._napari import numeric_values

    np.testing.assert_array_equal(numeric_values(s.table, "CAR"), sp.csr_matrix(X)[:, 7].toarray().ravel())
    top = top_genes(s.table, 5, n=5)
    row = sp.csr_matrix(X)[5].toarray().ravel()
    assert list(top["value"]) == sorted(row[row > 0], reverse=True)[:5]
    p99 = column_percentile(X, 99)
    ref = np.percentile(sp.csr_matrix(X)[:, :50].toarray(), 99, axis=0)
    np.testing.assert_allclose(p99[:50], ref)


def test_inspector_reference_never_densifies():
    """The inspector's percentile reference on a sparse table (it called X.todense() before)."""
    napari = pytest.importorskip("napari")
    from napari_carspatial._napari import CellIndex, cell_info

    s = _sparse_sample(n=3_000, m=500)
    info = cell_info(CellIndex(s), 17)
    assert info is not None and info.markers.size == 500
    assert napari is not None


def test_marker_text_round_trip_and_panel_presets(xenium):
    m = parse_markers("T cell: CD3D, CD3E\nB cell = POU2AF1 SPIB; Myeloid: CD68")
    assert m == {"T cell": ["CD3D", "CD3E"], "B cell": ["POU2AF1", "SPIB"], "Myeloid": ["CD68"]}
    assert parse_markers(format_markers(m)) == m
    with pytest.raises(ValueError, match="line 2"):
        parse_markers("T cell: CD3D\nno colon here")
    pm = panel_markers(xenium.table)
    assert pm == {"T cell": ["CD3D", "CD3E"], "B cell": ["POU2AF1", "SPIB"]}


def test_rna_cell_types_feed_curation_and_the_audit(xenium):
    s = xenium
    t = s.table.copy()
    sample = Sample(s.name, image=[], channel_names=[], pixel_size_um=s.pixel_size_um, labels=s.labels, table=t)
    assert default_key(t) == "cell_type"          # no cell-type column yet
    # score_genes is relative to control genes of the same expression: on a 30-gene panel where CD3D
    # and CD3E are among the most expressed, a T cell's score can be below 0, so the floor is lowered
    out = type_cells(sample, method="markers", markers="T cell: CD3D, CD3E\nB cell: POU2AF1, SPIB", reviewer="rna",
                     min_score=-2.0)
    assert out.key == "cell_type" and set(out.counts) == {"T cell", "B cell", "Unassigned"}
    lab = t.obs["cell_type"].astype(str).to_numpy()
    cd3 = gene_counts(t, "CD3D") + gene_counts(t, "CD3E")
    b = gene_counts(t, "POU2AF1") + gene_counts(t, "SPIB")
    # the two lines of the mix: cells with only T-cell markers are T cells, only B-cell markers B cells
    assert (lab[(cd3 >= 5) & (b == 0)] == "T cell").mean() > 0.95
    assert (lab[(b >= 5) & (cd3 == 0)] == "B cell").mean() > 0.95
    row = get_log(t).iloc[-1]
    assert row["action"] == "cell_typing.marker_scores" and row["column"] == "cell_type" and row["reviewer"] == "rna"
    from napari_carspatial.editing import CurationSession

    cur = CurationSession(sample, reviewer="rna")
    assert cur.curation.type_key == "cell_type"
    assert default_key(t) == "cell_type_rna"       # next time: beside it, never over it
    res = compute_cell_types(sample, method="leiden", resolution=0.3)
    out2 = store_typing(sample, res, reviewer="rna")
    assert out2.key == "cell_type_rna" and len(out2.counts) >= 2
    assert (t.obs["cell_type"].astype(str).to_numpy() == lab).all()   # the first column is untouched
    with pytest.raises(ValueError, match="already has"):
        store_typing(sample, res, key="cell_type")


class NoDenseRow(NoDense):
    """Refuses to become dense at any size, and so do its row slices."""

    def _big(self):
        return True

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return NoDenseRow(out) if sp.issparse(out) and out.ndim == 2 else out


def test_inspector_top_genes_read_the_sparse_row_only():
    """A gene panel's cell: no dense row, no dense matrix; the top genes equal the row's largest."""
    pytest.importorskip("napari")
    from napari_carspatial._napari import CellIndex, cell_info

    s = _sparse_sample(n=3_000, m=500)
    plain = sp.csr_matrix(s.table.X)
    s.table.X = NoDenseRow(plain)
    index = CellIndex(s)
    with pytest.raises(AssertionError, match="densified"):   # the guard bites on the marker path
        cell_info(index, 18)
    info = cell_info(index, 18, markers=False)                # what the inspector asks for a gene panel
    assert info is not None and info.row == 17 and info.markers.empty
    top = top_genes(s.table, info.row, n=12)
    row = plain[17].toarray().ravel()
    nz = np.flatnonzero(row)
    assert list(top["value"]) == sorted(row[nz], reverse=True)[:12]
    assert set(top["gene"]) <= set(s.table.var_names[nz])
