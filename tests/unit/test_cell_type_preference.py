"""The adjudicated column is the one analysis and cohort use by default once it exists (issue 18),
found by the one rule of :mod:`napari_carspatial.model.cell_types`; checked through a real review
of real IMC data (cytomapper) into ``carspatial batch`` and ``carspatial analyze``."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.model.cell_types import (
    base_cell_type_key,
    find_cell_type_key,
    resolve_cell_type_key,
)
from napari_carspatial.review import preferred_cell_type_column

ROLES = {"car_t": ["celltype_A"], "tumor": ["celltype_B"], "myeloid": ["celltype_C"]}


def _t(**cols):
    n = len(next(iter(cols.values())))
    return ad.AnnData(obs=pd.DataFrame({k: pd.Categorical(v) if not isinstance(v[0], (bool, np.bool_)) else v
                                        for k, v in cols.items()}, index=[str(i) for i in range(n)]))


def test_order_final_key_adjudicated_curated_original():
    a = _t(CellType=["a", "b"])
    assert (resolve_cell_type_key(a).key, resolve_cell_type_key(a).how) == ("CellType", "found")
    a.obs["CellType_curated"] = pd.Categorical(["b", "b"])
    assert resolve_cell_type_key(a).key == "CellType_curated"
    a.obs["CellType_adjudicated"] = pd.Categorical(["c", "b"])
    a.obs["excluded_adjudicated"] = [False, True]          # a flag, never a type column
    k = resolve_cell_type_key(a)
    assert (k.key, k.how, k.base) == ("CellType_adjudicated", "adjudicated", "CellType")
    assert "adjudicated column of 'CellType'" in k.describe()
    a.obs["other_adjudicated"] = pd.Categorical(["x", "y"])
    a.uns["carspatial"] = {"review": {"final_key": "other_adjudicated"}}
    assert resolve_cell_type_key(a).key == "other_adjudicated"     # what the export recorded wins
    a.uns["carspatial"] = {"review": json.dumps({"final_key": "other_adjudicated"})}
    assert find_cell_type_key(a) == "other_adjudicated"
    assert base_cell_type_key(a) == "CellType"
    assert resolve_cell_type_key(a, "CellType").key == "CellType"   # a named column always wins
    # names compared without case / punctuation; the review's wrapper follows the same rule
    b = _t(Cell_Type=["a"], Cell_Type_adjudicated=["b"])
    assert find_cell_type_key(b) == "Cell_Type_adjudicated" == preferred_cell_type_column(b)
    assert preferred_cell_type_column(b.obs) == "Cell_Type_adjudicated"
    c = _t(phenotype=["a"])
    c.uns["carspatial"] = {"curation": {"curated_key": "phenotype_mine"}}
    c.obs["phenotype_mine"] = pd.Categorical(["z"])
    assert resolve_cell_type_key(c).key == "phenotype_mine"


@pytest.fixture(scope="module")
def review_export(cytomapper_dir, tmp_path_factory):
    """E34 (pre) and G01 (post) read twice and adjudicated; the export folder."""
    from napari_carspatial.cohort import write_manifest
    from napari_carspatial.io import read_table
    from napari_carspatial.review import init_project

    tmp = tmp_path_factory.mktemp("review")
    rows = []
    for sid, tp in (("E34", "pre"), ("G01", "post")):
        t = read_table(cytomapper_dir / "cells.csv", pixel_size_um=1.0, image=f"{sid}_imc.tiff")
        t.write_h5ad(tmp / f"{sid}.h5ad")
        rows.append({"sample": sid, "patient": "P1", "timepoint": tp, "response": "CR",
                     "image": str(cytomapper_dir / "images" / f"{sid}_imc.tiff"),
                     "mask": str(cytomapper_dir / "masks" / f"{sid}_mask.tiff"), "table": str(tmp / f"{sid}.h5ad")})
    man = write_manifest(rows, tmp / "manifest.csv")
    proj = init_project(tmp / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    for sid in ("E34", "G01"):
        for who in ("alice", "bob"):
            with proj.start_read(sid, who) as rd:
                n = rd.table.n_obs
                rd.curation.assign(np.arange(0, n, 7), "celltype_A")
                rd.curation.exclude([2], "fold")
                if who == "bob":
                    rd.curation.assign([1], "celltype_B")
                rd.finish()
    for sid in ("E34", "G01"):
        with proj.start_adjudication(sid, "carol") as adj:
            adj.decide(adj.disagreements()["cell_id"], "celltype_B")
            adj.finish()
    return proj.export(n_boot=0)


def test_batch_uses_the_adjudicated_column_and_leaves_excluded_cells_out(review_export, tmp_path):
    """QA H4: batch on a review export's manifest (no cell_type_key) used 'CellType', the
    readers' source column, not CellType_adjudicated."""
    from napari_carspatial.cohort import run_batch

    res = run_batch(review_export.folder / "manifest.csv", {"regions": "whole", "metric_options": {"roles": ROLES}},
                    tmp_path / "r", scheduler="sequential", progress=False)
    assert not len(res.failed), res.failed.to_dict("records")
    for sid in ("E34", "G01"):
        t = ad.read_h5ad(review_export.written[sid])
        summ = json.loads((res.out / "samples" / sid / "summary.json").read_text(encoding="utf-8"))
        assert summ["cell_type_key"] == "CellType_adjudicated"
        keep = ~t.obs["excluded_adjudicated"].to_numpy(bool)
        assert keep.sum() == t.n_obs - 1                         # cell 2, excluded by both readers
        want = t.obs.loc[keep, "CellType_adjudicated"].astype(str).value_counts().to_dict()
        assert summ["cell_types"] == want and summ["n_cells"] == int(keep.sum())
        assert want != t.obs["CellType"].astype(str).value_counts().to_dict()
        assert any("excluded" in w for w in summ["warnings"])
        n = res.metrics.query("sample == @sid and region == 'whole' and metric == 'n_cells'")["value"].iloc[0]
        assert n == keep.sum()


def test_analyze_uses_the_adjudicated_column(review_export, tmp_path):
    from napari_carspatial.cli import main

    out = tmp_path / "a"
    rc = main(["analyze", str(review_export.written["E34"]), "-o", str(out), "--stats", "cart",
               "--roles", json.dumps(ROLES), "--no-progress"])
    assert rc == 0
    params = json.loads((out / "params.json").read_text(encoding="utf-8"))
    assert (params["cell_type_key"], params["cell_type_key_how"]) == ("CellType_adjudicated", "adjudicated")
