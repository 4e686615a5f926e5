"""The cell-type column on the real CosMx crop (issue 14: the Legend coloured by ``fov``): an
identifier-like column (field of view, cell id, the SpatialData region) is never the cell-type
column; the RNA typing's own column ``cell_type_rna`` is found by the one rule every dock uses."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.model import SampleError
from napari_carspatial.model.cell_types import (
    base_cell_type_key,
    find_cell_type_key,
    is_id_like,
    resolve_cell_type_key,
)

REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"
                           / "real"))
COSMX = REAL / "cosmx_crop"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not here: {path}")
    return path


@pytest.fixture(scope="module")
def cosmx_table():
    from napari_carspatial.io import read_sample

    res = read_sample(_need(COSMX), pixel_size_um=0.18)
    s = res[0] if isinstance(res, list) else res
    return s.table


def test_cosmx_table_has_no_cell_type_column_and_fov_is_never_one(cosmx_table):
    t = cosmx_table
    # what the reader gives: the categorical fov (one value), its labels and region links, cell_ID
    assert {"fov", "fov_labels", "cells_region", "cell_ID"} <= set(t.obs.columns)
    assert isinstance(t.obs["fov"].dtype, pd.CategoricalDtype)
    for c in ("fov", "fov_labels", "cells_region", "cell_ID"):
        assert is_id_like(c), c
    assert find_cell_type_key(t) is None
    with pytest.raises(SampleError, match="no cell-type column"):
        resolve_cell_type_key(t)


def test_cosmx_rna_cell_types_are_found_before_fov(cosmx_table):
    t = cosmx_table.copy()
    rng = np.random.default_rng(0)
    # what the Transcripts dock's "Cell types from genes" writes beside an original column
    t.obs["cell_type_rna"] = pd.Categorical(rng.choice(["0: Rims2/Tenm2", "1: Stxbp1/Nrgn"], t.n_obs))
    assert find_cell_type_key(t) == "cell_type_rna"
    assert base_cell_type_key(t) == "cell_type_rna"
    found = resolve_cell_type_key(t)
    assert (found.key, found.how) == ("cell_type_rna", "found")
    # a Leiden column too: the named cell types win over the clusters
    t.obs["leiden"] = pd.Categorical(rng.choice(["0", "1", "2"], t.n_obs))
    assert find_cell_type_key(t) == "cell_type_rna"
    # the curated copy of the RNA types (a curation started from it) is preferred, as for cell_type
    t.obs["cell_type_rna_curated"] = t.obs["cell_type_rna"].copy()
    assert find_cell_type_key(t) == "cell_type_rna_curated"
    assert base_cell_type_key(t) == "cell_type_rna"


def test_cosmx_flat_file_columns_as_integers():
    """The metadata file read by pandas: ``fov`` and ``cell_ID`` are integers with few values."""
    meta = pd.read_csv(_need(COSMX) / "Run5642_S3_Quarter_metadata_file.csv")
    assert pd.api.types.is_integer_dtype(meta["fov"])
    a = ad.AnnData(obs=meta.set_index(meta["cell_ID"].astype(str)))
    assert find_cell_type_key(a) is None
    a.obs["CellType_rna"] = pd.Categorical(np.where(meta["Area"].to_numpy() > 8000, "large", "small"))
    assert find_cell_type_key(a) == "CellType_rna"


@pytest.mark.parametrize("name", ["fov", "FOV", "fov_labels", "cell_ID", "CellID", "cells_region", "region",
                                  "acquisition", "ImageNumber", "ObjectNumber", "sample_id", "cluster_id"])
def test_id_like_names(name):
    assert is_id_like(name)


@pytest.mark.parametrize("name", ["cell_type", "CellType", "cell_type_rna", "Phenotype", "phenotype_gated",
                                  "leiden", "CellType_original_meaning", "compartment", "area"])
def test_not_id_like_names(name):
    assert not is_id_like(name)


def test_known_names_still_come_first():
    obs = pd.DataFrame({"cell_type_rna": pd.Categorical(["a", "b"] * 5),
                        "CellType": pd.Categorical(["x", "y"] * 5),
                        "cell_type_score": np.linspace(0, 1, 10)})   # a float: never a type column
    a = ad.AnnData(obs=obs.set_index(pd.Index([f"c{i}" for i in range(10)])))
    assert find_cell_type_key(a) == "CellType"
    a.obs = a.obs.drop(columns=["CellType", "cell_type_rna"])
    assert find_cell_type_key(a) is None
