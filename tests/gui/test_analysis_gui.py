"""The Analysis dock on the demo: core and margin drawn as Shapes layers, statistics in workers,
results stored and shown again, niche layer with its legend, exports; screenshots for the docs.

Set ``CARSPATIAL_WRITE_DOCS=1`` to (re)write ``docs/images/analysis*.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_carspatial._napari.coloring import get_coloring
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.analysis.results import load_results

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"


def compartment_polygons(sample, compartment: str, grid_um: float = 10.0) -> list[np.ndarray]:
    """Polygons (level-0 px, (y, x)) of a ground-truth compartment: outer and inner rings."""
    from scipy.spatial import cKDTree
    from skimage.measure import approximate_polygon, find_contours

    a = sample.table
    ps = sample.pixel_size_um
    xy = np.asarray(a.obsm["spatial"], float) * ps
    H, W = sample.shape_yx
    gy, gx = np.mgrid[0:H * ps:grid_um, 0:W * ps:grid_um]
    d, idx = cKDTree(xy).query(np.column_stack([gx.ravel() + grid_um / 2, gy.ravel() + grid_um / 2]))
    comp = a.obs["compartment"].astype(str).to_numpy()[idx]
    m = ((comp == compartment) & (d < 25)).reshape(gy.shape).astype(float)
    from scipy import ndimage

    m = ndimage.binary_opening(m > 0.5, iterations=1).astype(float)
    polys = []
    for c in find_contours(np.pad(m, 1), 0.5):
        p = approximate_polygon((c - 1 + 0.5) * grid_um / ps, tolerance=1.0 * grid_um / ps)
        if len(p) >= 4 and abs(np.dot(p[:, 1], np.roll(p[:, 0], 1)) - np.dot(p[:, 0], np.roll(p[:, 1], 1))) / 2 * ps * ps > 40 * 40:
            polys.append(p[:-1] if np.allclose(p[0], p[-1]) else p)
    return polys


@pytest.fixture(scope="module")
def demo():
    from napari_carspatial.datasets import demo_sample

    return demo_sample(size=1600, timepoint="post", seed=0)


def _wait_result(qtbot, w, stat):
    qtbot.waitUntil(lambda: w._worker is None and w.current is not None and w.current.statistic == stat, timeout=90_000)


def test_analysis_dock_core_vs_margin(make_napari_viewer_proxy, qtbot, demo, tmp_path):
    from napari_carspatial.widgets.analysis import AnalysisWidget

    viewer = make_napari_viewer_proxy(show=True)
    add_sample_layers(viewer, demo)
    ps = demo.pixel_size_um
    for name, comp, color in (("core", "Tumor core", "#ff4040"), ("margin", "Invasive margin", "#ffd400")):
        viewer.add_shapes(compartment_polygons(demo, comp), shape_type="polygon", name=name, scale=(ps, ps),
                          edge_color=color, face_color="transparent", edge_width=4, units=("um", "um"))
    w = AnalysisWidget(viewer)
    viewer.window.add_dock_widget(w, name="Analysis", area="right")
    w.setup.refresh_regions()
    assert "Shapes: margin" in [w.setup.region_list.item(i).text() for i in range(w.setup.region_list.count())]
    w.setup.set_checked_regions(["Shapes: core", "Shapes: margin"])
    regs = w.setup.selected_regions()
    comp = demo.table.obs["compartment"].astype(str).to_numpy()
    assert (comp[regs["margin"].mask] == "Invasive margin").mean() > 0.8  # ring with holes (even-odd)
    assert (comp[regs["core"].mask] == "Tumor core").mean() > 0.8

    # CAR T measures: the margin holds the CAR T cells, which touch macrophages
    w.run("cart")
    _wait_result(qtbot, w, "cart")
    m = w.current.tables["metrics"].pivot(index="metric", columns="region", values="value")
    assert m.loc["car_t_density_per_mm2", "margin"] > 3 * m.loc["car_t_density_per_mm2", "core"]
    assert m.loc["log2_oe_car_t_myeloid", "margin"] > 0
    assert 0.05 < m.loc["area_mm2", "margin"] < 1.0
    w.results.compare_with("margin", "core")
    qtbot.wait(300)
    shots = {"analysis_cart.png": w.grab()}

    # neighbourhood enrichment: margin vs core with the difference heatmap
    w.run("nhood")
    _wait_result(qtbot, w, "nhood")
    z = w.current.matrix("zscore", "margin")
    assert z.loc["CAR T", "Macrophage"] > 2
    w.results.compare_with("margin", "core")
    qtbot.wait(300)
    shots["analysis_nhood_compare.png"] = w.grab()

    w.run("cooccurrence")
    _wait_result(qtbot, w, "cooccurrence")
    w.results.compare_with("margin", "core")
    qtbot.wait(300)
    shots["analysis_cooccurrence.png"] = w.grab()

    # niches shown on the slide with the legend's colours
    w.run("niches")
    _wait_result(qtbot, w, "niches")
    t = demo.table
    assert "niche" in t.obs
    assert len(t.uns["niche_colors"]) == len(t.obs["niche"].cat.categories)
    col = get_coloring(viewer, w.sample_id)
    assert col.key == "niche"
    qtbot.wait(300)
    shots["analysis_niches.png"] = w.grab()
    viewer.window.resize(1600, 1000)
    qtbot.wait(300)
    viewer.reset_view()
    qtbot.wait(300)
    window_png = viewer.screenshot(canvas_only=False, flash=False)

    # stored in uns with params, region and time; shown again by a fresh dock
    stored = load_results(t)
    assert {"cart", "nhood", "cooccurrence", "niches"} <= set(stored)
    assert stored["nhood"].regions == ["core", "margin"]
    assert stored["nhood"].params["graph"]["method"] == "delaunay"
    w2 = AnalysisWidget(viewer)
    assert w2.stored_combo.count() >= 4
    assert w2.current is not None

    # exports
    files = w.results.export(tmp_path / "fig.png") + w.results.export(tmp_path / "fig.svg") + w.results.export(tmp_path / "tab.csv", "csv")
    assert all(p.stat().st_size > 0 for p in files)
    assert any(p.suffix == ".svg" for p in files)
    assert any(p.suffix == ".csv" for p in files)

    # cancel: the run stops before its result (nothing stored or shown), the dock is usable again
    shown_before = w.current
    w.stat_combo.setCurrentIndex([w.stat_combo.itemData(i) for i in range(w.stat_combo.count())].index("ripley"))
    worker = w.run()
    assert worker is not None
    aborted, returned = [], []
    worker.aborted.connect(lambda: aborted.append(True))
    worker.returned.connect(lambda r: returned.append(r))
    w.cancel()
    qtbot.waitUntil(lambda: w._worker is None, timeout=90_000)
    assert aborted == [True]                          # the worker really stopped
    assert returned == []                             # no result came back
    assert "ripley" not in load_results(t)            # nothing stored in the table
    assert w.current is shown_before                  # the shown result did not change
    assert w.progress.format() == "cancelled"
    assert w.run_btn.isEnabled()

    out = DOCS if os.environ.get("CARSPATIAL_WRITE_DOCS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for name, pix in shots.items():
        assert pix.save(str(out / name))
    import matplotlib.pyplot as plt

    plt.imsave(out / "analysis_window.png", window_png)
