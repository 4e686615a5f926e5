"""Review export on real IMC data (cytomapper): one results file per sample id, however the ids
are spelled."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from napari_carspatial.cohort import write_manifest
from napari_carspatial.review import init_project, load_project


def _rows(cytomapper_dir, ids, images=("E34", "G01")):
    return [{"sample": sid, "patient": f"P{i}", "timepoint": "pre",
             "image": str(cytomapper_dir / "images" / f"{n}_imc.tiff"),
             "mask": str(cytomapper_dir / "masks" / f"{n}_mask.tiff"),
             "table": str(cytomapper_dir / "cells.csv")} for i, (sid, n) in enumerate(zip(ids, images, strict=True))]


def _read_twice(proj, samples):
    for sid in samples:
        for who in ("alice", "bob"):
            with proj.start_read(sid, who) as rd:
                rd.finish()


def test_export_keeps_samples_whose_ids_differ_only_in_dropped_characters_apart(cytomapper_dir, tmp_path):
    """QA H3: review export named files with its own safe_name (P02/post and P02_post ->
    P02_post.h5ad): the second sample's final table replaced the first's and both rows of the
    export manifest pointed at it. Export now names files as the batch names results folders."""
    ids = ["P02/post", "P02_post"]
    man = write_manifest(_rows(cytomapper_dir, ids), tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob"])
    proj.assign(ids, readers=("alice", "bob"))
    _read_twice(proj, ids)
    res = load_project(tmp_path / "proj").export(n_boot=0)
    assert len(set(res.written.values())) == 2
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    for sid, img in zip(ids, ("E34", "G01"), strict=True):
        t = ad.read_h5ad(res.written[sid])
        assert set(t.obs["ImageName"]) == {f"{img}_imc.tiff"}
        assert t.n_obs == int((cells["ImageName"] == f"{img}_imc.tiff").sum())
    exp = pd.read_csv(res.folder / "manifest.csv", dtype=str)
    assert exp["table"].nunique() == 2
    assert exp.set_index("sample").loc["P02_post", "table"] == "P02_post.h5ad"


def test_export_manifest_keeps_the_cohorts_regions(cytomapper_dir, tmp_path):
    """QA M4: the export's manifest.csv had regions '' whenever the readers drew no regions (the
    working copies do not carry the manifest's GeoJSON), so carspatial batch on the export lost
    the cohort's regions. They are carried over; a read's own final regions replace them."""
    import numpy as np

    from napari_carspatial.cohort import run_batch
    from napari_carspatial.io import write_geojson
    from napari_carspatial.model import ROI

    gj = write_geojson([ROI("left", np.array([[0, 0], [0, 50], [100, 50], [100, 0]], float), cls="Stroma")],
                       tmp_path / "E34_regions.geojson")
    rows = _rows(cytomapper_dir, ["E34", "G01"])
    for r in rows:
        r["regions"] = str(gj)
        r["pixel_size_um"] = 1.0
    man = write_manifest(rows, tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob"])
    proj.assign(None, readers=("alice", "bob"))
    _read_twice(proj, ["E34"])
    for who in ("alice", "bob"):   # G01: both readers draw the same region of their own
        with proj.start_read("G01", who) as rd:
            rd.curation.add_roi(ROI("top", np.array([[0, 0], [0, 100], [40, 100], [40, 0]], float), cls="Margin"))
            rd.finish()
    res = proj.export(n_boot=0)
    exp = pd.read_csv(res.folder / "manifest.csv", dtype=str).set_index("sample")
    assert exp.loc["E34", "regions"] == str(gj)                     # the cohort's regions, carried over
    assert exp.loc["G01", "regions"] == "G01.geojson"               # the readers' final regions
    assert exp.loc["E34", "pixel_size_um"] == "1.0"
    out = run_batch(res.folder / "manifest.csv", {"cell_type_key": "CellType", "regions": "geojson"},
                    tmp_path / "r", scheduler="sequential", progress=False)
    assert sorted(out.done) == ["E34", "G01"], out.failed.to_dict("records")
    assert set(out.metrics.query("sample == 'E34'")["region"]) == {"whole", "Stroma"}
    assert set(out.metrics.query("sample == 'G01'")["region"]) == {"whole", "Margin"}   # the class as drawn


def test_export_skip_counts_the_undecided_disagreements(cytomapper_dir, tmp_path):
    """QA M6: a half-done adjudication was skipped with the count of every disagreement, as if
    nothing had been decided."""
    man = write_manifest(_rows(cytomapper_dir, ["E34"], images=("E34",)), tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    for who, t in (("alice", "celltype_A"), ("bob", "celltype_B")):
        with proj.start_read("E34", who) as rd:
            rd.curation.assign([0, 1, 2], t)
            rd.finish()
    res = proj.export(n_boot=0)
    assert "not adjudicated: 3 of 3 disagreeing cell(s)" in res.skipped["E34"]
    with proj.start_adjudication("E34", "carol") as adj:
        ids = adj.disagreements()["cell_id"].tolist()
        adj.decide(ids[:2], "celltype_C")
    res = proj.export(n_boot=0)
    assert "not adjudicated: 1 of 3 disagreeing cell(s) and 0 of 0 region class(es) undecided" in res.skipped["E34"]


def _project3(cytomapper_dir, tmp_path, **kw):
    man = write_manifest(_rows(cytomapper_dir, ["E34", "G01", "J02"], images=("E34", "G01", "J02")),
                         tmp_path / "manifest.csv")
    return init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"], **kw)


def test_assign_refuses_a_reviewer_id_that_is_not_in_the_project(cytomapper_dir, tmp_path, capsys):
    """QA low: assign --reader bbo silently registered a new reviewer 'bbo'."""
    import pytest

    from napari_carspatial.cli import main
    from napari_carspatial.model import SampleError

    proj = _project3(cytomapper_dir, tmp_path)
    with pytest.raises(SampleError, match=r"reviewer 'bbo' is not in the project \(reviewers: alice, bob, carol\)"):
        proj.assign(None, readers=("alice", "bbo"))
    assert "bbo" not in load_project(proj.folder).reviewers
    assert main(["project", "assign", str(proj.folder), "--reader", "alice", "--reader", "bbo"]) == 2
    assert "a typo?" in capsys.readouterr().err
    assert main(["project", "assign", str(proj.folder), "--reader", "alice", "--reader", "dave",
                 "--add-reviewer"]) == 0
    assert "dave" in load_project(proj.folder).reviewers


def test_reassigning_reads_after_adjudication_restarts_the_adjudication(cytomapper_dir, tmp_path):
    """QA low: assign --force after the adjudication left the sample 'adjudicated' while its new
    read 2 was 'not started'."""
    proj = _project3(cytomapper_dir, tmp_path)
    proj.assign(["E34"], readers=("alice", "bob"), adjudicator="carol")
    for who, t in (("alice", "celltype_A"), ("bob", "celltype_B")):
        with proj.start_read("E34", who) as rd:
            rd.curation.assign([0], t)
            rd.finish()
    with proj.start_adjudication("E34", "carol") as adj:
        adj.decide(adj.disagreements()["cell_id"], "celltype_C")
        adj.finish()
    assert proj.status(unblind=True).set_index("sample").loc["E34", "status"] == "adjudicated"
    proj.assign(["E34"], readers=("alice", "carol"), adjudicator="bob", force=True)
    row = load_project(proj.folder).status(unblind=True).set_index("sample").loc["E34"]
    assert (row["read2"], row["read2_status"]) == ("carol", "not_started")
    assert row["adjudication_status"] == "not_started" and row["status"] == "in_progress"
    proj.assign(["E34"], readers=("alice", "bob"), adjudicator="carol", force=True)
    row = load_project(proj.folder).status(unblind=True).set_index("sample").loc["E34"]
    assert (row["read2_status"], row["adjudication_status"], row["status"]) == ("not_started", "not_started",
                                                                               "in_progress")
    kept = list((proj.folder / "adjudication").glob("*.superseded-*.h5ad"))
    assert len(kept) == 1 and not (proj.folder / "adjudication" / f"{proj.entry('E34').code}.h5ad").exists()


def test_blinded_status_is_in_code_order(cytomapper_dir, tmp_path):
    """QA low: blinded status listed the coded samples in manifest order (patient / timepoint order)."""
    proj = _project3(cytomapper_dir, tmp_path)
    st = proj.status()
    assert st["sample"].tolist() == sorted(st["sample"]) == sorted(e.code for e in proj.samples.values())
    assert proj.status(unblind=True)["sample"].tolist() == ["E34", "G01", "J02"]


def test_one_sample_has_one_agreement_interval_everywhere(cytomapper_dir, tmp_path, capsys):
    """QA low: status (500 resamples), export (1000) and the report (2000) gave one sample three
    intervals."""
    import re

    import pytest

    from napari_carspatial.cli import main
    from napari_carspatial.review import agreement_section

    proj = _project3(cytomapper_dir, tmp_path, blinding=False)
    proj.assign(["E34"], readers=("alice", "bob"), adjudicator="carol")
    for who, rows in (("alice", [0, 1, 2, 3]), ("bob", [2, 3, 4, 5, 6])):
        with proj.start_read("E34", who) as rd:
            rd.curation.assign(rows, "celltype_A")
            rd.finish()
    ta = proj.trial_agreement().per_sample.set_index("sample").loc["E34"]
    assert main(["project", "status", str(proj.folder), "--agreement"]) == 0
    out = capsys.readouterr().out
    lo, hi = (float(v) for v in re.search(r"E34: kappa [0-9.]+ \(([0-9.]+)-([0-9.]+)\)", out).groups())
    assert (lo, hi) == (round(ta["kappa_ci_low"], 3), round(ta["kappa_ci_high"], 3))
    html = agreement_section(proj.folder)   # the cohort report's section
    assert f"{ta['kappa_ci_low']:.3f}" in html and f"{ta['kappa_ci_high']:.3f}" in html
    with proj.start_adjudication("E34", "carol") as adj:
        adj.decide(adj.disagreements()["cell_id"], "celltype_A")
        adj.finish()
    assert main(["project", "export", str(proj.folder)]) == 0
    exp = pd.read_csv(proj.folder / "export" / "agreement_samples.csv").set_index("sample").loc["E34"]
    assert (exp["kappa_ci_low"], exp["kappa_ci_high"]) == pytest.approx((ta["kappa_ci_low"], ta["kappa_ci_high"]))
