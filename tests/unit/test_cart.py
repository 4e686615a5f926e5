"""CAR T measures on the demo: the biology the demo was built with must come out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.cart import infiltration_profile, region_metrics, tumor_distance
from napari_carspatial.analysis.regions import DEFAULT_ROLES


@pytest.fixture(scope="module")
def demo_pair():
    from napari_carspatial.datasets import demo_sample

    return {tp: demo_sample(size=1600, timepoint=tp, image=False) for tp in ("pre", "post")}


def _regions(adata):
    comp = adata.obs["compartment"].astype(str).to_numpy()
    return {"core": comp == "Tumor core", "margin": comp == "Invasive margin"}


def _wide(df):
    return df.pivot(index="metric", columns="region", values="value")


CONTRACT = [
    "car_t_density_per_mm2", "tumor_density_per_mm2", "frac_car_t_within_r_of_tumor",
    "frac_car_t_contact_tumor", "frac_car_t_contact_myeloid", "frac_car_t_contact_pdl1_macrophage",
    "antigen_neg_fraction", "antigen_neg_clustering", "frac_car_t_pd1_pos", "log2_oe_car_t_tumor",
    "log2_oe_car_t_myeloid", "infiltration_median_um", "area_mm2",
]


def test_contract_tidy_columns_and_metric_names(demo_pair):
    a = demo_pair["post"].table
    before = a.copy()
    df = region_metrics(a)
    assert list(df.columns[:3]) == ["region", "metric", "value"] and "unit" in df
    assert set(df["region"]) == {"whole"}
    assert set(CONTRACT) <= set(df["metric"])
    assert df["metric"].is_unique
    # no mutation, deterministic
    assert list(a.obs.columns) == list(before.obs.columns) and set(a.uns) == set(before.uns)
    pd.testing.assert_frame_equal(df, region_metrics(a, seed=0))
    assert DEFAULT_ROLES["pdl1_macrophage"] is None


def test_margin_enriched_for_car_t_and_macrophage_contact(demo_pair):
    a = demo_pair["post"].table
    w = _wide(region_metrics(a, regions=_regions(a)))
    assert w.loc["car_t_density_per_mm2", "margin"] > 3 * w.loc["car_t_density_per_mm2", "core"]
    assert w.loc["infiltration_median_um", "core"] < 0 < w.loc["infiltration_median_um", "margin"]
    # CAR T touch macrophages more often than random relabelling would give
    assert w.loc["log2_oe_car_t_myeloid", "margin"] > 0.2
    assert 0 <= w.loc["frac_car_t_contact_pdl1_macrophage", "margin"] <= w.loc["frac_car_t_contact_myeloid", "margin"] <= 1


def test_post_has_more_antigen_negative_tumor_and_it_clusters(demo_pair):
    pre = _wide(region_metrics(demo_pair["pre"].table)).loc[:, "whole"]
    post = _wide(region_metrics(demo_pair["post"].table)).loc[:, "whole"]
    assert post["antigen_neg_fraction"] > 3 * pre["antigen_neg_fraction"]
    assert post["antigen_neg_clustering"] > 1.5 and post["antigen_neg_clustering_z"] > 5
    assert pre["n_car_t"] == 0 and np.isnan(pre["frac_car_t_contact_tumor"])


def test_tumor_distance_matches_demo_ground_truth(demo_pair):
    a = demo_pair["post"].table
    td = tumor_distance(a)
    gt = a.obs["tumor_distance_um"].to_numpy()
    ok = np.isfinite(td.cell_um) & (np.abs(gt) < 150)
    assert np.corrcoef(td.cell_um[ok], gt[ok])[0, 1] > 0.9
    assert np.median(np.abs(td.cell_um[ok] - gt[ok])) < 12


def test_infiltration_profile_peaks_outside_the_boundary(demo_pair):
    a = demo_pair["post"].table
    prof = infiltration_profile(a, bin_um=25)
    assert list(prof.columns) == ["bin_start_um", "bin_end_um", "car_t_count", "area_mm2", "density_per_mm2"]
    assert np.allclose(prof["bin_end_um"] - prof["bin_start_um"], 25)
    peak = prof.loc[prof["density_per_mm2"].idxmax()]
    assert 0 <= peak["bin_start_um"] < 100
    inside = prof[prof["bin_end_um"] <= -50]["density_per_mm2"].mean()
    assert peak["density_per_mm2"] > 3 * inside


def test_region_areas_and_bad_masks(demo_pair):
    a = demo_pair["post"].table
    df = region_metrics(a, regions={"r": np.ones(a.n_obs, bool)}, region_areas_mm2={"r": 2.0})
    w = _wide(df)["r"]
    assert w["area_mm2"] == 2.0 and w["car_t_density_per_mm2"] == pytest.approx(w["n_car_t"] / 2.0)
    with pytest.raises(ValueError, match="expected"):
        region_metrics(a, regions={"bad": np.ones(3, bool)})
    empty = _wide(region_metrics(a, regions={"e": np.zeros(a.n_obs, bool)}))["e"]
    assert empty["n_cells"] == 0 and np.isnan(empty["frac_car_t_contact_tumor"])
