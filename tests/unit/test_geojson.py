"""QuPath GeoJSON import/export (hand-written QuPath-style file) and SpatialData export."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import export_spatialdata, read_geojson, rois_to_geojson, write_geojson
from napari_carspatial.model import ROI, Sample, SampleError
from napari_carspatial.model.curation import Curation, roi_contains

# What QuPath 0.4 writes with File > Export objects as GeoJSON (FeatureCollection, pixel x/y,
# closed rings), plus an old-style (0.2) colorRGB, a hole, a MultiPolygon, a detection and a point.
QUPATH = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "6a1f7e9c-0c5e-4a4e-9d0b-2b1f0f0c0001",
         "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [90, 10], [90, 90], [10, 90], [10, 10]],
                                                          [[40, 40], [60, 40], [60, 60], [40, 60], [40, 40]]]},
         "properties": {"objectType": "annotation", "name": "core with necrotic hole",
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "id": "6a1f7e9c-0c5e-4a4e-9d0b-2b1f0f0c0002",
         "geometry": {"type": "MultiPolygon", "coordinates": [
             [[[100, 0], [120, 0], [120, 20], [100, 20], [100, 0]]],
             [[[130, 0], [150, 0], [150, 20], [130, 20], [130, 0]]]]},
         "properties": {"objectType": "annotation", "name": "margin",
                        "classification": {"name": "Invasive margin", "color": [230, 159, 0]}}},
        {"type": "Feature",
         "geometry": {"type": "Polygon", "coordinates": [[[0, 100], [50, 100], [50, 150], [0, 100]]]},
         "properties": {"classification": {"name": "Stroma", "colorRGB": -6895466}, "isLocked": False,
                        "measurements": []}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 1]]]},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]},
         "properties": {"objectType": "annotation", "name": "a point"}},
    ],
}


def test_qupath_file_import_rules_and_round_trip(tmp_path):
    path = tmp_path / "QuPath export ü.geojson"
    path.write_text(json.dumps(QUPATH), encoding="utf-8")
    rois = read_geojson(path)
    assert [(r.name, r.cls) for r in rois] == [
        ("core with necrotic hole", "Tumor core"), ("margin", "Invasive margin"), ("margin (2)", "Invasive margin"),
        ("Stroma", "Stroma")]
    core = rois[0]
    # (x, y) pixels in the file -> (y, x) rows in the ROI; closing vertex dropped
    np.testing.assert_array_equal(core.polygon_yx, [[10, 10], [10, 90], [90, 90], [90, 10]])
    assert len(core.holes_yx) == 1
    yx = np.array([[20.0, 20.0], [50.0, 50.0], [95.0, 95.0]])
    assert roi_contains(core, yx).tolist() == [True, False, False]  # the hole is not in the region
    assert core.id == "6a1f7e9c-0c5e-4a4e-9d0b-2b1f0f0c0001"

    out = write_geojson(rois, tmp_path / "out.geojson")
    obj = json.loads(out.read_text(encoding="utf-8"))
    assert obj["type"] == "FeatureCollection" and len(obj["features"]) == 4
    f0 = obj["features"][0]
    assert f0["properties"]["objectType"] == "annotation"
    assert f0["properties"]["classification"]["name"] == "Tumor core"
    assert len(f0["properties"]["classification"]["color"]) == 3
    ring = f0["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and ring[1] == [90.0, 10.0]  # closed, x first
    again = read_geojson(out)
    assert [(r.name, r.cls, r.id) for r in again] == [(r.name, r.cls, r.id) for r in rois]
    for a, b in zip(rois, again, strict=False):
        np.testing.assert_allclose(a.polygon_yx, b.polygon_yx)
        assert len(getattr(a, "holes_yx", [])) == len(getattr(b, "holes_yx", []))
    with pytest.raises(SampleError, match="already exists"):
        write_geojson(rois, out)


def test_bad_geojson_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.geojson"
    p.write_text('{"type": "Topology"}')
    with pytest.raises(SampleError, match="bad.geojson"):
        read_geojson(p)


def test_holes_survive_the_table(tmp_path):
    from napari_carspatial.model.curation import rois_from_frame, rois_to_frame

    p = tmp_path / "q.geojson"
    p.write_text(json.dumps(QUPATH))
    rois = read_geojson(p)
    back = rois_from_frame(rois_to_frame(rois))
    assert len(back[0].holes_yx) == 1 and rois_to_geojson(back) == rois_to_geojson(rois)


def test_spatialdata_export_reads_back(tmp_path):
    spatialdata = pytest.importorskip("spatialdata")
    lab = np.zeros((60, 80), np.uint32)
    ids = [3, 7, 11, 20]
    for k, cid in enumerate(ids):
        lab[10:20, 5 + 18 * k: 15 + 18 * k] = cid
    obs = pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(["Tumor", "CAR T", "Tumor", "Stroma"])},
                       index=[f"c{i}" for i in ids])
    t = ad.AnnData(X=np.ones((4, 2), np.float32), obs=obs)
    t.var_names = ["CD3", "CAR"]
    s = Sample("Pat 1 post", image=[np.zeros((2, 60, 80), np.float32)], channel_names=["CD3", "CAR"],
               pixel_size_um=0.5, labels=[lab], table=t).validate()
    cur = Curation(s.table, rois=s.rois, reviewer="eve")
    cur.add_roi(ROI("core 1", np.array([[0, 0], [0, 40], [40, 40], [40, 0]], float), cls="Tumor core"))
    cur.assign([1], "CD8 T")
    out = export_spatialdata(s, tmp_path / "export ü.zarr", image=True)
    sd = spatialdata.read_zarr(out)
    table = sd.tables["table"]
    assert table.obs["cell_type_curated"].astype(str).tolist() == ["Tumor", "CD8 T", "Tumor", "Stroma"]
    attrs = table.uns["spatialdata_attrs"]
    assert attrs["region"] in sd.labels and attrs["instance_key"] == "cell_id"
    shapes = next(iter(sd.shapes.values()))
    assert shapes["name"].tolist() == ["core 1"] and shapes["cls"].tolist() == ["Tumor core"]
    assert list(next(iter(sd.images.values())).coords["c"].values) == ["CD3", "CAR"]
    assert "carspatial_edit_log" in table.uns
    with pytest.raises(SampleError, match="already exists"):
        export_spatialdata(s, out)
