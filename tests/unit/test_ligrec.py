"""Ligand-receptor tests: the cluster test equals squidpy.gr.ligrec; the spatial test's exact
null moments equal Monte Carlo permutations; liana's shipped resources; protein panels."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_carspatial.analysis.ligrec import (
    CART_PAIRS,
    cart_pairs,
    ligand_receptor_pairs,
    ligrec,
    ligrec_sample_metrics,
    plot_ligrec,
    resolve_pairs,
    spatial_ligrec,
    store_ligrec,
)

GENES = ["IL18", "IL18R1", "IL18RAP", "IFNG", "IFNGR1", "IFNGR2", "CD274", "PDCD1", "CD47", "SIRPA", "TGFB1",
         "TGFBR1", "TGFBR2", "CSF1", "CSF1R", "CXCL9", "CXCL10", "CXCL11", "CXCR3", "IL6", "IL6R", "CCL2", "CCR2",
         "SPP1", "CD44", "ACTB"]


def _counts(n=600, seed=1, density=0.3):
    rng = np.random.default_rng(seed)
    X = sp.random(n, len(GENES), density=density, format="csr", random_state=seed + 1)
    X.data = np.ceil(X.data * 5)
    ct = rng.choice(["CAR T", "Tumor", "Macrophage", "B cell"], n, p=[0.3, 0.4, 0.2, 0.1])
    obs = pd.DataFrame({"ct": pd.Categorical(ct)}, index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(X.astype(np.float32), obs=obs, var=pd.DataFrame(index=GENES))
    a.obsm["spatial"] = rng.uniform(0, 400, (n, 2))
    return a


def _squidpy(a, pairs, **kw):
    sq = pytest.importorskip("squidpy")
    inter = resolve_pairs(list(a.var_names), pairs)[["source", "target"]]
    res = sq.gr.ligrec(a, "ct", interactions=inter, use_raw=False, copy=True, n_jobs=1, show_progress_bar=False,
                       numba_parallel=False, **kw)
    return {k: (v.sparse.to_dense() if hasattr(v, "sparse") else v) for k, v in res.items() if k in ("means", "pvalues")}


@pytest.mark.parametrize("complex_policy", ["min", "all"])
def test_cluster_test_equals_squidpy(complex_policy):
    a = _counts()
    ours = ligrec(a, "ct", pairs="cart", n_perms=120, seed=7, complex_policy=complex_policy, corr_method=None)
    ref = _squidpy(a, "cart", n_perms=120, seed=7, complex_policy=complex_policy, threshold=0.01)
    m = ref["means"].loc[ours.means.index, ours.means.columns]
    p = ref["pvalues"].loc[ours.pvalues.index, ours.pvalues.columns]
    assert ours.means.shape == ref["means"].shape
    np.testing.assert_array_equal(ours.means.to_numpy(), m.to_numpy())  # identical, not close
    np.testing.assert_array_equal(np.isnan(ours.pvalues.to_numpy()), np.isnan(p.to_numpy()))
    np.testing.assert_array_equal(np.nan_to_num(ours.pvalues.to_numpy(), nan=-1), np.nan_to_num(p.to_numpy(), nan=-1))
    assert np.isfinite(ours.pvalues.to_numpy()).sum() > 50


def test_cluster_test_fdr_and_threshold_equal_squidpy():
    a = _counts(density=0.05)
    ours = ligrec(a, "ct", pairs="cart", n_perms=80, seed=3, threshold=0.08)
    ref = _squidpy(a, "cart", n_perms=80, seed=3, threshold=0.08, corr_method="fdr_bh", corr_axis="clusters")
    q = ref["pvalues"].loc[ours.pvalues_adj.index, ours.pvalues_adj.columns].to_numpy()
    np.testing.assert_allclose(ours.pvalues_adj.to_numpy(), q, rtol=1e-12, equal_nan=True)
    assert np.isnan(ours.pvalues.to_numpy()).sum() > 0  # the threshold removed some tests


def test_cluster_test_on_lognormalized_floats():
    """Float data: sums in another order can flip exact ties only; p-values agree to 1/n_perms."""
    from napari_carspatial.analysis.genes import normalize_log1p

    a = _counts()
    a.X = normalize_log1p(a)
    ours = ligrec(a, "ct", pairs="cart", n_perms=100, seed=2, corr_method=None)
    ref = _squidpy(a, "cart", n_perms=100, seed=2)
    p = ref["pvalues"].loc[ours.pvalues.index, ours.pvalues.columns].to_numpy()
    np.testing.assert_allclose(ours.means.to_numpy(), ref["means"].loc[ours.means.index, ours.means.columns], rtol=1e-6)
    assert np.nanmax(np.abs(ours.pvalues.to_numpy() - p)) <= 1 / 100 + 1e-12


def test_region_mask_equals_subsetting():
    a = _counts()
    m = a.obsm["spatial"][:, 0] < 200
    r1 = ligrec(a, "ct", pairs="cart", n_perms=50, seed=1, mask=m, region="left")
    r2 = ligrec(a[m].copy(), "ct", pairs="cart", n_perms=50, seed=1)
    np.testing.assert_array_equal(np.nan_to_num(r1.pvalues.to_numpy(), nan=-1), np.nan_to_num(r2.pvalues.to_numpy(), nan=-1))
    assert set(r1.to_frame()["region"]) == {"left"}


def test_liana_resources_are_read_offline():
    pytest.importorskip("liana")
    ours = ligand_receptor_pairs("consensus")
    from liana.resource import select_resource

    ref = select_resource("consensus")
    assert set(zip(ours["ligand"], ours["receptor"], strict=True)) == set(zip(ref["ligand"], ref["receptor"], strict=True))
    preset = cart_pairs()
    assert len(preset) == len(CART_PAIRS) and (preset["resources"] != "").all()  # every preset pair is in some resource
    assert "consensus" in preset.set_index("ligand").loc["CD274", "resources"]
    with pytest.raises(KeyError, match="no resource"):
        ligand_receptor_pairs("nonsense")


def test_protein_panel_aliases():
    var = ["DAPI", "PanCK", "CD3", "PD-L1", "PD-1", "CD68", "CD47", "CD172a", "CD44"]
    r = resolve_pairs(var, "cart").set_index("ligand")
    assert r.loc["CD274", "source"] == "PD-L1" and r.loc["CD274", "target"] == "PD-1"
    assert r.loc["CD47", "target"] == "CD172a"
    assert "IFNG" not in r.index  # no member in the panel


def _grid_table(seed=0):
    """Cells on a grid; half the CAR T cells touch tumour, and those touching tumour express IFNG."""
    rng = np.random.default_rng(seed)
    side = 30
    yy, xx = np.mgrid[0:side, 0:side]
    xy = np.c_[xx.ravel(), yy.ravel()].astype(float) * 10 + rng.uniform(-2, 2, (side * side, 2))
    ct = np.where(xx.ravel() < 15, "Tumor", "CAR T")
    ct = np.where((xx.ravel() >= 15) & (yy.ravel() % 3 == 0), "Macrophage", ct)
    n = ct.size
    X = np.zeros((n, 3))
    X[:, 0] = rng.poisson(1.0, n)  # IFNG
    X[:, 1] = rng.poisson(2.0, n)  # IFNGR1
    X[:, 2] = rng.poisson(1.0, n)
    border = (ct == "CAR T") & (xx.ravel() <= 17)
    X[border, 0] += rng.poisson(4.0, border.sum())
    a = ad.AnnData(sp.csr_matrix(X), obs=pd.DataFrame({"ct": pd.Categorical(ct)}, index=[str(i) for i in range(n)]),
                   var=pd.DataFrame(index=["IFNG", "IFNGR1", "ACTB"]))
    a.obsm["spatial"] = xy
    return a


def test_spatial_null_moments_equal_monte_carlo():
    a = _grid_table()
    r = spatial_ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], n_perms=400, seed=1, max_distance_um=None, pixel_size_um=1.0)
    t = r.table.set_index(["sender", "receiver"])
    hit = t.loc[("CAR T", "Tumor")]
    assert hit["z"] > 4 and hit["pvalue_adj"] < 1e-3  # IFNG up in CAR T cells at the border
    tested = t[t["z"].notna()]
    # analytic and Monte Carlo p-values agree within Monte Carlo error
    assert np.max(np.abs(tested["pvalue"] - tested["pvalue_mc"])) < 0.08
    # the closed-form mean and sd equal the permutation distribution's (checked directly)
    from napari_carspatial.analysis.ligrec import _linear_perm_moments

    rng = np.random.default_rng(0)
    w, y = rng.uniform(0, 3, 50), rng.poisson(2, 50).astype(float)
    sims = np.array([w @ y[rng.permutation(50)] for _ in range(20000)])
    e, v = _linear_perm_moments(w[None, :], np.array([y.sum()]), np.array([(y**2).sum()]), 50)
    assert abs(sims.mean() - e[0]) < 4 * sims.std() / np.sqrt(sims.size)
    assert abs(sims.var() / v[0] - 1) < 0.05


def test_spatial_graph_choices_and_region():
    a = _grid_table()
    from napari_carspatial.analysis.graph import spatial_graph

    g = spatial_graph(a, method="knn", n_neighs=4)
    r1 = spatial_ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], graph=g)
    r2 = spatial_ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], method="knn", n_neighs=4)
    pd.testing.assert_frame_equal(r1.table, r2.table)
    m = a.obsm["spatial"][:, 1] < 100
    r3 = spatial_ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], mask=m, region="top", max_distance_um=None, pixel_size_um=1.0)
    assert set(r3.table["region"]) == {"top"} and r3.table["n_edges"].sum() > 0


def test_store_metrics_and_plot(tmp_path):
    a = _grid_table()
    a.uns["carspatial"] = {"pixel_size_um": 1.0}
    cl = ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], n_perms=50)
    spr = spatial_ligrec(a, "ct", pairs=[("IFNG", "IFNGR1")], max_distance_um=None)
    key = store_ligrec(a, [cl, spr])
    a.write_h5ad(tmp_path / "t.h5ad")
    from napari_carspatial.analysis.results import load_results

    back = load_results(ad.read_h5ad(tmp_path / "t.h5ad"))[key]
    assert set(back.tables) == {"cluster", "spatial"} and len(back.tables["spatial"]) == len(spr.table)
    met = ligrec_sample_metrics(a, "ct", pairs=[("IFNG", "IFNGR1")], max_distance_um=None,
                                regions={"whole": np.ones(a.n_obs, bool), "empty": np.zeros(a.n_obs, bool)})
    v = met.set_index(["region", "metric"])["value"]
    assert v[("whole", "lr_z:IFNG-IFNGR1:CAR T->Tumor")] > 4 and np.isnan(v[("empty", "lr_n_tested")])
    for res in (cl, spr):
        fig = plot_ligrec(res)
        fig.savefig(tmp_path / "dot.png")
        assert (tmp_path / "dot.png").stat().st_size > 5000


def test_bad_inputs():
    a = _counts()
    with pytest.raises(KeyError, match="no column 'nope'"):
        ligrec(a, "nope")
    with pytest.raises(ValueError, match="none of the ligand-receptor pairs"):
        ligrec(a, "ct", pairs=[("FOO", "BAR")])
    with pytest.raises(ValueError, match="no cells"):
        ligrec(a, "ct", mask=np.zeros(a.n_obs, bool))
