"""Cohort manifest, batch, statistics, report and the demo cohort's planted effects (headless)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort import (
    ManifestError,
    bh_fdr,
    cohort_statistics,
    group_tests,
    hodges_lehmann,
    read_manifest,
    run_batch,
    write_demo_cohort,
)
from napari_carspatial.cohort.batch import load_config
from napari_carspatial.model import SampleError


# --------------------------------------------------------------------------- a stand-in metric (tests only)
def tiny_metrics(adata, *, cell_type_key="cell_type", regions=None, pixel_size_um=None, seed=0, **_):
    """Stand-in for region_metrics: counts per region (exercises the batch machinery only)."""
    types = adata.obs[cell_type_key].astype(str).to_numpy()
    rows = []
    for name, m in (regions or {"whole": np.ones(adata.n_obs, bool)}).items():
        rows.append((name, "n_cells", float(m.sum()), "cells"))
        rows.append((name, "frac_car_t", float((types[m] == "CAR T").mean()) if m.any() else np.nan, "fraction"))
    return pd.DataFrame(rows, columns=["region", "metric", "value", "unit"])


def failing_metrics(adata, **_):
    raise RuntimeError("boom")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """10 patients x (pre, post), tiny slides, no images."""
    out = tmp_path_factory.mktemp("cohort")
    return write_demo_cohort(out, n_patients=10, size=700, image=False)


@pytest.fixture(scope="module")
def batch_real(cohort, tmp_path_factory):
    """The demo cohort through the real region metrics (sequential, in process)."""
    out = tmp_path_factory.mktemp("results")
    res = run_batch(cohort["manifest"], cohort["config"], out, scheduler="sequential", progress=False)
    return res


def _csv(path: Path, rows: list[list], header: str) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- manifest
def test_manifest_reads_and_pairs(cohort):
    man = read_manifest(cohort["manifest"])
    assert len(man.samples) == 20
    assert set(man.table["timepoint"]) == {"pre", "post"}
    assert man.table.loc["P01-pre", "responder"] == True  # noqa: E712
    assert Path(man.paths("P01-pre")["table"]).is_file()  # relative path resolved against the manifest folder
    pairs = man.pairs()
    assert len(pairs) == 10 and (pairs["pre"].str.endswith("-pre")).all()
    assert man.table["crs_grade"].dtype == "Int64"


def test_manifest_errors_name_file_row_and_problem(tmp_path):
    (tmp_path / "a.h5ad").write_text("x")
    rows = [
        ["S1", "P1", "pre", "CR", "2", "a.h5ad"],
        ["S1", "P1", "post", "CR", "2", "a.h5ad"],  # duplicate id
        ["S2", "P2", "later", "XX", "7", "missing.h5ad"],  # timepoint, response, grade, file
        ["S3", "P3", "pre", "PD", "0", "a.h5ad"],
        ["S4", "P3", "pre", "PD", "0", "a.h5ad"],  # two pre for P3
        ["S5", "P4", "post", "CR", "", "a.h5ad"],
        ["S6", "P4", "pre", "PD", "", "a.h5ad"],  # conflicting responses
    ]
    p = _csv(tmp_path / "m.csv", rows, "sample,patient,timepoint,response,crs_grade,table")
    with pytest.raises(ManifestError) as ei:
        read_manifest(p)
    msg = str(ei.value)
    assert str(p) in msg
    assert "row 3 (sample 'S1'): duplicate sample id (first on row 2)" in msg
    assert "row 4 (sample 'S2'): unknown timepoint 'later'" in msg
    assert "unknown response code 'XX'" in msg and "crs_grade must be a grade 0-4" in msg
    assert "table file not found" in msg and "missing.h5ad" in msg
    assert "patient 'P3': 2 'pre' samples" in msg
    assert "patient 'P4': conflicting response codes" in msg


def test_manifest_missing_column_and_yaml(tmp_path):
    p = _csv(tmp_path / "m.csv", [["S1", "pre"]], "sample,timepoint")
    with pytest.raises(ManifestError, match="missing column patient"):
        read_manifest(p)
    (tmp_path / "t.h5ad").write_text("x")
    y = tmp_path / "m.yaml"
    y.write_text("trial: T-1\nsamples:\n  - {sample: A, patient: P, timepoint: d14, response: partial response, "
                 "table: t.h5ad}\n  - {sample: B, patient: P, timepoint: pre, table: t.h5ad}\n", encoding="utf-8")
    man = read_manifest(y)
    assert man.table.loc["A", "timepoint"] == "day 14" and man.table.loc["A", "day"] == 14
    assert man.table.loc["B", "response"] == "PR"  # filled from the patient's other sample
    assert man.table.loc["A", "trial"] == "T-1"
    assert man.pairs().iloc[0].tolist() == ["P", "B", "A"]


def test_manifest_unpaired_patient_is_a_warning(tmp_path):
    (tmp_path / "t.h5ad").write_text("x")
    p = _csv(tmp_path / "m.csv", [["S1", "P1", "pre", "t.h5ad"]], "sample,patient,timepoint,table")
    man = read_manifest(p)
    assert man.warnings and "no pre/post pair" in man.warnings[0]


def test_config_validation(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("regions: {mode: everywhere}\n")
    with pytest.raises(SampleError, match="regions.mode"):
        load_config(bad)
    bad.write_text("colour: red\n")
    with pytest.raises(SampleError, match="unknown config key colour"):
        load_config(bad)
    ok = tmp_path / "b.yaml"
    ok.write_text("gating: g.yaml\n")
    cfg = load_config(ok)
    assert cfg.gating == str(tmp_path / "g.yaml") and cfg.type_key() == "phenotype_gated"


# --------------------------------------------------------------------------- statistics
def test_bh_and_hodges_lehmann_match_references():
    from scipy.stats import false_discovery_control

    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.001])
    q = bh_fdr(p)
    ok = np.isfinite(p)
    np.testing.assert_allclose(q[ok], false_discovery_control(p[ok], method="bh"))
    assert np.isnan(q[4])
    d = np.array([1.0, 2.0, 4.0])
    # Walsh averages: 1, 1.5, 2.5, 2, 3, 4 -> median 2.25
    assert hodges_lehmann(d) == pytest.approx(2.25)


def test_group_tests_null_false_positive_rate_is_controlled():
    """Random group labels on metrics with no group structure: P(p < 0.05) <= ~0.05."""
    rng = np.random.default_rng(1)
    n = 12
    rows = []
    for m in range(10):
        vals = rng.lognormal(size=n)
        for i in range(n):
            rows.append({"sample": f"S{i}", "patient": f"P{i}", "timepoint": "post", "region": "whole",
                         "metric": f"m{m}", "value": vals[i]})
    base = pd.DataFrame(rows)
    ps = []
    for k in range(150):
        lab = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
        df = base.assign(responder=base["sample"].str[1:].astype(int).map(lambda i, lab=lab: bool(lab[i])))
        ps.append(group_tests(df, n_boot=10, seed=k)["p"].to_numpy())
    ps = np.concatenate(ps)
    assert 0.01 < np.mean(ps < 0.05) <= 0.065


# --------------------------------------------------------------------------- batch machinery (stand-in metric)
def test_batch_resumes_records_failures_and_forces(cohort, tmp_path):
    man = read_manifest(cohort["manifest"])
    sub = man.table.index[:4].tolist()
    # a broken table for one sample: it fails, the others go on
    broken = tmp_path / "broken.h5ad"
    broken.write_bytes(b"not an h5ad")
    man.table.loc[sub[1], "table"] = str(broken)
    cfg = {"metrics": tiny_metrics, "regions": {"mode": "whole"}}
    out = tmp_path / "res"
    r1 = run_batch(man, cfg, out, scheduler="sequential", samples=sub, progress=False)
    assert sorted(r1.done) == sorted(set(sub) - {sub[1]})
    assert r1.failed["sample"].tolist() == [sub[1]] and r1.failed["stage"].iloc[0] == "read"
    assert "broken.h5ad" in r1.failed["error"].iloc[0]
    assert (out / "failures.csv").is_file() and "FAILED" in (out / "batch.log").read_text()
    for s in r1.done:
        d = out / "samples" / s
        assert (d / "done.json").is_file() and (d / "metrics.csv").is_file() and (d / "thumbnail.png").is_file()
    tidy = pd.read_csv(out / "metrics.csv")
    assert {"sample", "region", "metric", "value", "unit", "patient", "response", "crs_grade"} <= set(tidy.columns)
    assert set(tidy["sample"]) == set(r1.done)
    # resume: finished samples are skipped, the failed one is retried
    r2 = run_batch(man, cfg, out, scheduler="sequential", samples=sub, progress=False)
    assert sorted(r2.skipped) == sorted(r1.done) and r2.done == [] and len(r2.failed) == 1
    # a changed configuration recomputes; --force recomputes everything
    r3 = run_batch(man, {**cfg, "seed": 3}, out, scheduler="sequential", samples=sub[:1], progress=False)
    assert r3.done == sub[:1]
    r4 = run_batch(man, {**cfg, "seed": 3}, out, scheduler="sequential", samples=sub[:1], force=True, progress=False)
    assert r4.done == sub[:1] and r4.skipped == []


def test_batch_metric_failure_is_reported(cohort, tmp_path):
    man = read_manifest(cohort["manifest"])
    res = run_batch(man, {"metrics": failing_metrics, "regions": "whole"}, tmp_path / "r", scheduler="sequential",
                    samples=man.samples[:1], progress=False)
    assert res.failed["stage"].tolist() == ["metrics"] and "RuntimeError: boom" in res.failed["error"].iloc[0]


def test_batch_on_existing_scheduler(cohort, tmp_path):
    """--scheduler ADDRESS: a LocalCluster started here, its address passed in (process workers)."""
    import cloudpickle
    from distributed import LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    man = read_manifest(cohort["manifest"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        res = run_batch(man, {"metrics": tiny_metrics, "regions": "auto"}, tmp_path / "r", scheduler=cl.scheduler_address,
                        samples=man.samples[:4], progress=False)
    assert sorted(res.done) == sorted(man.samples[:4]) and not len(res.failed)
    assert res.scheduler == cl.scheduler_address
    assert set(res.metrics["region"]) == {"whole", "tumor_core", "margin", "stroma"}


def test_gating_from_curated_sample(cohort, tmp_path):
    man = read_manifest(cohort["manifest"])
    cfg = {"from_sample": "P01-pre", "metrics": tiny_metrics, "regions": "whole"}
    res = run_batch(man, cfg, tmp_path / "r", scheduler="sequential", samples=["P01-post", "P02-post"], progress=False)
    assert not len(res.failed)
    summ = json.loads((tmp_path / "r" / "samples" / "P01-post" / "summary.json").read_text())
    assert summ["cell_type_key"] == "phenotype_gated" and summ["cell_types"].get("CAR T", 0) > 50
    with pytest.raises(SampleError, match="no stored gating"):
        run_batch(man, {**cfg, "from_sample": "P02-pre"}, tmp_path / "r2", scheduler="sequential", progress=False)


# --------------------------------------------------------------------------- the real metrics, planted effects
def test_real_metrics_batch_and_report(batch_real, cohort):
    assert not len(batch_real.failed) and len(batch_real.done) == 20
    m = batch_real.metrics
    for metric in ("car_t_density_per_mm2", "antigen_neg_fraction", "log2_oe_car_t_tumor", "frac_car_t_contact_myeloid"):
        assert metric in set(m["metric"])
    from napari_carspatial.cohort.report import write_report

    rep = write_report(batch_real.out, n_boot=200)
    text = rep.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 22  # 20 thumbnails + paired + group plots
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert (batch_real.out / "statistics.csv").is_file()


def test_report_gains_the_reader_agreement_section(batch_real, tmp_path):
    """write_report(review=...) appends the review package's agreement section (kappa per sample)."""
    from sklearn.metrics import cohen_kappa_score

    from napari_carspatial.cohort.report import write_report
    from napari_carspatial.review import (
        SampleAgreement,
        agreement,
        combine_agreements,
        region_agreement,
    )

    rng = np.random.default_rng(3)
    a = rng.choice(["Tumor", "CAR T", "Macrophage"], 300)
    b = np.where(rng.random(300) < 0.85, a, rng.choice(["Tumor", "CAR T"], 300))
    table = ad.AnnData(obs=pd.DataFrame({"cell_id": np.arange(1, 301), "read_a": pd.Categorical(a),
                                         "read_b": pd.Categorical(b)}, index=[str(i) for i in range(300)]))
    cells = agreement(table, "read_a", "read_b", n_boot=50, seed=0)
    trial = combine_agreements({"S1": SampleAgreement(sample="S1", readers=("alice", "bob"), cells=cells,
                                                                regions=region_agreement([], []))},
                               n_boot=50)
    rep = write_report(batch_real.out, out=tmp_path / "report.html", n_boot=50, review=trial)
    text = rep.read_text(encoding="utf-8")
    assert 'id="reader-agreement"' in text
    assert f"{cohen_kappa_score(a, b):.3f}" in text


