"""Image + mask and no table: read_sample measures the cells (analysis.quantify), info reports them.

Checked against steinbock's own per-cell tables for the same image and mask (steinbock's
``intensities_deepcell`` / ``regionprops_deepcell`` are exact functions of image + mask; see the
folder's README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import read_sample
from napari_carspatial.io.measure import MEASURED, measure_cells, store_measured_table
from napari_carspatial.model import Sample, SampleError, instance_ids

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
STEINBOCK = REAL / "steinbock_imc_testdata"
NAME = "20210305_NE_mockData2_001"


@pytest.fixture(scope="module")
def sb():
    if not STEINBOCK.is_dir():
        pytest.skip(f"real data folder {STEINBOCK} is absent")
    return STEINBOCK


def _check_against_steinbock(sample, folder, name):
    ref = pd.read_csv(folder / "intensities_deepcell" / f"{name}.csv").set_index("Object")
    rp = pd.read_csv(folder / "regionprops_deepcell" / f"{name}.csv").set_index("Object")
    t = sample.table
    ids = instance_ids(t)
    assert sorted(ids.tolist()) == sorted(ref.index.tolist())
    got = pd.DataFrame(np.asarray(t.X), index=ids, columns=list(t.var_names)).loc[ref.index]
    np.testing.assert_allclose(got[list(ref.columns)].to_numpy(), ref.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.obs.set_index(t.uns["spatialdata_attrs"]["instance_key"]).loc[rp.index, "area"],
                                  rp["area"].to_numpy())
    xy = pd.DataFrame(np.asarray(t.obsm["spatial"]), index=ids).loc[rp.index]
    np.testing.assert_allclose(xy[0], rp["centroid-1"], atol=1e-9)
    np.testing.assert_allclose(xy[1], rp["centroid-0"], atol=1e-9)


def test_image_and_mask_open_with_measured_table(sb):
    s = read_sample(sb / "img" / f"{NAME}.tiff", mask=sb / "masks_deepcell" / f"{NAME}.tiff")
    assert s.metadata["table_source"] == MEASURED
    assert s.n_cells == len(pd.read_csv(sb / "intensities_deepcell" / f"{NAME}.csv"))
    _check_against_steinbock(s, sb, NAME)
    assert s.pixel_size_um is None or s.table.uns["carspatial"]["pixel_size_um"] == s.pixel_size_um


def test_measure_false_keeps_no_table(sb):
    s = read_sample(sb / "img" / f"{NAME}.tiff", mask=sb / "masks_deepcell" / f"{NAME}.tiff", measure=False)
    assert s.table is None and s.n_cells == 0


def test_steinbock_folder_without_tables_is_measured(sb, tmp_path):
    dst = tmp_path / "sb"
    dst.mkdir()
    for part in ("img", "masks_deepcell"):
        shutil.copytree(sb / part, dst / part)
    for f in ("panel.csv", "images.csv"):
        shutil.copy(sb / f, dst / f)
    samples = read_sample(dst)
    assert len(samples) == 15
    assert sum(s.n_cells for s in samples) == 404   # steinbock's deepcell cell count (README)
    by = {s.name: s for s in samples}
    _check_against_steinbock(by[NAME], sb, NAME)
    assert by[NAME].pixel_size_um == 1.0
    assert by[NAME].table.uns["carspatial"]["pixel_size_um"] == 1.0


def test_info_reports_cells_from_the_mask(sb, capsys):
    from napari_carspatial.cli import main

    code = main(["info", str(sb / "img" / f"{NAME}.tiff"), "--mask", str(sb / "masks_deepcell" / f"{NAME}.tiff")])
    out = capsys.readouterr().out
    n = len(pd.read_csv(sb / "intensities_deepcell" / f"{NAME}.csv"))
    assert code == 0
    assert f"cells:       {n}" in out
    assert "measured from the mask" in out


def test_store_measured_table_for_a_loaded_sample():
    img = np.zeros((2, 20, 20), np.float32)
    img[0, :10] = 4.0
    img[1] = 1.0
    lab = np.zeros((20, 20), np.uint16)
    lab[2:6, 2:6] = 7
    lab[12:18, 12:18] = 3
    s = Sample("mem", image=[img], channel_names=["DAPI", "CD3"], labels=[lab], pixel_size_um=0.5,
               metadata={"channel_metadata": [{"name": "DAPI", "mass": 1}, {"name": "CD3", "mass": 2}]}).validate()
    t = measure_cells(s)
    assert s.table is None                         # measure_cells does not mutate
    assert instance_ids(t).tolist() == [3, 7]
    np.testing.assert_allclose(np.asarray(t.X), [[0.0, 1.0], [4.0, 1.0]])
    assert t.var["mass"].tolist() == [1, 2]
    store_measured_table(s)
    assert s.n_cells == 2 and s.metadata["table_source"] == MEASURED
    with pytest.raises(SampleError, match="needs a mask"):
        measure_cells(Sample("nomask", image=[img], channel_names=["a", "b"]).validate())
