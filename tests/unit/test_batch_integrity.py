"""Batch results that cannot be silently wrong or lost: injective results folders, GeoJSON regions
with holes and invalid polygons counted as the curation path counts them, empty regions reported
as NaN with a reason (never 0.0), the real failing stage, and metric functions only from the
registry (never an arbitrary module named in a config file)."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort import batch as batch_mod
from napari_carspatial.cohort import read_manifest, run_batch
from napari_carspatial.cohort.regions import geojson_regions
from napari_carspatial.io import read_geojson
from napari_carspatial.model import SampleError, set_pixel_size_um


def make_table(path, *, n_side=30, seed=0, pixel_size_um=1.0, type_key="cell_type"):
    """Cells on a jittered grid (10 px apart) over 300 x 300 px: tumour left, CAR T / other right."""
    rng = np.random.default_rng(seed)
    g = (np.arange(n_side) + 0.5) * 10.0
    xx, yy = np.meshgrid(g, g)
    xy = np.column_stack([xx.ravel(), yy.ravel()]) + rng.uniform(-2, 2, (n_side * n_side, 2))
    n = len(xy)
    types = np.where(xy[:, 0] < 150, "Tumor", np.where(rng.random(n) < 0.3, "CAR T", "Stroma"))
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), type_key: pd.Categorical(types)},
                       index=[str(i) for i in range(1, n + 1)])
    t = ad.AnnData(X=rng.random((n, 2)).astype(np.float32), obs=obs,
                   var=pd.DataFrame(index=["CD3", "PanCK"]))
    t.obsm["spatial"] = xy
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region"}
    if pixel_size_um:
        set_pixel_size_um(t, pixel_size_um)
    t.write_h5ad(path)
    return t


def write_manifest(folder, rows, name="manifest.csv"):
    cols = ["sample", "patient", "timepoint", "table", "regions"]
    df = pd.DataFrame([{c: r.get(c, "") for c in cols} for r in rows], columns=cols)
    p = folder / name
    df.to_csv(p, index=False)
    return p


def counts(adata, mask):
    return int(np.count_nonzero(mask))


def tiny(adata, *, cell_type_key="cell_type", regions=None, region_areas_mm2=None, **_):
    rows = []
    for name, m in regions.items():
        a = (region_areas_mm2 or {}).get(name, 0.09)
        rows += [(name, "n_cells", float(m.sum())), (name, "cell_density_per_mm2", m.sum() / a if a > 0 else np.nan),
                 (name, "frac_car_t", float((adata.obs[cell_type_key][m] == "CAR T").mean()) if m.any() else np.nan)]
    return pd.DataFrame(rows, columns=["region", "metric", "value"])


# --------------------------------------------------------------------------- results folders
def test_sample_ids_that_differ_only_in_dropped_characters_keep_their_own_results(tmp_path):
    """P02/post and P02_post mapped to one folder: one overwrote the other, metrics.csv held it twice."""
    make_table(tmp_path / "a.h5ad", n_side=10, seed=1)
    make_table(tmp_path / "b.h5ad", n_side=20, seed=2)
    man = write_manifest(tmp_path, [
        {"sample": "P02/post", "patient": "P02", "timepoint": "post", "table": "a.h5ad"},
        {"sample": "P02_post", "patient": "P03", "timepoint": "post", "table": "b.h5ad"},
    ])
    res = run_batch(man, {"metrics": tiny, "regions": "whole"}, tmp_path / "r", scheduler="sequential",
                    progress=False)
    assert sorted(res.done) == ["P02/post", "P02_post"]
    assert batch_mod.sample_dir(res.out, "P02/post") != batch_mod.sample_dir(res.out, "P02_post")
    n = res.metrics[res.metrics["metric"] == "n_cells"].set_index("sample")["value"]
    assert n.to_dict() == {"P02/post": 100.0, "P02_post": 400.0}
    assert len(res.metrics) == 6  # each sample once
    # resuming skips both (each folder's done.json names its own sample)
    again = run_batch(man, {"metrics": tiny, "regions": "whole"}, tmp_path / "r", scheduler="sequential",
                      progress=False)
    assert sorted(again.skipped) == ["P02/post", "P02_post"]


def test_case_only_differences_are_refused_up_front_naming_both(tmp_path):
    make_table(tmp_path / "a.h5ad", n_side=5)
    man = write_manifest(tmp_path, [
        {"sample": "P01-pre", "patient": "P01", "timepoint": "pre", "table": "a.h5ad"},
        {"sample": "p01-PRE", "patient": "P02", "timepoint": "pre", "table": "a.h5ad"},
    ])
    with pytest.raises(SampleError) as err:
        run_batch(man, {"metrics": tiny, "regions": "whole"}, tmp_path / "r", scheduler="sequential", progress=False)
    assert "'P01-pre' and 'p01-PRE'" in str(err.value) and str(man) in str(err.value)
    assert not (tmp_path / "r" / "samples" / "P01-pre").exists()


# --------------------------------------------------------------------------- GeoJSON regions
def _fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def _feat(rings, cls="Tumor", name=None, gtype="Polygon", otype="annotation"):
    props = {"objectType": otype, "classification": {"name": cls}}
    if name:
        props["name"] = name
    return {"type": "Feature", "geometry": {"type": gtype, "coordinates": rings} if rings is not None else None,
            "properties": props}


SQUARE = [[20, 20], [220, 20], [220, 220], [20, 220], [20, 20]]
HOLE = [[70, 70], [170, 70], [170, 170], [70, 170], [70, 70]]


def test_geojson_regions_honour_holes_like_the_curation_path(tmp_path):
    from napari_carspatial.model.curation import roi_contains

    t = make_table(tmp_path / "t.h5ad")
    gj = tmp_path / "r.geojson"
    gj.write_text(json.dumps(_fc(_feat([SQUARE, HOLE], cls="Stroma"))))
    regions, areas = geojson_regions(gj, t, pixel_size_um=1.0)
    (roi,) = read_geojson(gj)
    yx = t.obsm["spatial"][:, ::-1]
    expected = roi_contains(roi, yx)
    assert counts(t, regions["Stroma"]) == int(expected.sum())
    outer_only = roi.contains(yx) | _in_box(yx, 70, 170)
    assert counts(t, regions["Stroma"]) < int(outer_only.sum())  # the hole's cells are out
    assert areas["Stroma"] == pytest.approx((200 * 200 - 100 * 100) / 1e6)


def _in_box(yx, lo, hi):
    return (yx[:, 0] > lo) & (yx[:, 0] < hi) & (yx[:, 1] > lo) & (yx[:, 1] < hi)


def test_bow_tie_polygon_is_repaired_with_a_warning_naming_the_region(tmp_path, caplog):
    from shapely import make_valid
    from shapely.geometry import Point, Polygon

    t = make_table(tmp_path / "t.h5ad")
    gj = tmp_path / "r.geojson"
    bow = [[20, 20], [220, 220], [220, 20], [20, 220], [20, 20]]   # self-intersecting
    gj.write_text(json.dumps(_fc(_feat([bow], cls="Tumor", name="bow tie"))))
    with caplog.at_level(logging.WARNING):
        regions, areas = geojson_regions(gj, t, pixel_size_um=1.0)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "'bow tie'" in msg and "make_valid" in msg and "r.geojson" in msg
    valid = make_valid(Polygon(bow))
    inside = np.array([valid.contains(Point(x, y)) for x, y in t.obsm["spatial"]])
    assert counts(t, regions["Tumor"]) == int(inside.sum()) > 0
    assert areas["Tumor"] == pytest.approx(valid.area / 1e6) and areas["Tumor"] > 0


def test_regions_without_cells_or_area_are_nan_with_a_reason_never_zero(tmp_path):
    make_table(tmp_path / "t.h5ad")
    gj = tmp_path / "r.geojson"
    outside = [[5000, 5000], [5100, 5000], [5100, 5100], [5000, 5100], [5000, 5000]]
    gj.write_text(json.dumps(_fc(_feat([SQUARE], cls="Stroma"), _feat([outside], cls="Invasive margin"),
                                 _feat(None, cls="TLS", name="lost TLS"))))
    man = write_manifest(tmp_path, [{"sample": "S1", "patient": "P1", "timepoint": "post", "table": "t.h5ad",
                                     "regions": "r.geojson"}])
    res = run_batch(man, {"regions": "geojson"}, tmp_path / "r", scheduler="sequential", progress=False)
    assert res.done == ["S1"], res.failed
    m = res.metrics.set_index(["region", "metric"])
    for region in ("Invasive margin", "TLS"):
        assert m.loc[(region, "n_cells"), "value"] == 0
        for metric in ("car_t_density_per_mm2", "tumor_density_per_mm2", "myeloid_density_per_mm2"):
            assert np.isnan(m.loc[(region, metric), "value"]), (region, metric)
        assert "no cells" in m.loc[(region, "car_t_density_per_mm2"), "note"] or \
            "no area" in m.loc[(region, "car_t_density_per_mm2"), "note"]
    assert m.loc[("Stroma", "car_t_density_per_mm2"), "value"] > 0 and m.loc[("Stroma", "n_cells"), "note"] == ""
    summary = json.loads((batch_mod.sample_dir(res.out, "S1") / "summary.json").read_text())
    assert any("lost TLS" in w and "no geometry" in w for w in summary["warnings"])
    assert set(summary["region_notes"]) == {"Invasive margin", "TLS"}


# --------------------------------------------------------------------------- stages and trust
def test_a_failing_sample_reports_the_stage_it_failed_in(tmp_path):
    make_table(tmp_path / "ok.h5ad", n_side=5)
    make_table(tmp_path / "nopx.h5ad", n_side=5, pixel_size_um=None)
    # vocab: a 'phenotype' column is found by name now; a column no rule knows is not a cell type
    make_table(tmp_path / "notype.h5ad", n_side=5, type_key="my_labels")
    man = write_manifest(tmp_path, [
        {"sample": "ok", "patient": "P1", "timepoint": "pre", "table": "ok.h5ad"},
        {"sample": "nopx", "patient": "P2", "timepoint": "pre", "table": "nopx.h5ad"},
        {"sample": "notype", "patient": "P3", "timepoint": "pre", "table": "notype.h5ad"},
    ])
    res = run_batch(man, {"metrics": tiny, "regions": "whole"}, tmp_path / "r", scheduler="sequential",
                    progress=False)
    stages = res.failed.set_index("sample")["stage"].to_dict()
    assert stages == {"nopx": "pixel size", "notype": "cell types"}
    err = res.failed.set_index("sample")["error"]
    assert "nopx.h5ad" in err["nopx"] and "pixel size" in err["nopx"]
    assert "notype.h5ad" in err["notype"] and "no cell-type column" in err["notype"]


def test_config_metrics_come_from_the_registry_only(tmp_path, monkeypatch):
    cfg = tmp_path / "analysis.yaml"
    cfg.write_text("metrics: os:system\n")
    make_table(tmp_path / "t.h5ad", n_side=5)
    man = write_manifest(tmp_path, [{"sample": "S1", "patient": "P1", "timepoint": "pre", "table": "t.h5ad"}])
    with pytest.raises(SampleError) as err:
        run_batch(man, cfg, tmp_path / "r", scheduler="sequential", progress=False)
    msg = str(err.value)
    assert str(cfg) in msg and "'os:system' is not a registered metric function" in msg and "region_metrics" in msg
    # the project's own, by name or by module:function
    assert batch_mod.resolve_metrics("region_metrics").__name__ == "region_metrics"
    assert batch_mod.resolve_metrics("napari_carspatial.analysis.cart:region_metrics").__name__ == "region_metrics"
    # an entry point of group napari_carspatial.metrics
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="tiny", value=f"{__name__}:tiny", group=batch_mod.METRICS_ENTRY_POINTS)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [ep] if group == ep.group else [])
    assert batch_mod.resolve_metrics("tiny") is tiny
    cfg.write_text("metrics: tiny\nregions: whole\n")
    res = run_batch(man, cfg, tmp_path / "r2", scheduler="sequential", progress=False)
    assert res.done == ["S1"]


def test_progress_is_a_tqdm_bar_on_stderr(tmp_path, capsys):
    make_table(tmp_path / "t.h5ad", n_side=5)
    man = write_manifest(tmp_path, [{"sample": "S1", "patient": "P1", "timepoint": "pre", "table": "t.h5ad"}])
    run_batch(man, {"metrics": tiny, "regions": "whole"}, tmp_path / "r", scheduler="sequential", progress=True)
    err = capsys.readouterr().err
    assert "batch: 100%" in err and "1/1" in err and ("sample/s" in err or "s/sample" in err)
    assert read_manifest(man).samples == ["S1"]


# --------------------------------------------------------------------------- QuPath spellings (issue 12)
def test_qupath_tma_cores_and_derived_classes_are_kept(tmp_path):
    """QuPath writes objectType "tmaCore" (was compared with "tma_core" and skipped) and a derived
    class as classification.names (was read as "Other"); both round-trip."""
    from napari_carspatial.io import rois_from_geojson, rois_to_geojson

    fc = _fc(_feat([SQUARE], cls="x", name="core A-1", otype="tmaCore"),
             {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
              "properties": {"objectType": "annotation", "name": "pos tumour",
                             "classification": {"names": ["Tumor", "Positive"], "color": [200, 0, 0]}}},
             {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
              "properties": {"objectType": "tmaCore", "name": "gone", "isMissing": True}})
    rois = rois_from_geojson(fc)
    assert [r.name for r in rois] == ["core A-1", "pos tumour"]
    assert rois[1].cls == "Tumor: Positive"
    back = rois_to_geojson(rois)["features"][1]["properties"]["classification"]
    assert back["names"] == ["Tumor", "Positive"]
    assert rois_from_geojson(rois_to_geojson(rois))[1].cls == "Tumor: Positive"