def _row(st, comp, region, metric):
    r = st[(st["comparison"] == comp) & (st["region"] == region) & (st["metric"] == metric)]
    assert len(r) == 1, (comp, region, metric)
    return r.iloc[0]


def test_statistics_find_planted_effects_and_nothing_else(batch_real):
    st = cohort_statistics(batch_real.metrics, n_boot=300, seed=0)
    post, pre, paired = ("responders vs non-responders (post)", "responders vs non-responders (pre)",
                         "post vs pre (paired)")
    # planted: antigen loss in non-responders (post)
    r = _row(st, post, "whole", "antigen_neg_fraction")
    assert r["q"] < 0.05 and r["effect"] == -1.0 and r["ci_high"] < 0
    # planted: CAR T infiltration of the tumour core in responders
    r = _row(st, post, "tumor_core", "car_t_density_per_mm2")
    assert r["q"] < 0.05 and r["effect"] > 0.8 and r["median_a"] > 3 * r["median_b"]
    # planted: CAR T cells appear after infusion (paired, every patient)
    r = _row(st, paired, "whole", "car_t_density_per_mm2")
    assert r["q"] < 0.05 and r["ci_low"] > 0 and r["n_a"] == 10
    # not planted: CAR T PD-1 positivity is 45 % in every group
    for region in ("whole", "margin", "tumor_core"):
        assert _row(st, post, region, "frac_car_t_pd1_pos")["q"] > 0.05
    # not planted: nothing differs before infusion, and the CRS grades are unrelated to the profiles
    assert (st.loc[st["comparison"] == pre, "q"].dropna() > 0.05).all()
    crs = st[st["comparison"].str.startswith("CRS")]
    assert len(crs) and (crs["q"].dropna() > 0.05).all()
    # counts are never tested (not comparable across samples)
    assert not st["metric"].isin(["n_cells", "area_mm2", "n_car_t"]).any()
    # small groups are flagged (CRS 4 vs 6)
    assert crs["small_n"].any() and crs.loc[crs["small_n"], "warning"].str.contains("small groups").all()


