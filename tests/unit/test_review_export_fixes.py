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
    assert set(out.metrics.query("sample == 'G01'")["region"]) == {"whole", "Invasive margin"}


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
