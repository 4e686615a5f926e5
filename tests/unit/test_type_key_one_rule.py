"""One cell-type-column rule for the whole product (issue 14): the hover, the inspector, the
legend and the curation all use :mod:`napari_carspatial.model.cell_types`, on the demo's names and
on real tables' own names ('CellType', 'celltype', 'phenotype', ...)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial import _napari
from napari_carspatial._napari import find_cell_type_key, hover_features
from napari_carspatial.model import Sample
from napari_carspatial.model.cell_types import base_cell_type_key
from napari_carspatial.model.curation import Curation

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


def _table(col: str, values=("T cell", "Tumor", "T cell", "B cell"), extra: dict | None = None):
    obs = pd.DataFrame({"cell_id": np.arange(1, len(values) + 1), col: pd.Categorical(values), **(extra or {})},
                       index=[f"c{i}" for i in range(len(values))])
    t = ad.AnnData(X=np.ones((len(values), 2), dtype=np.float32), obs=obs)
    t.var_names = ["CD3", "PanCK"]
    t.obsm["spatial"] = np.c_[np.arange(len(values)) * 10.0 + 5, np.full(len(values), 5.0)]
    return t


@pytest.mark.parametrize("col", ["cell_type", "CellType", "celltype", "Cell Type", "phenotype", "Phenotype"])
def test_every_layer_finds_the_same_column(col):
    t = _table(col, extra={"phenotype_score": np.linspace(0, 1, 4)})
    assert find_cell_type_key(t) == col
    assert _napari.guess_type_key is find_cell_type_key   # the old name is the same function
    lab = np.repeat(np.arange(1, 5, dtype=np.uint32), 10)[None, :].repeat(10, axis=0)
    s = Sample("s", labels=[lab], table=t).validate()
    feats = hover_features(s)
    assert list(feats.columns) == ["index", col]
    cur = Curation(t)
    assert cur.type_key == col and cur.curated_key == f"{col}_curated"
    # once curated, the docks show the curated copy; a new curation still starts from the original
    assert find_cell_type_key(t) == f"{col}_curated"
    assert base_cell_type_key(t) == col
    assert Curation(t).type_key == col


def test_no_type_column_is_none_everywhere():
    t = _table("compartment")
    t.obs["score"] = np.linspace(0, 1, t.n_obs)
    assert find_cell_type_key(t) is None
    with pytest.raises(ValueError, match="no cell-type column"):
        Curation(t)


def test_real_cytomapper_celltype():
    from napari_carspatial.io import read_sample

    root = REAL / "cytomapper_pancreas_imc"
    s = read_sample(root / "images" / "E34_imc.tiff", mask=root / "masks" / "E34_mask.tiff",
                    table=root / "cells.csv", panel=root / "panel.csv", pixel_size_um=1.0)
    # 'CellType', not 'CellType_original_meaning' (the data's README: the cell-type column)
    assert find_cell_type_key(s.table) == "CellType"
    assert list(hover_features(s).columns) == ["index", "CellType"]
    assert Curation(s.table.copy()).type_key == "CellType"
