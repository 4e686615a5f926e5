"""Cell tables: CSV flavours and AnnData, linked to masks."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial.io import read_sample, read_table
from napari_carspatial.model import SampleError, get_table_link, instance_ids, pixel_size_um


def _mask(tmp_path):
    lab = np.zeros((40, 60), np.uint16)
    lab[5:10, 10:20] = 12  # centroid (y, x) = (7, 14.5)
    lab[20:30, 30:34] = 40  # centroid (24.5, 31.5)
    f = tmp_path / "roi_mask.tiff"
    tifffile.imwrite(f, lab)
    img = tmp_path / "roi.ome.tif"
    tifffile.imwrite(img, np.ones((2, 40, 60), np.uint8), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["CD3", "PanCK"]}, "PhysicalSizeX": 0.5})
    return img, f


def test_steinbock_csv(tmp_path):
    f = tmp_path / "t.csv"
    pd.DataFrame({"Object": [12, 40], "CD3": [1.0, 2.0], "PanCK": [3.0, 4.0], "area": [50, 40],
                  "centroid-0": [7.0, 24.5], "centroid-1": [14.5, 31.5]}).to_csv(f, index=False)
    a = read_table(f)
    assert list(a.var_names) == ["CD3", "PanCK"] and a.X.dtype == np.float32
    np.testing.assert_allclose(a.obsm["spatial"], [[14.5, 7.0], [31.5, 24.5]])
    assert get_table_link(a)["instance_key"] == "Object"


def test_mcmicro_csv(tmp_path):
    f = tmp_path / "q.csv"
    pd.DataFrame({"CellID": [12, 40], "DNA": [5.0, 6.0], "CD3": [1.0, 2.0], "X_centroid": [14.5, 31.5],
                  "Y_centroid": [7.0, 24.5], "Area": [50, 40], "Eccentricity": [0.1, 0.2]}).to_csv(f, index=False)
    a = read_table(f)
    assert list(a.var_names) == ["DNA", "CD3"]
    assert "Area" in a.obs and "Eccentricity" in a.obs
    np.testing.assert_array_equal(instance_ids(a), [12, 40])


def test_qupath_csv_um_to_pixels(tmp_path):
    img, mask = _mask(tmp_path)
    f = tmp_path / "qp.csv"
    pd.DataFrame({"Image": ["roi.ome.tif"] * 2, "Cell ID": [12, 40], "Centroid X µm": [7.25, 15.75],
                  "Centroid Y µm": [3.5, 12.25], "Cell: CD3: Mean": [1.0, 2.0],
                  "Cell: PanCK: Mean": [3.0, 4.0], "Nucleus: CD3: Mean": [9.0, 9.0]}).to_csv(f, index=False)
    s = read_sample(img, mask=mask, table=f)
    assert s.pixel_size_um == 0.5
    assert list(s.table.var_names) == ["CD3", "PanCK"]
    np.testing.assert_allclose(s.table.obsm["spatial"], [[14.5, 7.0], [31.5, 24.5]])


def test_qupath_um_without_pixel_size_uses_mask(tmp_path, caplog):
    f = tmp_path / "qp.csv"
    pd.DataFrame({"Object ID": [12, 40], "Centroid X µm": [1.0, 2.0], "Centroid Y µm": [1.0, 2.0],
                  "CD3: Cell: Mean": [1.0, 2.0]}).to_csv(f, index=False)
    with caplog.at_level(logging.WARNING):
        a = read_table(f)
    assert "spatial" not in a.obsm and "spatial_um" in a.obsm and "pixel size is unknown" in caplog.text
    assert list(a.var_names) == ["CD3"]


def test_inform_columns(tmp_path):
    f = tmp_path / "inform.csv"
    pd.DataFrame({"Cell ID": [1, 2], "Cell X Position": [3, 4], "Cell Y Position": [5, 6],
                  "Nucleus Area (pixels)": [9, 9],   # the export's unit: pixels (see test_io_inform.py)
                  "Entire Cell CD8 (Opal 570) Mean (Normalized Counts, Total Weighting)": [0.5, 0.6]}
                 ).to_csv(f, index=False)
    a = read_table(f)
    assert list(a.var_names) == ["CD8 (Opal 570)"]
    np.testing.assert_allclose(a.obsm["spatial"], [[3, 5], [4, 6]])


def test_generic_csv_needs_id_column(tmp_path):
    f = tmp_path / "g.csv"
    pd.DataFrame({"lbl": [12, 40], "x": [14.5, 31.5], "y": [7.0, 24.5], "CD3": [1.0, 2.0]}).to_csv(f, index=False)
    with pytest.raises(SampleError, match="id_column"):
        read_table(f)
    a = read_table(f, id_column="lbl")
    assert list(a.var_names) == ["CD3"] and get_table_link(a)["instance_key"] == "lbl"


def test_cytomapper_style_filtering(tmp_path):
    img, mask = _mask(tmp_path)
    f = tmp_path / "cells.csv"
    pd.DataFrame({"ImageName": ["roi.ome.tif", "other.tiff", "roi.ome.tif"], "MaskName": ["roi_mask.tiff", "o", "roi_mask.tiff"],
                  "CellNb": [12, 12, 40], "counts_CD3": [1.0, 9.0, 2.0], "counts_PanCK": [3.0, 9.0, 4.0],
                  "exprs_CD3": [0.1, 0.9, 0.2], "exprs_PanCK": [0.3, 0.9, 0.4], "CellType": ["T", "x", "tumour"]}
                 ).to_csv(f, index=False)
    s = read_sample(img, mask=mask, table=f)
    assert s.n_cells == 2 and list(s.table.var_names) == ["CD3", "PanCK"]
    np.testing.assert_allclose(s.table.X, [[1, 3], [2, 4]])
    assert "exprs" in s.table.layers
    # no coordinates in the table: computed from the mask
    np.testing.assert_allclose(s.table.obsm["spatial"], [[14.5, 7.0], [31.5, 24.5]])


def test_table_for_wrong_image(tmp_path):
    img, mask = _mask(tmp_path)
    f = tmp_path / "cells.csv"
    pd.DataFrame({"ImageName": ["a.tiff", "b.tiff"], "CellNb": [12, 40], "counts_CD3": [1.0, 2.0]}).to_csv(f, index=False)
    with pytest.raises(SampleError, match=r"cells\.csv.*no table row belongs to"):
        read_sample(img, mask=mask, table=f)


def test_ids_not_in_mask_surface(tmp_path):
    img, mask = _mask(tmp_path)
    f = tmp_path / "t.csv"
    pd.DataFrame({"Object": [12, 41], "CD3": [1.0, 2.0]}).to_csv(f, index=False)
    with pytest.raises(SampleError, match=r"t\.csv.*not in the mask.*41"):
        read_sample(img, mask=mask, table=f)


def test_h5ad_and_zarr(tmp_path):
    img, mask = _mask(tmp_path)
    a = ad.AnnData(np.ones((2, 2), np.float32), obs=pd.DataFrame({"label": [12, 40]}, index=["a", "b"]))
    a.var_names = ["CD3", "PanCK"]
    a.write_h5ad(tmp_path / "t.h5ad")
    a.write_zarr(tmp_path / "t.zarr")
    for t in ("t.h5ad", "t.zarr"):
        s = read_sample(img, mask=mask, table=tmp_path / t)
        assert s.n_cells == 2 and get_table_link(s.table)["instance_key"] == "label"
        assert pixel_size_um(s.table) == 0.5
