"""SpatialData out and back in: our export read with ``spatialdata`` (right scale, multiscale,
links), and ``read_zarr`` stores with transformations, shapes-annotated tables and points."""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_carspatial.io import export_spatialdata, read_sample
from napari_carspatial.model import Sample, SampleError, set_table_link
from napari_carspatial.model.points import transcripts_from_arrays

spatialdata = pytest.importorskip("spatialdata")
from spatialdata.transformations import get_transformation  # noqa: E402


def _affine(el):
    return np.asarray(get_transformation(el, "global").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")))


def _sample(px=0.5):
    rng = np.random.default_rng(0)
    h, w = 300, 400
    lab = np.zeros((h, w), np.int32)
    ids = [3, 17, 250]
    for k, (y, x) in zip(ids, [(50, 60), (150, 200), (250, 330)], strict=True):
        lab[y - 10:y + 10, x - 12:x + 12] = k
    img = rng.integers(0, 1000, (3, h, w)).astype(np.uint16)
    X = sp.random(3, 5, density=0.6, format="csr", random_state=0, dtype=np.float32)
    t = ad.AnnData(X, obs=pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(["CAR T", "Tumor", "Tumor"])},
                                       index=[f"c{i}" for i in ids]), var=pd.DataFrame(index=[f"G{i}" for i in range(5)]))
    set_table_link(t, region="s_labels", instance_key="cell_id")
    n = 200
    pts = transcripts_from_arrays(rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n), rng.integers(0, 5, n),
                                  [f"G{i}" for i in range(5)], cell_id=rng.choice([0, 3, 17], n),
                                  quality=rng.uniform(10, 40, n), shape_yx=(h, w), bin_px=32, quality_name="qv")
    s = Sample(name="s", image=[da.from_array(img), da.from_array(img[:, ::2, ::2])], channel_names=["DAPI", "CD3", "PanCK"],
               pixel_size_um=px, labels=[da.from_array(lab), da.from_array(lab[::2, ::2])], table=t, points=pts)
    return s.validate()


def test_export_reads_back_in_spatialdata_with_the_scale(tmp_path):
    s = _sample()
    p = export_spatialdata(s, tmp_path / "s.zarr")
    sdata = spatialdata.read_zarr(p)
    img, lab = sdata.images["s_image"], sdata.labels["s_labels"]
    assert type(img).__name__ == "DataTree" and len(img.children) == 2  # multiscale, both levels
    assert type(lab).__name__ == "DataTree" and len(lab.children) == 2
    for el in (img, lab, sdata.points["s_transcripts"]):
        np.testing.assert_allclose(_affine(el), np.diag([0.5, 0.5, 1.0]))
    assert list(img["scale0"]["image"].coords["c"].values) == ["DAPI", "CD3", "PanCK"]
    table = sdata.tables["table"]
    attrs = table.uns["spatialdata_attrs"]
    assert attrs["region"] == "s_labels" and attrs["instance_key"] == "cell_id"
    assert sp.issparse(table.X)
    # the labels element holds exactly the table's ids (what napari-spatialdata joins on)
    ids = np.unique(lab["scale0"]["image"].values)
    assert set(ids[ids > 0]) == set(table.obs["cell_id"])
    # a transcript in µm through spatialdata's own transformation equals ours * pixel size (+ half a pixel)
    pts = sdata.points["s_transcripts"].compute()
    xy_um = np.c_[pts["x"], pts["y"], np.ones(len(pts))] @ _affine(sdata.points["s_transcripts"]).T
    q = s.points.query(columns=["x", "y"])
    np.testing.assert_allclose(np.sort(xy_um[:, 0]), np.sort((q["x"].astype(float) + 0.5) * 0.5), rtol=1e-6)


def test_export_then_read_sample_round_trip(tmp_path):
    s = _sample()
    p = export_spatialdata(s, tmp_path / "s.zarr")
    (r,) = read_sample(p)
    assert r.name == "s" and r.pixel_size_um == 0.5 and r.channel_names == s.channel_names
    np.testing.assert_array_equal(r.image[0].compute(), s.image[0].compute())
    np.testing.assert_array_equal(r.labels[0].compute(), s.labels[0].compute())
    assert (r.table.X != s.table.X).nnz == 0 and list(r.table.obs["cell_type"]) == list(s.table.obs["cell_type"])
    np.testing.assert_allclose(r.table.obsm["spatial"], s.table.obsm["spatial"])
    a = s.points.to_pandas().sort_values(["x", "y"]).reset_index(drop=True)
    b = r.points.to_pandas().sort_values(["x", "y"]).reset_index(drop=True)
    np.testing.assert_allclose(b["x"], a["x"], atol=1e-4)
    np.testing.assert_allclose(b["y"], a["y"], atol=1e-4)
    assert list(b["gene"].astype(str)) == list(a["gene"].astype(str))
    np.testing.assert_array_equal(b["cell_id"], a["cell_id"])
    np.testing.assert_allclose(b["quality"], a["quality"], rtol=1e-6)


