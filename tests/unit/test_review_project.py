"""Review projects: a four-sample test trial read twice, agreement, adjudication, export."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from review_trial import (
    EXCLUDED,
    ROI_DICE,
    ROI_IOU,
    expected_calls,
    expected_confusion,
    make_cohort,
    simulate_read,
)
from sklearn.metrics import cohen_kappa_score

from napari_carspatial.io.write import sha256_file
from napari_carspatial.model import SampleError
from napari_carspatial.review import (
    ADJUDICATED,
    DONE,
    IN_PROGRESS,
    NOT_STARTED,
    LockError,
    RevealError,
    agreement_section,
    init_project,
    load_project,
    preferred_cell_type_column,
    sample_code,
)

SAMPLES = ["P01-pre", "P01-post", "P02-pre", "P02-post"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The demo cohort at a small size: 2 patients x (pre, post), ~1000 cells each, no image."""
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    return manifest


def _source_types(manifest: Path, sample: str) -> np.ndarray:
    a = ad.read_h5ad(manifest.parent / "samples" / f"{sample}.h5ad")
    return a.obs["cell_type"].astype(str).to_numpy()


def _new_project(tmp_path, manifest, **kw):
    proj = init_project(tmp_path / "proj", manifest, reviewers=[("alice", "Dr A"), "bob", "carol"],
                        due="2099-12-31", **kw)
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    return proj


def _read_all(proj, reviewer):
    for i, s in enumerate(SAMPLES):
        with proj.start_read(s, reviewer) as rd:
            simulate_read(rd, i)


