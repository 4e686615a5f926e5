"""The one-pass region_metrics against the earlier per-region implementation, and its NaN reasons."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis._cart_reference import region_metrics_reference
from napari_carspatial.analysis.cart import region_metrics

TYPES = ["Tumor", "Tumor (antigen-neg)", "CAR T", "CD8 T", "Macrophage", "MDSC", "Stroma", "Other"]


def _synthetic(n, seed, *, integer=False):
    rng = np.random.default_rng(seed)
    side = np.sqrt(n) * 14.0
    xy = rng.uniform(0, side, (n, 2))
    if integer:
        xy = np.round(xy)
    cx = rng.uniform(0, side, (6, 2))
    d = np.min(np.linalg.norm(xy[:, None] - cx[None], axis=2) - side * 0.15, axis=1)
    p_in = np.array([.7, .12, .04, .04, .05, .02, .02, .01])
    p_out = np.array([.03, .01, .1, .15, .15, .05, .38, .13])
    u = rng.random(n)
    code = np.where(d < 0, np.searchsorted(np.cumsum(p_in), u), np.searchsorted(np.cumsum(p_out), u))
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1),
                        "cell_type": pd.Categorical.from_codes(np.minimum(code, 7), categories=TYPES)},
                       index=[str(i) for i in range(n)])
    a = ad.AnnData(X=rng.gamma(2.0, 5.0, (n, 3)).astype(np.float32), obs=obs,
                   var=pd.DataFrame(index=["PD-1", "PD-L1", "Ki-67"]))
    a.obsm["spatial"] = xy
    a.uns["carspatial"] = {"pixel_size_um": 0.5}
    h = side / 2
    regions = {"q1": (xy[:, 0] < h) & (xy[:, 1] < h), "q2": (xy[:, 0] >= h) & (xy[:, 1] < h),
               "q3": (xy[:, 0] < h) & (xy[:, 1] >= h), "margin": np.abs(d) < 60, "whole": np.ones(n, bool)}
    return a, regions


def _compare(new, ref):
    m = new.merge(ref, on=["region", "metric"], suffixes=("_new", "_ref"), validate="one_to_one")
    assert len(m) == len(new) == len(ref)
    np.testing.assert_allclose(m["value_new"], m["value_ref"], rtol=1e-12, atol=0, equal_nan=True)
    assert (m["unit_new"] == m["unit_ref"]).all()
    return m


@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_the_reference_on_random_tissue(seed):
    a, regions = _synthetic(6000, seed)
    m = _compare(region_metrics(a, regions=regions), region_metrics_reference(a, regions=regions))
    assert np.isfinite(m["value_new"]).sum() > 0.9 * len(m)  # a real comparison, not NaN == NaN


def test_contact_at_exactly_the_radius_counts_on_pixel_grid_positions():
    """'In contact' = centroids at most contact_radius_um apart. The earlier code asked a KD-tree
    with distance_upper_bound, which is strict, so a cell exactly 12 µm away (integer positions)
    was not in contact while the same pair was an edge of its radius graph; here both use <=."""
    a, regions = _synthetic(6000, 1, integer=True)
    new = region_metrics(a, regions={"whole": regions["whole"]}).set_index("metric")["value"]
    ref = region_metrics_reference(a, regions={"whole": regions["whole"]}).set_index("metric")["value"]
    xy = a.obsm["spatial"] * 0.5
    ct = a.obs["cell_type"].astype(str).to_numpy()
    car, tum = ct == "CAR T", np.isin(ct, ["Tumor", "Tumor (antigen-neg)"])
    d = np.sqrt(((xy[car][:, None] - xy[tum][None]) ** 2).sum(-1))
    brute = float(np.mean((d <= 12.0).any(axis=1)))
    assert new["frac_car_t_contact_tumor"] == pytest.approx(brute, rel=1e-12)
    assert (d == 12.0).any() and ref["frac_car_t_contact_tumor"] < brute  # the strict bound missed some
    same = [k for k in new.index if not k.startswith("frac_car_t_contact")]
    np.testing.assert_allclose(new[same], ref[same], rtol=1e-12, equal_nan=True)


def test_equal_with_many_regions_and_a_contact_graph():
    import scipy.sparse as sp

    a, _ = _synthetic(3000, 2)
    rng = np.random.default_rng(4)
    # 11 regions: more than one 8-region pass
    regions = {f"r{i}": rng.random(a.n_obs) < 0.3 for i in range(11)}
    i, j = rng.integers(0, a.n_obs, (2, 9000))
    g = sp.csr_matrix((np.ones(i.size), (i, j)), shape=(a.n_obs, a.n_obs))
    g = ((g + g.T) > 0).astype(np.float32)
    g.setdiag(0)
    g.eliminate_zeros()
    _compare(region_metrics(a, regions=regions, contact_graph=g),
             region_metrics_reference(a, regions=regions, contact_graph=g))


def test_equal_on_the_demo_rois():
    from napari_carspatial.analysis.regions import regions_from_rois
    from napari_carspatial.datasets import demo_sample

    s = demo_sample(size=1200, timepoint="post", seed=1, image=False)
    regs = regions_from_rois(s.table, s.rois)
    masks = {k: r.mask for k, r in regs.items()}
    areas = {k: r.area_mm2(s.pixel_size_um) for k, r in regs.items()}
    _compare(region_metrics(s.table, regions=masks, region_areas_mm2=areas),
             region_metrics_reference(s.table, regions=masks, region_areas_mm2=areas))


def test_nan_with_a_reason_never_a_silent_zero():
    a, regions = _synthetic(2000, 3)
    # a panel that calls no cell CAR T and has no myeloid type
    a.obs["cell_type"] = a.obs["cell_type"].cat.rename_categories(
        {"CAR T": "Lymphocyte", "Macrophage": "Blob", "MDSC": "Blob2"})
    df = region_metrics(a, regions={"whole": regions["whole"]}).set_index("metric")
    for k in ("n_car_t", "car_t_density_per_mm2", "frac_car_t_contact_tumor", "log2_oe_car_t_tumor",
              "infiltration_median_um", "frac_car_t_pd1_pos", "n_myeloid"):
        assert np.isnan(df.loc[k, "value"]) and "not mapped" in df.loc[k, "note"], k
    assert df.loc["n_tumor", "value"] > 0 and df.loc["n_tumor", "note"] == ""
    assert np.isfinite(df.loc["antigen_neg_clustering", "value"])
    # a mapped role without cells in a region: true zero counts, NaN fractions, each with a note
    region = {"no car t": (a.obs["cell_type"] != "Lymphocyte").to_numpy()}
    df = region_metrics(a, regions=region, roles={"car_t": ["Lymphocyte"]}).set_index("metric")
    assert df.loc["n_car_t", "value"] == 0 and df.loc["car_t_density_per_mm2", "value"] == 0
    assert "no CAR T cells in this region" in df.loc["car_t_density_per_mm2", "note"]
    assert np.isnan(df.loc["frac_car_t_contact_tumor", "value"])
    assert "no CAR T cells in this region" in df.loc["frac_car_t_contact_tumor", "note"]
