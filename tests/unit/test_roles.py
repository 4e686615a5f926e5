"""Cell-type column detection and roles: inferred from any lab's names, editable, saved with the sample."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.roles import (
    MarkerRule,
    infer_role,
    infer_roles,
    load_roles,
    parse_roles,
    resolve_roles,
    role_masks,
    store_roles,
)
from napari_carspatial.model import SampleError
from napari_carspatial.model.cell_types import find_cell_type_key, resolve_cell_type_key


def _table(**cols):
    n = len(next(iter(cols.values())))
    obs = pd.DataFrame(cols, index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.random.default_rng(0).uniform(0, 100, (n, 2))
    return a


# --------------------------------------------------------------------------- the cell-type column
@pytest.mark.parametrize("col", ["cell_type", "celltype", "CellType", "Phenotype", "phenotype", "Cell Type",
                                 "cell.type", "leiden"])
def test_common_names_are_found(col):
    a = _table(other=["x", "y"], **{col: pd.Categorical(["A", "B"])})
    assert resolve_cell_type_key(a).key == col


def test_order_given_curated_and_bad_columns():
    a = _table(cluster=pd.Categorical(["1", "2"]), Phenotype=["T", "B"], cell_type=pd.Categorical(["T", "B"]))
    assert resolve_cell_type_key(a).key == "cell_type"          # the first common name wins over later ones
    a.obs["cell_type_curated"] = pd.Categorical(["T", "T"])
    k = resolve_cell_type_key(a)
    assert (k.key, k.how) == ("cell_type_curated", "curated") and "curated copy" in k.describe()
    assert resolve_cell_type_key(a, "Phenotype").how == "given"
    with pytest.raises(SampleError, match="no column 'nope'"):
        resolve_cell_type_key(a, "nope", path="t.h5ad")
    # a float column with a type-like name is not a type column
    b = _table(phenotype=[0.3, 0.7], region=pd.Categorical(["r", "r"]))
    with pytest.raises(SampleError) as err:
        resolve_cell_type_key(b, path="cells.csv")
    msg = str(err.value)
    assert msg.startswith("cells.csv: no cell-type column") and "gating" in msg and "clustering" in msg
    assert "\n" not in msg and find_cell_type_key(b) is None


# --------------------------------------------------------------------------- inference
@pytest.mark.parametrize("name,role,subs", [
    ("Tumor", "tumor", set()), ("Tumour", "tumor", set()), ("CK+ tumor", "tumor", set()),
    ("Cancer", "tumor", set()), ("Epithelial", "tumor", set()), ("PanCK+", "tumor", set()),
    ("Tumor (antigen-neg)", "tumor", {"antigen_neg"}), ("MSLN- tumour", "tumor", {"antigen_neg"}),
    ("MSLN+ tumor", "tumor", set()), ("Tumour (PSMA-)", "tumor", {"antigen_neg"}),
    ("Mac", "myeloid", {"macrophage"}), ("CD68+ macrophage", "myeloid", {"macrophage"}),
    ("Tumor-associated macrophage", "myeloid", {"macrophage"}), ("MDSC", "myeloid", {"mdsc"}),
    ("PD-L1+ macrophage", "myeloid", {"macrophage", "pdl1_macrophage"}), ("Monocytes", "myeloid", set()),
    ("Helper T", "cd4_t", {"t_cell"}), ("CD4+ T cell", "cd4_t", {"t_cell"}), ("Treg", "cd4_t", {"t_cell"}),
    ("Cytotoxic T", "cd8_t", {"t_cell"}), ("CD8 T", "cd8_t", {"t_cell"}), ("CD4-CD8+", "cd8_t", {"t_cell"}),
    ("Tumor-infiltrating CD8", "cd8_t", {"t_cell"}), ("T cell", "t_cell", set()),
    ("CAR+", "car_t", set()), ("CAR T", "car_t", set()), ("CAR-T cell", "car_t", set()), ("CART", "car_t", set()),
    ("B", "b", set()), ("B cells", "b", set()), ("Stroma", "stroma", set()),
    ("Cancer-associated fibroblast", "stroma", set()), ("Endothelial", "endothelium", set()),
    ("CAR- T cell", None, set()), ("celltype_B", None, set()), ("Other", None, set()), ("NK", None, set()),
])
def test_synonyms(name, role, subs):
    assert infer_role(name) == (role, subs)


def test_demo_names_give_the_old_default_roles():
    from napari_carspatial.analysis.regions import DEFAULT_ROLES
    from napari_carspatial.datasets._cells import CELL_TYPES

    got = infer_roles(CELL_TYPES)
    for role, types in DEFAULT_ROLES.items():
        if types is not None:
            assert set(got[role]) == set(types) - {"MDSC"}, role  # the demo has no MDSC type


# --------------------------------------------------------------------------- editing, rules, storage
def test_given_roles_replace_inferred_ones_and_unknown_roles_are_refused():
    a = _table(Phenotype=pd.Categorical(["Tumour", "CAR+", "Mac", "celltype_X", "Tumour"]))
    m = resolve_roles(a, cell_type_key="Phenotype", roles={"myeloid": ["Mac", "celltype_X"]})
    assert m.types["tumor"] == ["Tumour"] and m.types["car_t"] == ["CAR+"] and m.source["tumor"] == "inferred"
    assert m.types["myeloid"] == ["Mac", "celltype_X"] and m.source["myeloid"] == "given" and m.unmapped == []
    masks, info = role_masks(a, roles=m)
    assert masks["myeloid"].tolist() == [False, False, True, True, False] and info["cell_type_key"] == "Phenotype"
    with pytest.raises(SampleError, match="unknown role 'macrophages and friends'"):
        parse_roles({"macrophages and friends": ["Mac"]})
    with pytest.raises(SampleError, match="not valid JSON"):
        parse_roles("{car_t: CAR}")
    # role names are forgiving: "CAR T", "Tumour", "antigen-negative tumour"
    assert set(parse_roles('{"CAR T": ["x"], "Tumour": ["y"], "antigen-negative tumour": ["z"]}').types) == \
        {"car_t", "tumor", "antigen_neg"}


def test_car_t_as_a_marker_rule_when_no_type_is_called_car_t():
    rng = np.random.default_rng(1)
    n = 400
    types = rng.choice(np.array(["T cell", "Tumour"]), size=n)
    car = np.where(types == "T cell", rng.choice([1.0, 300.0], size=n), 1.0)
    a = ad.AnnData(X=np.column_stack([car, rng.uniform(0, 5, n)]).astype(np.float32),
                   obs=pd.DataFrame({"celltype": pd.Categorical(types)}, index=[f"c{i}" for i in range(n)]),
                   var=pd.DataFrame(index=["CAR", "CD3"]))
    a.obsm["spatial"] = rng.uniform(0, 300, (n, 2))
    masks, info = role_masks(a, roles={"car_t": {"rule": "CAR+", "thresholds": {"CAR": 100}, "within": ["T cell"]}})
    assert (masks["car_t"] == ((car > 100) & (types == "T cell"))).all() and masks["car_t"].sum() > 50
    assert info["mapped"]["car_t"] and info["rule_thresholds"]["car_t"] == {"CAR": 100.0}
    # without a threshold: Otsu on asinh(x/5) separates the two levels
    masks, info = role_masks(a, roles={"car_t": {"rule": "CAR+"}})
    assert (masks["car_t"] == (car > 100)).all() and 1 < info["rule_thresholds"]["car_t"]["CAR"] < 300
    with pytest.raises(SampleError, match="no marker 'CD19'"):
        role_masks(a, roles={"car_t": {"rule": "CD19+"}})
    assert MarkerRule("CD3+ CAR+").to_dict() == {"rule": "CD3+ CAR+"}


def test_role_mapping_survives_write_and_reopen(tmp_path):
    from napari_carspatial.io import read_sample, write_table

    a = _table(cell_id=np.arange(1, 6), Phenotype=pd.Categorical(["Tumour", "CAR+", "Mac", "Helper T", "Blob"]))
    mapping = resolve_roles(a, cell_type_key="Phenotype",
                            roles={"myeloid": ["Mac", "Blob"], "car_t": {"rule": "CAR+", "thresholds": {"CAR": 2}}})
    store_roles(a, mapping)
    path = write_table(a, tmp_path / "cells.h5ad")
    back = read_sample(path).table
    got = load_roles(back)
    assert got is not None and got.to_dict() == mapping.to_dict()
    assert got.types["myeloid"] == ["Mac", "Blob"] and got.rules["car_t"].thresholds == {"CAR": 2.0}
    # reopened, the stored edits are used before inferring, for the same column
    again = resolve_roles(back, cell_type_key="Phenotype")
    assert again.types["myeloid"] == ["Mac", "Blob"] and again.source["myeloid"] == "stored"
    assert "car_t" in again.rules and again.types["tumor"] == ["Tumour"]
    assert json.loads(back.uns["carspatial"]["roles"])["cell_type_key"] == "Phenotype"
