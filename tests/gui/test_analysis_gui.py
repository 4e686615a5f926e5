"""The Analysis dock on the demo: core and margin drawn as Shapes layers, statistics in workers,
results stored and shown again, niche layer with its legend, exports.

The screenshots of the docs are made by ``scripts/screenshots_analysis.py`` (1600 x 1000 windows).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial._napari import role_of, session_for
from napari_carspatial._napari.coloring import get_coloring
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.analysis.results import load_results


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
    # the sample's own ROI layer (made by the curation view) is not offered as a region of its own:
    # each of its ROIs is, once
    session = session_for(viewer)
    sid = session.sid_of(demo)
    session.curation(sid).sync_roi_layer()
    assert any(role_of(lyr) == "rois" for lyr in viewer.layers)
    w = AnalysisWidget(viewer)
    viewer.window.add_dock_widget(w, name="Analysis", area="right")
    w.setup.refresh_regions()
    offered = [w.setup.region_list.item(i).text() for i in range(w.setup.region_list.count())]
    assert "Shapes: margin" in offered
    assert sorted(n for n in offered if n.startswith("ROI: ")) == sorted(f"ROI: {r.name}" for r in demo.rois)
    assert not any("ROIs" in n for n in offered), offered
    assert len(offered) == len(set(offered))
    # the cell-type column is the one the CLI finds, and the dock says so
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    key = resolve_cell_type_key(demo.table).key
    assert w.cell_type_key == key == "cell_type_curated"    # the curation's copy wins, as on the CLI
    assert "curated copy of 'cell_type'" in w.key_info.text()
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
    # counts next to fractions, intervals, plain labels, the difference with its interval
    tab = w.results.table
    headers = [tab.horizontalHeaderItem(j).text() for j in range(tab.columnCount())]
    assert headers[:4] == ["Measure", "margin", "core", "margin − core"]
    labels = [tab.item(i, 0).text() for i in range(tab.rowCount())]
    assert "CAR T cells (n)" in labels and "Area (mm²)" in labels and "n_car_t" not in labels
    i = next(k for k, lab in enumerate(labels) if lab.startswith("CAR T touching myeloid"))
    assert "/" in tab.item(i, 1).text() and "[" in tab.item(i, 1).text() and "pts" in tab.item(i, 3).text()
    assert "Wilson" in w.results.info.text() or "bootstrap" in w.results.info.text()
    shots = {"analysis_cart.png": w.grab()}

    # neighbourhood enrichment: margin vs core with the difference heatmap
    w.run("nhood")
    _wait_result(qtbot, w, "nhood")
    z = w.current.matrix("zscore", "margin")
    assert z.loc["CAR T", "Macrophage"] > 2
    w.results.compare_with("margin", "core")
    qtbot.wait(300)
    # compared as log2 O/E differences with intervals, never as a difference of z-scores
    title = w.results.canvas.fig.axes[0].get_title(loc="left")
    assert "difference of log2 obs / exp" in title
    assert any("[95%]" in w.results.table.horizontalHeaderItem(j).text() for j in range(w.results.table.columnCount()))
    shots["analysis_nhood_compare.png"] = w.grab()

    w.run("cooccurrence")
    _wait_result(qtbot, w, "cooccurrence")
    w.results.compare_with("margin", "core")
    qtbot.wait(300)
    # the lines have the legend's colours (the colouring the slide uses), one panel per type
    from matplotlib.colors import to_hex

    legend = dict(zip(demo.table.obs[key].cat.categories,
                      [to_hex(c) for c in demo.table.uns[f"{key}_colors"]], strict=True))
    panels = [ax for ax in w.results.canvas.fig.axes if ax.get_visible() and ax.get_lines()]
    assert len(panels) >= 8
    for ax in panels:
        name = _panel_name(ax)
        assert to_hex(ax.get_lines()[0].get_color()) == legend[name], name
    # a colour changed in the legend is the plot's colour at the next redraw
    cols = list(demo.table.uns[f"{key}_colors"])
    k = list(legend).index("Macrophage")
    cols[k] = "#00ffaa"
    demo.table.uns[f"{key}_colors"] = cols
    w.results.redraw()
    ax = next(a for a in w.results.canvas.fig.axes if _panel_name(a) == "Macrophage")
    assert to_hex(ax.get_lines()[0].get_color()) == "#00ffaa"
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

    for name, pix in shots.items():
        assert pix.save(str(tmp_path / name))
    assert window_png.shape[0] > 0


def _panel_name(ax) -> str:
    """The type a small-multiple panel shows: its title's full text (the drawn one may end in "…")."""
    return next((t.full_text for t in ax.texts if hasattr(t, "full_text")), "").strip()
