"""Cohort statistics pair each patient's pre sample with its post sample, else its earliest
``day N`` (as the manifest documents and ``Manifest.pairs`` says), on a real-data batch
(cytomapper E34 pre / G01 day 14 / J02 pre)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort import cohort_statistics, run_batch, write_manifest
from napari_carspatial.cohort.stats import add_phase
from napari_carspatial.io import read_table

ROLES = {"car_t": ["celltype_A"], "tumor": ["celltype_B"], "myeloid": ["celltype_C"]}


@pytest.fixture(scope="module")
def day_batch(cytomapper_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("day")
    rows = []
    for sid, pat, tp, resp in (("E34", "P1", "pre", "CR"), ("G01", "P1", "day 14", "CR"), ("J02", "P2", "pre", "PD")):
        t = read_table(cytomapper_dir / "cells.csv", pixel_size_um=1.0, image=f"{sid}_imc.tiff")
        t.write_h5ad(tmp_path / f"{sid}.h5ad")
        rows.append({"sample": sid, "patient": pat, "timepoint": tp, "response": resp,
                     "table": str(tmp_path / f"{sid}.h5ad")})
    man = write_manifest(rows, tmp_path / "m.csv")
    return run_batch(man, {"cell_type_key": "CellType", "regions": "whole", "metric_options": {"roles": ROLES}},
                     tmp_path / "r", scheduler="sequential", progress=False)


def test_day_n_is_the_post_sample_of_its_patient(day_batch):
    """QA H5: with pre + day 14 there was no paired test and no post group test, and nothing said
    so; statistics.csv held only 'responders vs non-responders (pre)'."""
    res = day_batch
    assert sorted(res.done) == ["E34", "G01", "J02"]
    m = add_phase(res.metrics)
    assert m.drop_duplicates("sample").set_index("sample")["phase"].to_dict() == {"E34": "pre", "G01": "post",
                                                                                  "J02": "pre"}
    st = cohort_statistics(res.metrics, n_boot=50)
    comps = list(dict.fromkeys(st["comparison"]))
    assert "day 14 vs pre (paired)" in comps
    paired = st[st["comparison"] == "day 14 vs pre (paired)"].set_index("metric")
    assert paired["n_a"].max() == 1 and paired.loc["tumor_density_per_mm2", "n_a"] == 1
    dens = res.metrics.query("region == 'whole' and metric == 'tumor_density_per_mm2'").set_index("sample")["value"]
    assert paired.loc["tumor_density_per_mm2", "effect"] == dens["G01"] - dens["E34"]
    assert "responders vs non-responders (day 14)" in comps


def test_phase_rule_and_what_is_said_without_pairs(caplog):
    base = {"region": "whole", "metric": "x_density_per_mm2", "responder": True}
    m = pd.DataFrame([
        {**base, "sample": "A1", "patient": "A", "timepoint": "pre", "day": 0, "value": 1.0},
        {**base, "sample": "A2", "patient": "A", "timepoint": "post", "day": 1, "value": 2.0},
        {**base, "sample": "A3", "patient": "A", "timepoint": "day 28", "day": 28, "value": 9.0},
        {**base, "sample": "B1", "patient": "B", "timepoint": "pre", "day": 0, "value": 1.0},
        {**base, "sample": "B2", "patient": "B", "timepoint": "day 28", "day": 28, "value": 7.0},
        {**base, "sample": "B3", "patient": "B", "timepoint": "day 14", "day": 14, "value": 3.0},
        {**base, "sample": "C1", "patient": "C", "timepoint": "day 7", "day": 7, "value": 5.0},
    ])
    ph = add_phase(m).set_index("sample")["phase"].to_dict()
    assert ph == {"A1": "pre", "A2": "post", "A3": "", "B1": "pre", "B2": "", "B3": "post", "C1": "post"}
    # without the day column (an older metrics.csv) the timepoint text gives the day
    assert add_phase(m.drop(columns="day")).set_index("sample")["phase"].to_dict() == ph
    st = cohort_statistics(m, n_boot=20)
    row = st[st["comparison"].str.contains("paired")].iloc[0]
    assert row["comparison"] == "post / day 7 / day 14 vs pre (paired)" and row["n_a"] == 2
    assert np.isclose(row["median_a"], 2.5)
    only_pre = m[m["timepoint"] == "pre"]
    with caplog.at_level(logging.WARNING, logger="napari_carspatial.cohort.stats"):
        st = cohort_statistics(only_pre, n_boot=20)
    assert not st["comparison"].str.contains("paired").any()
    assert "no patient has both a pre and a post (or day N) sample" in caplog.text


def test_undefined_metrics_are_nan_with_a_reason_never_zero(day_batch):
    """QA M3 (fixed by the vocab merge; this is its test on real data): with no antigen-negative
    type and no PD-L1 marker the batch wrote 0.0, and the report compared 0 with 0 (p = 1)."""
    m = day_batch.metrics.query("region == 'whole'").set_index(["sample", "metric"])
    for sid in ("E34", "G01", "J02"):
        for metric, why in (("antigen_neg_fraction", "antigen-negative tumour role not mapped"),
                            ("frac_car_t_contact_pdl1_macrophage", "no PD-L1+ macrophages")):
            assert np.isnan(m.loc[(sid, metric), "value"]) and why in m.loc[(sid, metric), "note"], (sid, metric)
    # J02 has no celltype_A (the CAR T role here): its CAR T fractions are NaN, its count a true 0
    assert m.loc[("J02", "n_car_t"), "value"] == 0
    assert np.isnan(m.loc[("J02", "frac_car_t_contact_tumor"), "value"])
    assert "no CAR T cells" in m.loc[("J02", "frac_car_t_contact_tumor"), "note"]
    st = cohort_statistics(day_batch.metrics, n_boot=20)
    und = st[st["metric"].isin(["antigen_neg_fraction", "frac_car_t_contact_pdl1_macrophage"])]
    assert len(und) and und["p"].isna().all() and (und["n_a"] == 0).all()