def test_export_without_pixel_size_warns_identity(tmp_path, caplog):
    s = _sample(px=None)
    p = export_spatialdata(s, tmp_path / "s.zarr", image=False)
    assert "pixel size unknown" in caplog.text
    np.testing.assert_allclose(_affine(spatialdata.read_zarr(p).labels["s_labels"]), np.eye(3))


def test_read_zarr_shapes_table_points_transformations(tmp_path):
    """Cells as circles with string ids, points on a Scale, image on a Translation: one grid."""
    from spatialdata.models import Image2DModel, PointsModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale, Translation

    img = np.zeros((1, 60, 80), np.uint16)
    img[0, 30, 20] = 7
    circles = ShapesModel.parse(np.array([[20.5, 30.5], [60.5, 10.5]]), geometry=0, radius=np.array([4.0, 3.0]),
                                index=pd.Index(["a", "b"]), transformations={"global": Identity()})
    t = ad.AnnData(sp.csr_matrix(np.array([[1, 0], [0, 2]], np.float32)),
                   obs=pd.DataFrame({"cell": ["a", "b"], "region": pd.Categorical(["cells"] * 2)}, index=["0", "1"]),
                   var=pd.DataFrame(index=["IFNG", "CD274"]))
    table = TableModel.parse(t, region="cells", region_key="region", instance_key="cell")
    pts = PointsModel.parse(pd.DataFrame({"x": [10.25, 30.25], "y": [15.25, 5.25], "gene": pd.Categorical(["IFNG", "CD274"]),
                                          "cell": ["a", "b"]}),
                            feature_key="gene", instance_key="cell", transformations={"global": Scale([2.0, 2.0], axes=("x", "y"))})
    sdata = spatialdata.SpatialData(
        images={"img": Image2DModel.parse(img, dims=("c", "y", "x"), transformations={"global": Translation([0.0, 0.0], axes=("x", "y"))})},
        shapes={"cells": circles}, points={"tx": pts}, tables={"table": table})
    sdata.write(tmp_path / "x.zarr")
    (s,) = read_sample(tmp_path / "x.zarr", pixel_size_um=0.25)
    lab = s.labels[0].compute()
    la, lb = s.table.obs.set_index("cell").loc[["a", "b"], "cell_label"]
    assert lab[30, 20] == la and lab[10, 60] == lb  # circle centres at pixel centres
    assert (lab == la).sum() == pytest.approx(np.pi * 16, rel=0.25)
    q = s.points.query(columns=["x", "y", "cell_id"])
    np.testing.assert_allclose(np.c_[q["x"], q["y"]][np.argsort(q["x"])], [[20.0, 30.0], [60.0, 10.0]])
    assert sorted(q["cell_id"]) == sorted([la, lb])
    np.testing.assert_allclose(s.table.obsm["spatial"][0], [20, 30], atol=0.5)
    assert s.pixel_size_um == 0.25 and s.image[0].compute()[0, 30, 20] == 7


def test_read_zarr_rotated_image_is_refused(tmp_path, caplog):
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Affine, Identity

    rot = Affine(np.array([[0.0, -1.0, 60.0], [1.0, 0.0, 0.0], [0, 0, 1]]), input_axes=("x", "y"), output_axes=("x", "y"))
    lab = np.zeros((40, 60), np.int32)
    lab[5:10, 5:10] = 1
    sdata = spatialdata.SpatialData(
        images={"img": Image2DModel.parse(np.zeros((1, 60, 40), np.uint8), dims=("c", "y", "x"), transformations={"global": rot})},
        labels={"cells": Labels2DModel.parse(lab, dims=("y", "x"), transformations={"global": Identity()})})
    sdata.write(tmp_path / "r.zarr")
    with pytest.raises(SampleError, match="rotated or sheared"):
        read_sample(tmp_path / "r.zarr")


def test_xenium_export_carries_scale_and_origin(real_data_root, tmp_path):
    pytest.importorskip("spatialdata_io")
    (s,) = read_sample(real_data_root / "xenium_crop")
    p = export_spatialdata(s, tmp_path / "xen.zarr")
    sdata = spatialdata.read_zarr(p)
    m = _affine(sdata.points["xenium_crop_transcripts"])
    ox, oy = s.metadata["origin_um"]
    np.testing.assert_allclose(m, [[0.2125, 0, ox], [0, 0.2125, oy], [0, 0, 1]])
    pts = sdata.points["xenium_crop_transcripts"].compute()
    assert len(pts) == 5260
    um = np.c_[pts["x"], pts["y"], np.ones(len(pts))] @ m.T
    tx = pd.read_parquet(real_data_root / "xenium_crop" / "transcripts.parquet")
    np.testing.assert_allclose(np.sort(um[:, 0]), np.sort(tx["x_location"]), atol=1e-3)
    np.testing.assert_allclose(np.sort(um[:, 1]), np.sort(tx["y_location"]), atol=1e-3)
    assert sdata.tables["table"].n_vars == 30 and sdata.tables["table"].uns["spatialdata_attrs"]["region"] == "xenium_crop_labels"
