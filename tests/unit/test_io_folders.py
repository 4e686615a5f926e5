"""Folder layouts: synthetic MCMICRO, SpatialData store, detection and errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial.io import detect_format, read_sample
from napari_carspatial.model import ReaderError, SampleError, get_table_link, instance_ids

MARKERS = ["DNA", "CD3", "CD8", "PanCK"]


def _labels():
    lab = np.zeros((64, 80), np.uint32)
    lab[5:15, 5:15] = 3
    lab[30:40, 50:70] = 17
    lab[50:60, 10:12] = 250
    return lab


@pytest.fixture
def mcmicro_dir(tmp_path):
    root = tmp_path / "exemplar"
    (root / "registration").mkdir(parents=True)
    (root / "segmentation" / "unmicst-exemplar").mkdir(parents=True)
    (root / "quantification").mkdir()
    img = np.random.default_rng(0).integers(0, 255, (4, 64, 80), dtype=np.uint8)
    tifffile.imwrite(root / "registration" / "exemplar.ome.tif", img, ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.65, "PhysicalSizeXUnit": "µm"})
    lab = _labels()
    seg = root / "segmentation" / "unmicst-exemplar"
    tifffile.imwrite(seg / "cell.ome.tif", lab, ome=True, metadata={"axes": "YX"})
    tifffile.imwrite(seg / "nuclei.ome.tif", lab, ome=True, metadata={"axes": "YX"})
    pd.DataFrame({"cycle": [1, 1, 1, 1], "marker_name": MARKERS}).to_csv(root / "markers.csv", index=False)
    q = pd.DataFrame({"CellID": [3, 17, 250], **{m: [1.0, 2.0, 3.0] for m in MARKERS},
                      "X_centroid": [9.5, 59.5, 10.5], "Y_centroid": [9.5, 34.5, 54.5], "Area": [100, 200, 20],
                      "Eccentricity": [0, 0.8, 0.9]})
    q.to_csv(root / "quantification" / "exemplar--unmicst_cell.csv", index=False)
    return root


def test_mcmicro(mcmicro_dir):
    assert detect_format(mcmicro_dir) == "mcmicro"
    (s,) = read_sample(mcmicro_dir)
    assert s.channel_names == MARKERS
    assert s.pixel_size_um == pytest.approx(0.65)
    assert s.paths["mask"].endswith("cell.ome.tif")
    assert s.n_cells == 3 and list(s.table.var_names) == MARKERS
    np.testing.assert_array_equal(np.sort(instance_ids(s.table)), [3, 17, 250])


def test_mcmicro_markers_count_mismatch(mcmicro_dir):
    pd.DataFrame({"marker_name": MARKERS[:3]}).to_csv(mcmicro_dir / "markers.csv", index=False)
    with pytest.raises(SampleError, match=r"markers\.csv.*3 channels.*exemplar\.ome\.tif.*4 channels"):
        read_sample(mcmicro_dir)


def test_spatialdata_store(tmp_path):
    spatialdata = pytest.importorskip("spatialdata")
    from spatialdata.models import Image2DModel, Labels2DModel, TableModel

    img = np.random.default_rng(0).random((3, 64, 80)).astype(np.float32)
    lab = _labels()
    table = ad.AnnData(np.arange(9, dtype=np.float32).reshape(3, 3),
                       obs=pd.DataFrame({"cell": [3, 17, 250], "where": pd.Categorical(["cells"] * 3)},
                                        index=["a", "b", "c"]))
    table.var_names = ["CD3", "CD8", "PanCK"]
    sdata = spatialdata.SpatialData(
        images={"tissue": Image2DModel.parse(img, dims=("c", "y", "x"), c_coords=["CD3", "CD8", "PanCK"],
                                             scale_factors=[2])},
        labels={"cells": Labels2DModel.parse(lab, dims=("y", "x"), scale_factors=[2])},
        tables={"table": TableModel.parse(table, region="cells", region_key="where", instance_key="cell")},
    )
    path = tmp_path / "sample.zarr"
    sdata.write(path)
    assert detect_format(path) == "spatialdata"
    (s,) = read_sample(path)
    assert s.name == "cells" and s.channel_names == ["CD3", "CD8", "PanCK"]
    assert len(s.image) == 2 and s.labels[0].shape == (64, 80)
    np.testing.assert_array_equal(s.image[0].compute(), img)
    link = get_table_link(s.table)
    assert (link["region"], link["region_key"], link["instance_key"]) == ("cells", "where", "cell")
    np.testing.assert_allclose(s.table.obsm["spatial"][1], [59.5, 34.5])


def test_unsupported_and_missing(tmp_path):
    f = tmp_path / "notes.docx"
    f.write_bytes(b"x")
    assert detect_format(f) is None
    with pytest.raises(ReaderError, match=r"notes\.docx.*unsupported"):
        read_sample(f)
    with pytest.raises(ReaderError, match=r"nope\.tif.*not found"):
        read_sample(tmp_path / "nope.tif")
    assert detect_format(tmp_path / "nope.tif") is None
    assert detect_format(tmp_path) is None


def test_missing_mask_file(tmp_path):
    img = tmp_path / "i.tif"
    tifffile.imwrite(img, np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ReaderError, match=r"m\.tif.*not found"):
        read_sample(img, mask=tmp_path / "m.tif")


def test_unicode_path(tmp_path):
    d = tmp_path / "Probe_µ_Ä"
    d.mkdir()
    f = d / "bild.ome.tif"
    tifffile.imwrite(f, np.zeros((2, 8, 8), np.uint8), ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["a", "b"]}})
    assert read_sample(f).channel_names == ["a", "b"]
