"""The opt-in ``ligrec:`` section of the batch config: per sample and region, the neighbour
ligand-receptor test's metrics in ``metrics.csv`` (the same numbers as
``ligrec_sample_metrics`` on the sample), a report section, and the pixel size with its source in
every sample's summary and in the report. Real data: cytomapper pancreas IMC (``CellType``
A/B/C, markers H3, CD99, PIN, CD8a, CDH; 1 µm/px from the manifest), plus the demo OME-TIFF
(its pixel size from OME-XML) for the CAR T preset on a protein panel (PD-L1 / PD-1)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort import load_config, run_batch, write_manifest
from napari_carspatial.model import SampleError


def _rows(cytomapper_dir, ids=("E34", "G01")):
    return [{"sample": sid, "patient": "P1", "timepoint": tp, "response": "CR",
             "image": str(cytomapper_dir / "images" / f"{sid}_imc.tiff"),
             "mask": str(cytomapper_dir / "masks" / f"{sid}_mask.tiff"),
             "table": str(cytomapper_dir / "cells.csv"), "pixel_size_um": 1.0}
            for sid, tp in zip(ids, ("pre", "post"), strict=False)]


def _summary(out, sid):
    return json.loads((out / "samples" / sid / "summary.json").read_text(encoding="utf-8"))


def test_ligrec_rows_equal_the_function_on_each_sample(cytomapper_dir, tmp_path):
    from napari_carspatial.analysis.ligrec import ligrec_sample_metrics
    from napari_carspatial.cohort.report import write_report
    from napari_carspatial.cohort.samples import read_cohort_sample

    pairs = [["CD99", "CD99"], ["CDH", "CDH"]]
    man = write_manifest(_rows(cytomapper_dir), tmp_path / "m.csv")
    cfg = {"regions": "whole", "cell_type_key": "CellType", "ligrec": {"pairs": pairs, "max_distance_um": 30}}
    res = run_batch(man, cfg, tmp_path / "r", scheduler="sequential", progress=False)
    assert sorted(res.done) == ["E34", "G01"], res.failed.to_dict("records")
    m = res.metrics
    for sid in ("E34", "G01"):
        s = read_cohort_sample(_rows(cytomapper_dir)[0 if sid == "E34" else 1])
        ref = ligrec_sample_metrics(s.table, "CellType", pairs=[tuple(p) for p in pairs], max_distance_um=30,
                                    pixel_size_um=1.0, seed=0)
        got = m[(m["sample"] == sid) & m["metric"].str.startswith("lr_")].set_index(["region", "metric"])["value"]
        ref = ref.set_index(["region", "metric"])["value"]
        assert len(ref) > 10 and set(got.index) == set(ref.index)
        np.testing.assert_allclose(got.loc[ref.index].to_numpy(float), ref.to_numpy(float), rtol=1e-9)
        assert _summary(res.out, sid)["pixel_size_source"] == "manifest pixel_size_um"
    v = m.set_index(["sample", "region", "metric"])["value"]
    assert v[("E34", "whole", "lr_n_tested")] >= 1 and v[("E34", "whole", "lr_n_significant")] >= 1
    # the statistics test log2 enrichment across samples, never the contact-count-driven z
    write_report(res.out, n_boot=50)
    st = pd.read_csv(res.out / "statistics.csv")
    assert st["metric"].str.startswith("lr_log2_enrichment:").any()
    assert not st["metric"].str.startswith(("lr_z:", "lr_n_")).any()
    html = (res.out / "report.html").read_text(encoding="utf-8")
    assert "Ligand-receptor signals between neighbouring cells" in html and "CD99-CD99" in html
    assert "pixel size source" in html and "manifest pixel_size_um" in html


def test_cart_preset_on_two_panels_and_pixel_size_sources(cytomapper_dir, tmp_path):
    """The CAR T preset: cytomapper's panel has none of its genes, so its rows say so (NaN plus the
    reason, a warning in its summary) and the sample still finishes; the demo's PD-L1 / PD-1 run as
    CD274 -> PDCD1. The report names each sample's pixel-size source (manifest, OME-XML)."""
    from napari_carspatial.cohort.report import write_report
    from napari_carspatial.datasets import write_demo

    d = write_demo(tmp_path / "demo", size=160)
    rows = _rows(cytomapper_dir, ids=("E34",)) + [
        {"sample": "demo", "patient": "P1", "timepoint": "post", "response": "CR", "image": str(d["image"]),
         "mask": str(d["mask"]), "table": str(d["table"])}]
    man = write_manifest(rows, tmp_path / "m.csv")
    res = run_batch(man, {"regions": "whole", "ligrec": True}, tmp_path / "r", scheduler="sequential",
                    progress=False)
    assert sorted(res.done) == ["E34", "demo"], res.failed.to_dict("records")
    m = res.metrics
    e = m[(m["sample"] == "E34") & m["metric"].str.startswith("lr_")]
    assert e["metric"].tolist() == ["lr_n_tested"] and np.isnan(e["value"].iloc[0])
    assert "none of the ligand-receptor pairs (cart) has its genes in the panel" in e["note"].iloc[0]
    assert any("ligand-receptor" in w for w in _summary(res.out, "E34")["warnings"])
    dm = m[(m["sample"] == "demo") & m["metric"].str.startswith("lr_z:")]
    assert len(dm) and dm["metric"].str.startswith("lr_z:CD274-PDCD1:").all()
    assert (_summary(res.out, "demo")["pixel_size_um"], _summary(res.out, "demo")["pixel_size_source"]) == (
        0.5, "OME-XML PhysicalSizeX")
    html = write_report(res.out, n_boot=50).read_text(encoding="utf-8")
    assert "OME-XML PhysicalSizeX" in html and "manifest pixel_size_um" in html
    assert "has its genes in the panel" in html and "CD274-PDCD1" in html


def test_ligrec_config_section(tmp_path):
    assert load_config({}).ligrec is None and load_config({"ligrec": False}).ligrec is None
    assert load_config({"ligrec": True}).ligrec == {}
    # a config without the section keeps the fingerprint finished samples were marked with
    assert load_config({}).fingerprint() == load_config({"ligrec": None}).fingerprint()
    assert load_config({"ligrec": {}}).fingerprint() != load_config({}).fingerprint()
    (tmp_path / "pairs.csv").write_text("ligand,receptor\nCD99,CD99\n", encoding="utf-8")
    f = tmp_path / "a.yaml"
    f.write_text("ligrec:\n  pairs: pairs.csv\n", encoding="utf-8")
    assert load_config(f).ligrec["pairs"] == str(tmp_path / "pairs.csv")
    with pytest.raises(SampleError, match="unknown ligrec option 'radius'"):
        load_config({"ligrec": {"radius": 3}})
    with pytest.raises(SampleError, match="ligrec.method must be"):
        load_config({"ligrec": {"method": "voronoi"}})
    with pytest.raises(SampleError, match=r"ligrec.pairs must be"):
        load_config({"ligrec": {"pairs": [["CD99"]]}})


def test_unloadable_pairs_fail_before_any_sample(cytomapper_dir, tmp_path):
    man = write_manifest(_rows(cytomapper_dir), tmp_path / "m.csv")
    with pytest.raises(SampleError, match="ligrec.pairs 'no_such_resource' cannot be loaded"):
        run_batch(man, {"regions": "whole", "ligrec": {"pairs": "no_such_resource"}}, tmp_path / "r",
                  scheduler="sequential", progress=False)
    assert not list((tmp_path / "r" / "samples").iterdir())
