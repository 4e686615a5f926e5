"""``carspatial analyze``: GeoJSON regions in, CSV tables and PNG figures out, same numbers as the API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from napari_carspatial.analysis.cart import region_metrics
from napari_carspatial.analysis.regions import regions_from_rois


def test_analyze_writes_tables_and_figures_equal_to_api(tmp_path):
    from napari_carspatial.cli import main
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.model import ROI

    s = demo_sample(size=1600, timepoint="post", seed=0, image=False)
    core = next(r for r in s.rois if r.cls == "Tumor core")
    margin = ROI("margin box", np.array([[0, 0], [0, 700], [700, 700], [700, 0]], float), cls="Invasive margin")
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[float(x), float(y)] for y, x in
              np.vstack([r.polygon_yx, r.polygon_yx[:1]])]]},
              "properties": {"objectType": "annotation", "name": r.name, "classification": {"name": r.cls}}}
             for r in (core, margin)]
    gj = tmp_path / "regions.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = tmp_path / "out"
    rc = main(["analyze", "demo", "--size", "1600", "--regions", str(gj), "-o", str(out),
               "--stats", "cart,nhood,cooccurrence"])
    assert rc == 0
    m = pd.read_csv(out / "metrics.csv")
    assert set(m["region"]) == {core.name, "margin box"}
    for f in ["nhood_zscore.csv", "cooccurrence_cooccurrence.csv", "cart_infiltration.csv", "params.json",
              f"nhood_{core.name.replace(' ', '_')}.png", "nhood_core_1_vs_margin_box.png"]:
        assert (out / f).stat().st_size > 0, f
    # the same numbers as the headless API on the same regions
    regs = regions_from_rois(s.table, [core, margin])
    api = region_metrics(s.table, regions={k: r.mask for k, r in regs.items()},
                         region_areas_mm2={k: r.area_mm2(s.pixel_size_um) for k, r in regs.items()})
    merged = api.merge(m, on=["region", "metric"], suffixes=("_api", "_cli"))
    assert len(merged) == len(api)
    np.testing.assert_allclose(merged["value_api"], merged["value_cli"], rtol=1e-9, equal_nan=True)


def test_analyze_errors(tmp_path):
    from napari_carspatial.cli import main

    assert main(["analyze", "demo", "--size", "600", "-o", str(tmp_path), "--stats", "bogus"]) == 2
    assert main(["analyze", "demo", "--size", "600", "-o", str(tmp_path), "--regions", str(tmp_path / "no.geojson")]) == 2