def test_trial_end_to_end(tmp_path, cohort):
    src_hash = {s: sha256_file(cohort.parent / "samples" / f"{s}.h5ad") for s in SAMPLES}
    proj = _new_project(tmp_path, cohort)
    assert list(proj.samples) == SAMPLES
    # blinded codes: stable per sample, unrelated to the name, shown instead of it
    codes = {s: proj.samples[s].code for s in SAMPLES}
    assert all(re.fullmatch(r"RV-[0-9A-Z]{6}", c) for c in codes.values()) and len(set(codes.values())) == 4
    assert codes == {s: sample_code(s, proj.code_salt) for s in SAMPLES}
    assert load_project(proj.folder).samples["P01-post"].code == codes["P01-post"]
    st = proj.status()
    assert st["sample"].tolist() == sorted(codes.values()) and not set(SAMPLES) & set(st["sample"])
    assert (st["status"] == NOT_STARTED).all() and st["read1"].eq("alice").all() and st["read2"].eq("bob").all()
    assert proj.status(unblind=True)["sample"].tolist() == SAMPLES
    todo = proj.assigned_to("carol")
    assert todo["role"].eq("adjudication").all() and not todo["ready"].any()
    assert proj.next_for("carol") is None and proj.next_for("alice") in codes.values()

    # ---- first reader
    _read_all(proj, "alice")
    proj.reload()
    assert all(proj.samples[s].read_of("alice").status == DONE for s in SAMPLES)
    assert proj.status()["status"].eq(IN_PROGRESS).all()
    # independence: bob cannot see alice's read, nobody can compare, before both are done
    with pytest.raises(RevealError, match="stays hidden until both reads are done .*alice: done, bob: not started"):
        proj.read_table("P01-pre", "alice", requester="bob")
    with pytest.raises(RevealError):
        proj.reads("P01-pre")
    with pytest.raises(RevealError):
        proj.sample_agreement(codes["P01-pre"])
    with pytest.raises(RevealError):
        proj.start_adjudication("P01-pre", "carol")
    own = proj.read_table("P01-pre", "alice", requester="alice")
    assert "cell_type_curated" in own.obs
    assert proj.trial_agreement(n_boot=0).per_sample.empty  # nothing revealed

    # ---- second reader; a second writer on the same file is refused, naming the holder
    first = proj.start_read("P01-pre", "bob")
    with pytest.raises(LockError, match=r"read 2 of RV-\w+: locked by bob on host .*\(pid \d+\)"):
        proj.start_read("P01-pre", "bob")
    simulate_read(first, 0)
    for i, s in enumerate(SAMPLES[1:], start=1):
        with proj.start_read(s, "bob") as rd:
            simulate_read(rd, i)
    proj.reload()
    assert proj.status()["status"].eq(DONE).all()
    assert proj.next_for("carol") in codes.values()

    # ---- agreement equals scikit-learn and the counts of the plans
    found = {}
    for i, s in enumerate(SAMPLES):
        pair = proj.reads(s)
        assert pair.readers == ("alice", "bob") and pair.label == codes[s]
        types = _source_types(cohort, s)
        a = pair.table.obs[pair.call_keys["alice"]].astype(str).to_numpy()
        b = pair.table.obs[pair.call_keys["bob"]].astype(str).to_numpy()
        np.testing.assert_array_equal(a, expected_calls(types, "alice", i))
        np.testing.assert_array_equal(b, expected_calls(types, "bob", i))
        sa = found[s] = proj.sample_agreement(s, n_boot=200)
        cells = sa.cells
        assert cells.kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
        counted = expected_confusion(types, i)
        for (x, y), n in counted.items():
            assert cells.confusion.loc[x, y] == n
        assert cells.confusion.to_numpy().sum() == len(types) == sum(counted.values())
        assert cells.confusion.loc[EXCLUDED].sum() == (a == EXCLUDED).sum()
        assert len(cells.disagreeing_ids) == sum(n for (x, y), n in counted.items() if x != y)
        assert cells.kappa_ci[0] < cells.kappa < cells.kappa_ci[1]
        rg = sa.regions.per_class.loc["Tumor core"]
        assert rg["dice"] == pytest.approx(ROI_DICE) and rg["iou"] == pytest.approx(ROI_IOU)
    trial = proj.trial_agreement(n_boot=500)
    allA = np.concatenate([expected_calls(_source_types(cohort, s), "alice", i) for i, s in enumerate(SAMPLES)])
    allB = np.concatenate([expected_calls(_source_types(cohort, s), "bob", i) for i, s in enumerate(SAMPLES)])
    assert trial.pooled["kappa"] == pytest.approx(cohen_kappa_score(allA.astype(str), allB.astype(str)), abs=1e-12)
    assert trial.pooled["n_samples"] == 4 and trial.per_sample["sample"].tolist() == SAMPLES

    # ---- adjudication
    with pytest.raises(SampleError, match="bob is not the adjudicator"):
        proj.start_adjudication("P01-pre", "bob")
    decided = {}
    for s in SAMPLES:
        with proj.start_adjudication(s, "carol") as adj:
            d = adj.disagreements()
            assert sorted(d["cell_id"]) == sorted(found[s].cells.disagreeing_ids)
            assert set(d.columns) >= {"cell_id", "alice", "bob", "decision", "x", "y"} and d["decision"].isna().all()
            with pytest.raises(SampleError, match="not disagreements"):
                agreed = np.setdiff1d(adj.ids, d["cell_id"])[:3]
                adj.decide(agreed, "Tumor")
            exc_a = d.loc[d["alice"] == EXCLUDED, "cell_id"]
            adj.accept(exc_a, "alice", note="alice's exclusion stands")
            n = adj.decide_pair("Tumor", "Macrophage", "Macrophage", note="CD68+ by eye") if (
                (d["alice"] == "Tumor") & (d["bob"] == "Macrophage")).any() else 0
            rest = adj.disagreements(undecided_only=True)
            one = int(rest["cell_id"].iloc[0])
            adj.decide([one], "Stroma", note="first look")
            adj.decide([one], "Other", note="second look")  # re-deciding is allowed and logged
            adj.accept(rest["cell_id"].iloc[1:], "bob")
            assert adj.remaining() == {"cells": 0, "regions": ["Tumor core"]}
            with pytest.raises(SampleError, match="region class"):
                adj.finish()
            assert adj.region_disagreements()["class"].tolist() == ["Tumor core"]
            rois = adj.decide_region("Tumor core", "intersection", note="overlap only")
            assert len(rois) == 1 and rois[0].area_px() == pytest.approx(100 * 100)
            final = adj.table.obs[adj.adjudicated_key].astype(object).to_numpy()
            decided[s] = dict(zip(adj.ids.tolist(), final.tolist(), strict=True))
            assert decided[s][one] == "Other"
            logs = adj.table.uns["carspatial_edit_log"]
            rows = logs[logs["action"] == "adjudicate"]
            assert (rows["reviewer"] == "carol").all()
            last = rows.iloc[-1 if not len(rest) > 1 else -1]
            assert json.loads(last["old"]).keys() >= {"alice", "bob"}
            redo = rows[rows["note"] == "second look"].iloc[0]
            old = json.loads(redo["old"])
            assert old["earlier_decision"] == "Stroma" and json.loads(redo["new"]) == "Other"
            assert set(logs["reviewer"]) == {"alice", "bob", "carol"}
            if n:
                assert (rows["note"] == "CD68+ by eye").any()
            adj.finish()
    proj.reload()
    assert proj.status()["status"].eq(ADJUDICATED).all()

    # ---- export
    res = proj.export(n_boot=200)
    assert sorted(res.written) == sorted(SAMPLES) and not res.skipped
    names = {p.name for p in res.files}
    assert {"manifest.csv", "agreement_samples.csv", "agreement_classes.csv", "agreement_regions.csv",
            "decisions.csv", "agreement_trial.json", "agreement.html", "P01-pre.provenance.json",
            "P01-pre.geojson"} <= names
    for s in SAMPLES:
        t = ad.read_h5ad(res.written[s])
        assert t.n_obs == len(_source_types(cohort, s))
        assert preferred_cell_type_column(t) == "cell_type_adjudicated"
        ids = t.obs["cell_id"].astype(int).tolist()
        assert t.obs["cell_type_adjudicated"].astype(object).tolist() == [decided[s][k] for k in ids]
        np.testing.assert_array_equal(t.obs["cell_type"].astype(str), _source_types(cohort, s))  # original kept
        np.testing.assert_array_equal(t.obs["excluded_adjudicated"], t.obs["cell_type_adjudicated"] == EXCLUDED)
        assert set(t.obs.loc[t.obs["excluded_adjudicated"], "exclude_reason_adjudicated"]) <= {"fold", "necrosis", "adjudicated"}
        assert t.obs["review_disagreement"].sum() == len(found[s].cells.disagreeing_ids)
        prov = json.loads(t.uns["carspatial"]["review"]["provenance"])
        assert [r["reviewer"] for r in prov["reads"]] == ["alice", "bob"] and prov["reads"][0]["name"] == "Dr A"
        assert prov["adjudication"]["reviewer"] == "carol" and prov["adjudication"]["finished"]
        assert prov["versions"]["napari-carspatial"] and prov["versions"]["anndata"] == version("anndata")
        assert prov["source"]["table"]["sha256"] == src_hash[s]
        assert prov["agreement"]["kappa"] == pytest.approx(trial.per_sample.set_index("sample").loc[s, "kappa"])
        assert len(t.uns["carspatial_rois"]) == 1
        log = t.uns["carspatial_edit_log"]
        assert set(log["reviewer"]) == {"alice", "bob", "carol"}
        assert "adjudicate_region" in set(log["action"])
    man = pd.read_csv(res.folder / "manifest.csv")
    assert man["table"].tolist() == [f"{s}.h5ad" for s in SAMPLES]
    from napari_carspatial.cohort import read_manifest

    assert read_manifest(res.folder / "manifest.csv").samples == SAMPLES  # ready for carspatial batch
    dec = pd.read_csv(res.folder / "decisions.csv")
    assert set(dec["sample"]) == set(SAMPLES) and (dec["reviewer"] == "carol").all()
    # the sources were never written
    assert {s: sha256_file(cohort.parent / "samples" / f"{s}.h5ad") for s in SAMPLES} == src_hash

    # ---- the report section
    frag = agreement_section(res.agreement)
    assert frag.startswith('<section class="agreement"') and frag.endswith("</section>")
    assert "data:image/png;base64," in frag and "<script" not in frag and "http" not in frag
    assert f"{trial.pooled['kappa']:.3f}" in frag
    for s in SAMPLES:
        assert s in frag
    assert "bootstrap over cells within the sample" in frag and "bootstrap over samples" in frag
    assert "Tumor core" in frag and f"{ROI_DICE:.3f}" in frag
    page = (res.folder / "agreement.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<section" in page


def test_working_copy_is_blinded(tmp_path, cohort):
    proj = _new_project(tmp_path, cohort)
    with proj.start_read("P01-post", "alice") as rd:
        code = proj.samples["P01-post"].code
        assert rd.label == code
        wc = rd.table
        text = " ".join(map(str, [*wc.obs.columns, *wc.obs_names[:50], *wc.uns.keys(), json.dumps(
            {k: str(v) for k, v in wc.uns.items()})]))
        for leak in ("P01", "post", "responder", "CARSPATIAL-DEMO", "pancreatic", "antigen_loss"):
            assert leak not in text, leak
        assert not re.search(r"\b(CR|PR|SD|PD)\b", text)
        assert wc.uns["spatialdata_attrs"]["region"] == f"{code}_labels"
        assert set(wc.obs["region"].astype(str)) == {f"{code}_labels"}
        assert "cell_type" in wc.obs and "cell_type_curated" in wc.obs
        s = rd.sample()
        assert s.name == code and s.metadata == {} and s.labels is not None and s.table is wc
        assert rd.path.parent.name == code and "P01" not in str(rd.path)
    # the project's own status keeps the code; the unblinded view is explicit
    assert "P01-post" not in proj.status().to_string()
    open_proj = init_project(tmp_path / "open", cohort, blinding=False)
    assert open_proj.label("P01-post") == "P01-post"


def test_read_rules(tmp_path, cohort):
    proj = _new_project(tmp_path, cohort)
    with pytest.raises(SampleError, match="carol is not assigned to read"):
        proj.start_read("P01-pre", "carol")
    with proj.start_read("P01-pre", "alice") as rd:
        simulate_read(rd, 0)
    with pytest.raises(SampleError, match="read 1 of .* is done"):
        proj.start_read("P01-pre", "alice")
    with proj.start_read("P01-pre", "alice", reopen=True) as rd:  # allowed: bob is not done
        rd.curation.confirm([0, 1, 2])
    proj.reload()
    assert proj.samples["P01-pre"].read_of("alice").status == IN_PROGRESS
    with proj.start_read("P01-pre", "alice") as rd:
        rd.finish()
    with proj.start_read("P01-pre", "bob") as rd:
        simulate_read(rd, 0)
    with pytest.raises(SampleError, match="frozen"):
        proj.start_read("P01-pre", "alice", reopen=True)
    with pytest.raises(SampleError, match="work has started"):
        proj.assign(["P01-pre"], readers=("carol", "bob"))
    with pytest.raises(SampleError, match="two different readers"):
        proj.assign(["P01-pre"], readers=("bob", "bob"))
    with pytest.raises(SampleError, match="cannot also read"):
        proj.assign(["P02-pre"], readers=("alice", "bob"), adjudicator="bob")
    # not started yet: reassigning is fine; balanced assignment over three readers
    proj.assign_balanced(["alice", "bob", "carol"], samples=SAMPLES[1:])
    st = proj.status(unblind=True).set_index("sample")
    pairs = [tuple(st.loc[s, ["read1", "read2"]]) for s in SAMPLES[1:]]
    assert len(set(pairs)) == 3 and all(a != b for a, b in pairs)
    assert sorted(st.loc[SAMPLES[1:], "read1"]) == ["alice", "bob", "carol"]


def test_status_progress_and_due(tmp_path, cohort):
    proj = _new_project(tmp_path, cohort)
    proj.assign(["P02-post"], readers=("alice", "bob"), due="2000-01-01")
    with proj.start_read("P02-post", "alice") as rd:
        simulate_read(rd, 3, finish=False)
    st = proj.status(unblind=True).set_index("sample")
    assert st.loc["P02-post", "read1_status"] == IN_PROGRESS and st.loc["P02-post", "read1_progress"] > 0
    assert bool(st.loc["P02-post", "overdue"]) and not st.loc["P01-pre", "overdue"]
    assert st.loc["P01-pre", "due"] == "2099-12-31"
    assert proj.next_for("alice") == proj.samples["P02-post"].code  # work in progress first


def test_export_skips_unfinished_and_never_writes_over_a_source(tmp_path, cohort):
    proj = _new_project(tmp_path, cohort)
    for r in ("alice", "bob"):
        with proj.start_read("P01-pre", r) as rd:
            simulate_read(rd, 0)
    res = proj.export(n_boot=0)
    assert not res.written and "not adjudicated" in res.skipped["P01-pre"]
    assert "reads not done" in res.skipped["P02-post"]
    src = cohort.parent / "samples" / "P01-pre.h5ad"
    before = sha256_file(src)
    with proj.start_adjudication("P01-pre", "carol") as adj:
        adj.accept(adj.disagreements()["cell_id"], "alice")
        adj.decide_region("Tumor core", "alice")
        adj.finish()
    with pytest.raises(SampleError, match="never writes over a source"):
        proj.export(src.parent, samples=["P01-pre"], n_boot=0)
    assert sha256_file(src) == before
    res = proj.export(tmp_path / "out", samples=["P01-pre"], n_boot=0)
    assert list(res.written) == ["P01-pre"]
    t = ad.read_h5ad(res.written["P01-pre"])
    pd.testing.assert_series_equal(t.obs["cell_type_adjudicated"].astype(str), t.obs["cell_type_read_alice"].astype(str),
                                   check_names=False)
    assert len(t.uns["carspatial_rois"]) == 1


def test_perfect_agreement_needs_no_adjudication(tmp_path, cohort):
    proj = _new_project(tmp_path, cohort)
    for r in ("alice", "bob"):
        with proj.start_read("P02-pre", r) as rd:
            rd.curation.assign([0, 1, 2], "CAR T")
            rd.finish()
    sa = proj.sample_agreement("P02-pre", n_boot=0)
    assert sa.cells.percent_agreement == 100 and len(sa.cells.disagreeing_ids) == 0
    res = proj.export(samples=["P02-pre"], n_boot=0)
    t = ad.read_h5ad(res.written["P02-pre"])
    prov = json.loads(t.uns["carspatial"]["review"]["provenance"])
    assert prov["adjudication"]["needed"] is False and not t.obs["review_disagreement"].any()
    assert (t.obs["cell_type_adjudicated"].astype(str).to_numpy()[:3] == "CAR T").all()


def test_project_file_errors(tmp_path, cohort):
    proj = init_project(tmp_path / "p", cohort)
    with pytest.raises(SampleError, match="exists here already"):
        init_project(tmp_path / "p", cohort)
    text = proj.file.read_text(encoding="utf-8")
    proj.file.write_text(text.replace("format_version: 1", "format_version: 7"), encoding="utf-8")
    with pytest.raises(SampleError, match="format_version 7 was written by a newer") as err:
        load_project(proj.folder)
    assert str(proj.file) in str(err.value)
    proj.file.write_text(text.replace("reads: []", "reads: [{read: 1, reviewer: zed, status: finished}]", 1),
                         encoding="utf-8")
    with pytest.raises(SampleError, match=r"(?s)2 problem\(s\).*'finished' not one of.*'zed' is not in 'reviewers'"):
        load_project(proj.folder)
    proj.file.write_text("samples: [", encoding="utf-8")
    with pytest.raises(SampleError, match="not valid YAML"):
        load_project(proj.folder)
    with pytest.raises(SampleError, match="no review project file"):
        load_project(tmp_path / "nowhere")
    with pytest.raises(SampleError, match="reviewer id 'a b'"):
        init_project(tmp_path / "q", cohort, reviewers=["a b"])


def test_source_changed_between_reads_is_refused(tmp_path, cohort):
    folder = tmp_path / "c"
    shutil.copytree(cohort.parent, folder)
    proj = init_project(tmp_path / "p", folder / "manifest.csv")
    proj.assign(["P01-pre"], readers=("alice", "bob"))
    with proj.start_read("P01-pre", "alice"):
        pass
    t = ad.read_h5ad(folder / "samples" / "P01-pre.h5ad")
    t.obs["cell_type"] = "Tumor"
    t.write_h5ad(folder / "samples" / "P01-pre.h5ad")
    with pytest.raises(SampleError, match="changed since its first read began"):
        proj.start_read("P01-pre", "bob")


def test_preferred_cell_type_column():
    obs = pd.DataFrame({"CellType": ["a"], "CellType_curated": ["b"]})
    assert preferred_cell_type_column(obs) == "CellType_curated"
    obs["CellType_adjudicated"] = ["c"]
    obs["excluded_adjudicated"] = [False]
    assert preferred_cell_type_column(obs) == "CellType_adjudicated"
    assert preferred_cell_type_column(pd.DataFrame({"phenotype": ["x"], "excluded_adjudicated": [True]})) == "phenotype"
    assert preferred_cell_type_column(pd.DataFrame({"area": [1.0]})) is None


def test_real_imc_images(tmp_path, cytomapper_dir):
    """Three real IMC images (cytomapper): the reads use the real names (CellType, CellNb ids)."""
    rows = []
    for i, n in enumerate(("E34", "G01", "J02")):
        rows.append({"sample": n, "patient": f"donor{i}", "timepoint": "pre",
                     "image": str(cytomapper_dir / "images" / f"{n}_imc.tiff"),
                     "mask": str(cytomapper_dir / "masks" / f"{n}_mask.tiff"),
                     "table": str(cytomapper_dir / "cells.csv")})
    from napari_carspatial.cohort import write_manifest

    man = write_manifest(rows, tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    for r, new in (("alice", "celltype_A"), ("bob", "celltype_B")):
        for i, n in enumerate(("E34", "G01", "J02")):
            with proj.start_read(n, r) as rd:
                wc = rd.table
                assert rd.start_key == "CellType" and "CellType_curated" in wc.obs
                for leak in ("ImageName", "MaskName", "ImageNb", "cell_id"):  # identify the image
                    assert leak not in wc.obs, leak
                assert not any(n in str(x) for x in wc.obs_names[:20])
                s = rd.sample()
                assert s.name == proj.label(n) and s.image[0].shape == (5, 100, 100) and s.n_cells == wc.n_obs
                rows_ = np.flatnonzero(wc.obs["CellType"].astype(str).to_numpy() == "celltype_C")[i::4]
                rd.curation.assign(rows_, new)
                rd.finish()
    trial = proj.trial_agreement(n_boot=200)
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    assert trial.per_sample["n_cells"].tolist() == [113, 122, 127]
    for n in ("E34", "G01", "J02"):
        pair = proj.reads(n)
        a = pair.table.obs["CellType_read_alice"].astype(str)
        b = pair.table.obs["CellType_read_bob"].astype(str)
        assert pair.call_keys == {"alice": "CellType_read_alice", "bob": "CellType_read_bob"}
        k = trial.per_sample.set_index("sample").loc[n, "kappa"]
        assert k == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
        sub = cells[cells["ImageName"] == f"{n}_imc.tiff"]
        assert sorted(pair.table.obs["CellNb"].astype(int)) == sorted(sub["CellNb"])
    for n in ("E34", "G01", "J02"):
        with proj.start_adjudication(n, "carol") as adj:
            adj.decide(adj.disagreements()["cell_id"], "celltype_C", note="both changed a C cell")
            adj.finish()
    res = proj.export(n_boot=0)
    t = ad.read_h5ad(res.written["G01"])
    assert preferred_cell_type_column(t) == "CellType_adjudicated"
    assert "ImageName" in t.obs and set(t.obs["ImageName"]) == {"G01_imc.tiff"}  # the export is the full source
    orig = cells[cells["ImageName"] == "G01_imc.tiff"].set_index("CellNb")["CellType"]
    got = t.obs.set_index(t.obs["CellNb"].astype(int))["CellType_adjudicated"].astype(str)
    pd.testing.assert_series_equal(got.sort_index(), orig.sort_index().astype(str), check_names=False,
                                   check_index_type=False)
