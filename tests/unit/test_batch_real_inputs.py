"""The batch reads each manifest row's own cells, on real data (cytomapper pancreas IMC, 1 µm/px):
a table of another image is refused (not analysed with a warning), a multi-image table is cut to
the sample's rows, a pixel size can come from the manifest or the config, and the config's
``quantify:`` options reach the measurement of a sample without a table."""

from __future__ import annotations

import json

from napari_carspatial.cohort import run_batch, write_manifest
from napari_carspatial.io import read_table

ROLES = {"car_t": ["celltype_A"], "tumor": ["celltype_B"], "myeloid": ["celltype_C"]}


def _cfg(**kw):
    return {"cell_type_key": "CellType", "regions": "whole", "metric_options": {"roles": ROLES}, **kw}


def _h5ad(cytomapper_dir, path, image=None):
    """cells.csv (all three images, or one image's rows) as an .h5ad carrying the pixel size (1 µm)."""
    t = read_table(cytomapper_dir / "cells.csv", pixel_size_um=1.0, image=image)
    t.write_h5ad(path)
    return path


def _image_rows(cytomapper_dir, tmp_path, *, table_of=None):
    """Manifest rows for E34 and G01: image + mask, and each image's own rows of cells.csv
    (``table_of`` swaps in another image's table)."""
    rows = []
    for sid, tp in (("E34", "pre"), ("G01", "post")):
        src = (table_of or {}).get(sid, sid)
        t = _h5ad(cytomapper_dir, tmp_path / f"{src}_cells.h5ad", image=f"{src}_imc.tiff")
        rows.append({"sample": sid, "patient": "P1", "timepoint": tp, "response": "CR",
                     "image": str(cytomapper_dir / "images" / f"{sid}_imc.tiff"),
                     "mask": str(cytomapper_dir / "masks" / f"{sid}_mask.tiff"), "table": str(t)})
    return rows


def _summary(out, sid):
    return json.loads((out / "samples" / sid / "summary.json").read_text(encoding="utf-8"))


def test_a_table_of_another_image_is_refused_naming_the_ids(cytomapper_dir, tmp_path):
    """QA H1: E34's image and mask with G01's table ran to "E34: done (122 cells)" on G01's cells
    after only a warning; plain read_sample refuses it (0 of 122 ids in the mask)."""
    man = write_manifest(_image_rows(cytomapper_dir, tmp_path, table_of={"E34": "G01"}), tmp_path / "m.csv")
    res = run_batch(man, _cfg(), tmp_path / "r", scheduler="sequential", progress=False)
    assert res.done == ["G01"]
    fail = res.failed.set_index("sample").loc["E34"]
    assert fail["stage"] == "read"
    assert "122 of 122 table ids are not in the mask" in fail["error"]
    assert "G01_cells.h5ad" in fail["error"]
    assert set(res.metrics["sample"]) == {"G01"}
