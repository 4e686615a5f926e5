"""``carspatial analyze SAMPLE -o OUT`` with no options on the real datasets and tables derived from
them under other names: every statistic runs, or one line says what is missing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cli import main


def _err(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _check_outputs(out, n_stats=11):
    params = json.loads((out / "params.json").read_text())
    m = pd.read_csv(out / "metrics.csv", keep_default_na=False, na_values=[""])
    # never a silent NaN: every missing value says why
    assert m["note"].fillna("")[m["value"].isna()].str.len().min() > 10
    return params, m


@pytest.mark.parametrize("image", ["E34", "G01", "J02"])
def test_cytomapper_with_its_own_celltype_column(cytomapper_dir, tmp_path, capsys, image):
    out = tmp_path / "out"
    rc = main(["analyze", str(cytomapper_dir / "images" / f"{image}_imc.tiff"),
               "--mask", str(cytomapper_dir / "masks" / f"{image}_mask.tiff"),
               "--table", str(cytomapper_dir / "cells.csv"), "-o", str(out)])
    assert rc == 0
    params, m = _check_outputs(out)
    assert params["cell_type_key"] == "CellType" and params["cell_type_key_how"] == "found"
    assert params["skipped"] == {} and len(params["runs"]) == 11
    assert params["pixel_size_source"] == "unknown" and m.loc[m.metric == "area_mm2", "unit"].iloc[0] == "Mpx²"
    # anonymised types (celltype_A/B/C): the CAR T measures are NaN and say the roles are not mapped
    assert m.loc[m.metric == "n_car_t", "note"].iloc[0].startswith("CAR T role not mapped")
    err = _err(capsys)
    assert not [ln for ln in err if ln.startswith("ERROR")]
    assert sum("roles not mapped to any cell type: CAR T, tumour" in ln for ln in err) == 1
    touch = pd.read_csv(out / "touching_touching.csv")
    assert touch["touch_pairs"].sum() > 0 and {"p1_touch_p2", "p2_touch_p1"} <= set(touch.columns)


def test_steinbock_without_cell_types_says_what_is_missing(steinbock_dir, tmp_path, capsys):
    assert main(["analyze", str(steinbock_dir), "-o", str(tmp_path / "out")]) == 2
    errors = [ln for ln in _err(capsys) if ln.startswith("ERROR")]
    assert len(errors) == 1
    assert "intensities_deepcell" in errors[0] and "no cell-type column" in errors[0]
    assert "gating" in errors[0] and "clustering" in errors[0]


def test_inform_like_phenotype_table_derived_from_cytomapper(cytomapper_dir, tmp_path, capsys):
    """The same cells with an inForm vocabulary: Phenotype column, CK+ tumor / CD68+ macrophage /
    CAR+ / Helper T; every CAR T measure is computed."""
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    names = {"celltype_A": "CK+ tumor", "celltype_B": "CD68+ macrophage", "celltype_C": "Helper T"}
    ph = cells["CellType"].map(names)
    ph[(cells["CellType"] == "celltype_C") & (cells["CellNb"] % 3 == 0)] = "CAR+"
    derived = cells.drop(columns=["CellType", "CellType_original_meaning"]).assign(Phenotype=ph)
    table = tmp_path / "cells_inform.csv"
    derived.to_csv(table, index=False)
    out = tmp_path / "out"
    rc = main(["analyze", str(cytomapper_dir / "images" / "G01_imc.tiff"),
               "--mask", str(cytomapper_dir / "masks" / "G01_mask.tiff"), "--table", str(table),
               "--pixel-size-um", "1", "-o", str(out)])
    assert rc == 0
    params, m = _check_outputs(out)
    assert params["cell_type_key"] == "Phenotype" and params["pixel_size_source"] == "user"
    assert params["skipped"] == {} and len(params["runs"]) == 11
    roles = json.loads((out / "roles.json").read_text())["roles"]
    assert roles["car_t"] == ["CAR+"] and roles["tumor"] == ["CK+ tumor"] and roles["myeloid"] == ["CD68+ macrophage"]
    v = m.set_index("metric")["value"]
    assert v["n_car_t"] > 0 and v["n_tumor"] > 0 and v["n_myeloid"] > 0
    for k in ("car_t_density_per_mm2", "frac_car_t_within_r_of_tumor", "frac_car_t_contact_tumor",
              "frac_car_t_contact_myeloid", "log2_oe_car_t_tumor", "log2_oe_car_t_myeloid"):
        assert np.isfinite(v[k]), k
    assert m.set_index("metric").loc["area_mm2", "unit"] == "mm²"
    # no antigen-negative type in this panel: said so, not 0
    assert m.set_index("metric").loc["antigen_neg_fraction", "note"].startswith("antigen-negative tumour role not")
    assert not [ln for ln in _err(capsys) if ln.startswith("ERROR")]


def test_steinbock_table_with_a_cluster_column(steinbock_dir, tmp_path, capsys):
    """A quantified steinbock table clustered into obs['leiden'] (cluster ids, no names)."""
    from napari_carspatial.io import read_sample, write_table

    s = read_sample(steinbock_dir)[2]
    t = s.table.copy()
    x = np.asarray(t.X)
    t.obs["leiden"] = pd.Categorical((x[:, 3] > np.median(x[:, 3])).astype(int).astype(str))
    path = write_table(t, tmp_path / "clustered.h5ad")
    out = tmp_path / "out"
    assert main(["analyze", str(path), "-o", str(out)]) == 0
    params, _ = _check_outputs(out)
    assert params["cell_type_key"] == "leiden" and params["pixel_size_source"] == "cell table (uns)"
    # a table alone has no mask: only touching cells is skipped, with the reason
    assert set(params["skipped"]) == {"touching"} and "mask" in params["skipped"]["touching"]
    assert len(params["runs"]) == 10
