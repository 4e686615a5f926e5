"""Many small acquisitions open as one tiled montage sample with named tiles (steinbock's 15 ROIs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_carspatial.io import read_sample
from napari_carspatial.model import Sample, instance_ids
from napari_carspatial.model.montage import (
    ACQUISITION_KEY,
    can_montage,
    montage,
    tile_names,
    tile_of,
)

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="module")
def steinbock():
    d = REAL / "steinbock_imc_testdata"
    if not d.is_dir():
        pytest.skip(f"real data folder {d} is absent")
    return read_sample(d)


def test_montage_keeps_every_pixel_cell_and_row(steinbock):
    m = montage(steinbock)
    assert m.n_channels == 5 and m.channel_names == steinbock[0].channel_names and m.pixel_size_um == 1.0
    img, lab = m.image[0].compute(), m.labels[0].compute()
    for s, t in zip(steinbock, m.metadata["tiles"], strict=True):
        ys, xs = slice(t["y0"], t["y0"] + t["height"]), slice(t["x0"], t["x0"] + t["width"])
        np.testing.assert_array_equal(img[:, ys, xs], s.image[0].compute())
        own = s.labels[0].compute()
        np.testing.assert_array_equal(np.where(own > 0, own + t["id_offset"], 0), lab[ys, xs])
    assert m.n_cells == sum(s.n_cells for s in steinbock) == 404
    m.validate(check_ids=True)                       # every mask id has exactly one row
    # a montage cell maps back to its acquisition and its own id, and keeps its own intensities
    row = m.table.obs.iloc[100]
    name, own_id = tile_of(m, int(row["cell_id"]))
    assert name == row[ACQUISITION_KEY] and own_id == row["Object"]
    src = next(s for s in steinbock if s.name == name)
    i = list(instance_ids(src.table)).index(own_id)
    np.testing.assert_allclose(np.asarray(m.table.X[100]), np.asarray(src.table.X[i]))
    # centroids moved with the tile
    t = next(t for t in m.metadata["tiles"] if t["name"] == name)
    np.testing.assert_allclose(m.table.obsm["spatial"][100], np.asarray(src.table.obsm["spatial"][i]) + [t["x0"], t["y0"]])
    # neighbour graphs stay block-diagonal
    assert m.table.obsp["spatial_connectivities"].nnz == sum(s.table.obsp["spatial_connectivities"].nnz for s in steinbock)


def test_tile_names_and_layer_data(steinbock):
    from napari_carspatial._napari.layers import samples_to_layer_data

    assert tile_names(steinbock)[:2] == ["mockData1_001", "mockData1_002"]
    out = samples_to_layer_data(steinbock)
    kinds = [k for _, _, k in out]
    assert kinds == ["image", "labels", "shapes"]       # one image layer-data tuple (5 channels), cells, tiles
    data, meta, _ = out[-1]
    assert meta["features"]["acquisition"] == tile_names(steinbock)
    assert meta["text"]["string"] == "{acquisition}" and len(data) == 15
    assert out[0][1]["name"] == steinbock[0].channel_names


def test_pairs_and_large_slides_keep_their_own_layers():
    a = Sample("pre", image=[np.zeros((2, 30, 30), np.float32)], channel_names=["DAPI", "CD3"]).validate()
    b = Sample("post", image=[np.zeros((2, 30, 30), np.float32)], channel_names=["DAPI", "CD3"]).validate()
    assert not can_montage([a, b])
    c = Sample("c", image=[np.zeros((3, 30, 30), np.float32)], channel_names=["DAPI", "CD3", "x"]).validate()
    assert not can_montage([a, b, a, c])                 # different channels
    from napari_carspatial._napari.layers import samples_to_layer_data

    out = samples_to_layer_data([a, b])
    assert [k for _, _, k in out] == ["image", "image", "shapes"]
    assert out[-1][1]["features"]["acquisition"] == ["pre", "post"]


def test_mcd_tiles_are_named_by_acquisition_description():
    mcd = REAL / "imc_raw_mcd" / "20210305_NE_mockData2" / "20210305_NE_mockData2.mcd"
    if not mcd.is_file():
        pytest.skip(f"{mcd} is absent")
    pytest.importorskip("readimc")
    assert tile_names(read_sample(mcd)) == ["ROI_001", "ROI_002", "ROI_003"]
