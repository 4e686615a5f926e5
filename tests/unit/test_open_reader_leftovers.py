"""Reader leftovers of issue 14 on the real data (each with what a user opens):

* a cytomapper single TIFF opened with File > Open finds its mask in the sibling ``../masks``
  folder (and its rows of ``../cells.csv``): the cells of the source's own table, by their ids;
* the montage's tile names sit in their own tile's title band, which the rows' gap keeps clear
  of the tile above (steinbock's 15 acquisitions, ``mockData3_002`` under the tall ``mockData2_001``);
* inForm tables record where ``microns_per_pixel`` came from (``set_pixel_size_source``), as the
  other readers do.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial.io.masks import find_sibling_mask, find_sibling_table


# --------------------------------------------------------------------------- (a) sibling mask
def test_cytomapper_sibling_mask_and_table(cytomapper_dir):
    img = cytomapper_dir / "images" / "E34_imc.tiff"
    assert find_sibling_mask(img) == str(cytomapper_dir / "masks" / "E34_mask.tiff")
    assert find_sibling_table(img) == str(cytomapper_dir / "cells.csv")


def test_steinbock_single_image_finds_a_segmentation(steinbock_dir):
    img = steinbock_dir / "img" / "20210305_NE_mockData3_002.tiff"
    # masks_deepcell before masks_ilastik (name order), the same file name
    assert find_sibling_mask(img) == str(steinbock_dir / "masks_deepcell" / "20210305_NE_mockData3_002.tiff")


def test_no_sibling_of_another_shape_or_name(tmp_path, cytomapper_dir):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = tmp_path / "images" / "E34_imc.tiff"
    shutil.copy(cytomapper_dir / "images" / "E34_imc.tiff", img)
    tifffile.imwrite(tmp_path / "masks" / "E34_mask.tiff", np.ones((50, 50), np.uint16))   # not 100 x 100
    tifffile.imwrite(tmp_path / "masks" / "G01_mask.tiff", np.ones((100, 100), np.uint16))  # another image
    assert find_sibling_mask(img) is None


def test_file_open_of_a_cytomapper_tiff_shows_its_cells(cytomapper_dir, tmp_path, monkeypatch):
    from napari_carspatial._napari import reader
    from napari_carspatial._napari.session import META_ROLE, ROLE_LABELS

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    layers = reader.read_path(str(cytomapper_dir / "images" / "E34_imc.tiff"))
    labels = [ly for ly in layers if not isinstance(ly, tuple) and ly.metadata.get(META_ROLE) == ROLE_LABELS]
    assert len(labels) == 1
    mask = tifffile.imread(cytomapper_dir / "masks" / "E34_mask.tiff")
    np.testing.assert_array_equal(np.asarray(labels[0].data[0] if labels[0].multiscale else labels[0].data), mask)
    from napari_carspatial._napari.session import (
        _pending,  # the sample the layers carry, not yet claimed
    )

    s = _pending[labels[0].metadata["carspatial_sample"]].sample
    cells = pd.read_csv(cytomapper_dir / "cells.csv")
    own = cells[cells["ImageName"] == "E34_imc.tiff"]
    assert s.n_cells == len(own) == 113
    key = s.instance_key
    got = s.table.obs.set_index(key)["CellType"].astype(str).sort_index()
    want = own.set_index("CellNb")["CellType"].astype(str).sort_index()
    assert list(got.index) == list(want.index) and list(got) == list(want)


# --------------------------------------------------------------------------- (b) montage names
def _tiles_tuple(samples):
    from napari_carspatial._napari.layers import samples_to_layer_data

    return next(d for d in samples_to_layer_data(samples) if isinstance(d, tuple) and d[2] == "shapes")


def test_montage_names_sit_in_their_own_band(steinbock_dir):
    from napari_carspatial.io import read_steinbock
    from napari_carspatial.model.montage import LABEL_BAND_FRACTION

    data, meta, _ = _tiles_tuple(read_steinbock(steinbock_dir))
    names = list(meta["features"]["acquisition"])
    assert len(data) == 15 and "mockData3_002" in names
    boxes = [(r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()) for r in data]
    total = max(max(b[2] for b in boxes) - min(b[0] for b in boxes), max(b[3] for b in boxes) - min(b[1] for b in boxes))
    band = meta["text"]["translation"][0] * 2
    assert band >= LABEL_BAND_FRACTION * total * 0.999
    for i, (y0, x0, _y1, x1) in enumerate(boxes):
        above = [b for j, b in enumerate(boxes) if j != i and b[2] <= y0 + 1e-9 and b[1] < x1 and x0 < b[3]]
        for b in above:   # the name band (y0 .. y0 + band) is clear of every tile above by a margin
            assert y0 - b[2] >= 0.2 * band, (names[i], y0 - b[2], band)


def test_side_by_side_rows_leave_room_for_the_names():
    from napari_carspatial.model.montage import LABEL_BAND_FRACTION, row_gap

    gy, gx = row_gap(100.0, 100.0, 16)
    total = max(4 * (100 + gy), 4 * (100 + gx))
    assert gy >= 1.2 * LABEL_BAND_FRACTION * total and gx == pytest.approx(12.0)
    assert row_gap(100.0, 100.0, 2) == (12.0, 12.0)      # one row: no name under another tile


# --------------------------------------------------------------------------- (d) inForm pixel size source
FIELD = "Set4_1-6plex_[16142,55840]"
MPP = 0.4964
TOP_LEFT_UM = (16142.0 - 60 * MPP / 2, 55840.0 - 40 * MPP / 2)


def _component_image(folder):
    img = np.zeros((40, 60), np.float32)
    path = folder / f"{FIELD}_component_data.tif"
    ppcm = 1e4 / MPP
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, software="PerkinElmer-QPI", metadata=None, resolution=(ppcm, ppcm), resolutionunit="CENTIMETER",
                 extratags=[(286, "2I", 1, (int(round(TOP_LEFT_UM[0] / 1e4 * 1e8)), 100000000)),
                            (287, "2I", 1, (int(round(TOP_LEFT_UM[1] / 1e4 * 1e8)), 100000000))])
    return path


def _micron_table(folder):
    px = np.array([[14.5, 9.5], [42.0, 24.5]])
    pos = px * MPP + np.array(TOP_LEFT_UM)
    df = pd.DataFrame({"Sample Name": [f"{FIELD}.im3"] * 2, "Cell ID": [1, 2], "Phenotype": ["CK+", "CD8+"],
                       "Cell X Position": pos[:, 0], "Cell Y Position": pos[:, 1],
                       "Nucleus Area (square microns)": [25.0, 30.0],
                       "Entire Cell CD8 Mean (Normalized Counts, Total Weighting)": [0.1, 9.0]})
    path = folder / f"{FIELD}_cell_seg_data.txt"
    df.to_csv(path, sep="\t", index=False)
    return path


def test_inform_table_says_where_its_pixel_size_came_from(tmp_path):
    from napari_carspatial.io import read_table
    from napari_carspatial.model.pixel_size import pixel_size_info

    img = _component_image(tmp_path)
    t = read_table(_micron_table(tmp_path), image=img)
    field = t.uns["carspatial"]["inform_field"]
    assert field["microns_per_pixel"] == pytest.approx(MPP, rel=1e-6)
    assert field["pixel_size_source"] == f"inForm component image resolution tag ({img.name})"
    info = pixel_size_info(adata=t)
    assert info.value == pytest.approx(MPP, rel=1e-6) and info.source == field["pixel_size_source"]


def test_inform_source_is_not_claimed_for_another_pixel_size(tmp_path):
    from napari_carspatial.io import read_table
    from napari_carspatial.model.pixel_size import pixel_size_info

    img = _component_image(tmp_path)
    t = read_table(_micron_table(tmp_path), image=img, pixel_size_um=0.5)     # the user's, not the field's
    assert t.uns["carspatial"]["inform_field"]["microns_per_pixel"] == pytest.approx(MPP, rel=1e-6)
    info = pixel_size_info(adata=t)
    assert info.value == pytest.approx(0.5) and "inForm" not in info.source


def test_a_sibling_that_is_no_mask_leaves_the_image_openable(tmp_path, cytomapper_dir, monkeypatch):
    from napari_carspatial._napari import reader

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = tmp_path / "images" / "E34_imc.tiff"
    shutil.copy(cytomapper_dir / "images" / "E34_imc.tiff", img)
    tifffile.imwrite(tmp_path / "masks" / "E34_mask.tiff", np.full((100, 100), 0.5, np.float32))  # a probability map
    said = []
    monkeypatch.setattr(reader, "notify", lambda msg, level="info": said.append((level, msg)))
    layers = reader.read_path(str(img))
    assert layers and layers[0][0] is not None
    assert all(isinstance(ly, tuple) and ly[2] == "image" for ly in layers)
    assert [lvl for lvl, msg in said if "is not its mask" in msg and "float32" in msg] == ["warning"]
