"""Regions (centroid in polygon), roles, the results store and the per-region graph cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.regions import (
    cells_in_polygon,
    polygon_area_px,
    region_masks,
    regions_from_rois,
    role_masks,
    tissue_area_mm2,
)
from napari_carspatial.analysis.results import (
    GraphCache,
    compute,
    load_results,
    region_graph,
    store_result,
    table_fingerprint,
)
from napari_carspatial.model import SampleError


@pytest.fixture(scope="module")
def demo():
    from napari_carspatial.datasets import demo_sample

    return demo_sample(size=1000, timepoint="post", image=False)


def test_centroid_in_polygon_vectorised_and_yx_order():
    xy = np.array([[1.0, 1.0], [5.0, 1.0], [1.0, 5.0], [3.0, 3.0]])  # (x, y)
    tri_yx = np.array([[0, 0], [0, 4], [4, 0]], float)  # (y, x): the triangle x + y < 4
    np.testing.assert_array_equal(cells_in_polygon(xy, tri_yx), [True, False, False, False])
    rect_yx = np.array([[0, 0], [2, 0], [2, 10], [0, 10]], float)  # y in [0, 2], x in [0, 10]
    np.testing.assert_array_equal(cells_in_polygon(xy, rect_yx), [True, True, False, False])
    assert polygon_area_px(rect_yx) == 20
    with pytest.raises(ValueError, match="3"):
        cells_in_polygon(xy, rect_yx[:2])


def test_demo_rois_and_region_masks(demo):
    a = demo.table
    regs = regions_from_rois(a, demo.rois)
    core = next(r for r in regs.values() if r.cls == "Tumor core")
    comp = a.obs["compartment"].astype(str).to_numpy()
    # the ground-truth core polygon holds (almost only) core cells
    assert core.n_cells > 100 and (comp[core.mask] == "Tumor core").mean() > 0.9
    assert core.area_mm2(demo.pixel_size_um) == pytest.approx(polygon_area_px(core.polygon_yx) * 0.25e-6)
    m = region_masks(a, {"c": core.polygon_yx, "two": [core.polygon_yx, core.polygon_yx]}, include_whole=True)
    assert list(m) == ["whole", "c", "two"] and m["whole"].all() and (m["c"] == m["two"]).all()
    # the whole 500 x 500 µm slide, minus empty borders
    assert 0.15 < tissue_area_mm2(a.obsm["spatial"] * 0.5) <= 0.26


def test_roles_editable_and_pdl1_derived(demo):
    a = demo.table
    masks, info = role_masks(a, roles={"myeloid": ["Macrophage"], "car_t": ["CAR T", "CD8 T"]})
    ct = a.obs["cell_type"].astype(str).to_numpy()
    assert (masks["car_t"] == np.isin(ct, ["CAR T", "CD8 T"])).all()
    assert info["missing_types"] == {} and info["pdl1_threshold"] > 0
    assert masks["pdl1_macrophage"].sum() < masks["myeloid"].sum() and not (masks["pdl1_macrophage"] & ~masks["myeloid"]).any()
    # without roles the mapping is inferred from the demo's names: every inferred type is present
    _, info = role_masks(a)
    assert info["missing_types"] == {} and info["mapping"].types["myeloid"] == ["Macrophage"]
    _, info = role_masks(a, roles={"myeloid": ["Macrophage", "MDSC"]})
    assert info["missing_types"] == {"myeloid": ["MDSC"]}
    with pytest.raises(SampleError, match="no column 'nope'"):
        role_masks(a, cell_type_key="nope")


def test_graph_cache_invalidated_on_edits(demo):
    a = demo.table.copy()
    cache = GraphCache()
    m = a.obs["compartment"].to_numpy() == "Invasive margin"
    g1 = region_graph(a, m, {"method": "delaunay"}, cache=cache)
    g2 = region_graph(a, m, {"method": "delaunay"}, cache=cache)
    assert g1 is g2 and cache.hits == 1
    region_graph(a, m, {"method": "delaunay", "max_distance_um": 15}, cache=cache)
    assert cache.misses == 2
    fp = table_fingerprint(a)
    a.obsm["spatial"][0, 0] += 1.0  # a cell moved (curation)
    assert table_fingerprint(a) != fp
    region_graph(a, m, {"method": "delaunay"}, cache=cache)
    assert cache.misses == 3
    a.uns["carspatial"] = {**a.uns["carspatial"], "stale": True}
    region_graph(a, m, {"method": "delaunay"}, cache=cache)
    assert cache.misses == 4
    with pytest.raises(ValueError, match="labels"):
        region_graph(a, m, {"method": "contact"}, cache=cache)


def test_results_stored_with_params_region_time_and_h5ad_roundtrip(demo, tmp_path):
    import anndata as ad

    a = demo.table.copy()
    comp = a.obs["compartment"].astype(str).to_numpy()
    regs = {"core": comp == "Tumor core", "margin": comp == "Invasive margin"}
    r = compute(a, "nhood", regions=regs, graph={"method": "delaunay", "max_distance_um": 30})
    assert "carspatial" not in a.uns or "analysis" not in a.uns["carspatial"]  # compute does not mutate
    z = r.matrix("zscore", "margin")
    assert list(z.index) == list(a.obs["cell_type"].cat.categories)
    store_result(a, r)
    store_result(a, compute(a, "cart", regions=regs))
    a.write_h5ad(tmp_path / "t.h5ad")
    back = load_results(ad.read_h5ad(tmp_path / "t.h5ad"))
    assert set(back) == {"nhood", "cart"}
    assert back["nhood"].regions == ["core", "margin"] and back["nhood"].params["graph"]["max_distance_um"] == 30
    assert back["nhood"].time == r.time
    pd.testing.assert_frame_equal(back["nhood"].matrix("zscore", "margin"), z, check_names=False)
    with pytest.raises(ValueError, match="statistic"):
        compute(a, "bogus")