def test_cli_batch_and_cohort_demo(tmp_path, capsys):
    from napari_carspatial.cli import main

    assert main(["cohort-demo", str(tmp_path / "c"), "--patients", "2", "--size", "500", "--no-image"]) == 0
    man = tmp_path / "c" / "manifest.csv"
    assert main(["batch", str(man), "--config", str(tmp_path / "c" / "analysis.yaml"), "-o", str(tmp_path / "r"),
                 "--scheduler", "sequential", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 sample(s) analysed" in out and "report:" in out
    assert (tmp_path / "r" / "report.html").is_file()
    assert main(["batch", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "r")]) == 2


def test_batch_quantifies_a_sample_without_table_and_gates_it(tmp_path):
    """A manifest row with only image + mask: the batch measures the cells, applies the gating file
    and computes the real region metrics on the gated phenotype. The gated counts equal the same
    rules applied to the demo's own table (its means come from the same pixels)."""
    import anndata as ad

    from napari_carspatial.analysis.gating import Gate, GatingScheme, PhenotypeRule, export_gating
    from napari_carspatial.cohort import write_manifest
    from napari_carspatial.datasets import write_demo

    files = write_demo(tmp_path / "s1", size=384, seed=5)
    truth = ad.read_h5ad(files["table"])
    scheme = GatingScheme(
        gates={"CD3": Gate("CD3", threshold=float(np.quantile(truth[:, "CD3"].X, 0.9))),
               "CAR": Gate("CAR", threshold=float(np.quantile(truth[:, "CAR"].X, 0.9))),
               "PanCK": Gate("PanCK", threshold=float(np.quantile(truth[:, "PanCK"].X, 0.5)))},
        rules=[PhenotypeRule("CAR T", "CD3+ CAR+"), PhenotypeRule("Tumor", "PanCK+")])
    gating = export_gating(scheme, tmp_path / "gating.yaml")
    man = write_manifest([{"sample": "S1", "patient": "P1", "timepoint": "post", "response": "PR",
                           "image": str(files["image"]), "mask": str(files["mask"])}], tmp_path / "manifest.csv")
    out = tmp_path / "res"
    res = run_batch(man, {"gating": str(gating), "regions": "whole"}, out, scheduler="sequential", progress=False)
    assert not len(res.failed), res.failed.to_dict("records")
    assert res.done == ["S1"]
    tidy = pd.read_csv(out / "metrics.csv")
    assert {"car_t_density_per_mm2", "antigen_neg_fraction"} <= set(tidy["metric"])
    summ = json.loads((out / "samples" / "S1" / "summary.json").read_text())
    assert summ["cell_type_key"] == "phenotype_gated"
    assert summ["cell_types"].get("CAR T", 0) > 0 and summ["cell_types"].get("Tumor", 0) > 0
    assert sum(summ["cell_types"].values()) == truth.n_obs          # every mask cell measured once
    from napari_carspatial.analysis.gating import apply_rules

    expected = pd.Series(np.asarray(apply_rules(truth, scheme).astype(str))).value_counts()
    for phenotype in ("CAR T", "Tumor"):   # float32 rounding may flip one cell at a threshold
        assert abs(summ["cell_types"][phenotype] - int(expected[phenotype])) <= 1
