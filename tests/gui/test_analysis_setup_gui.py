"""The Analysis dock on real data (cytomapper IMC with its own ``CellType`` column): the cell-type
column found as the CLI finds it, the roles editor (shown, edited, saved in ``uns``), the pixel-size
field with its source, contact presets and phenoptr's statistics; ligand-receptor on the demo's
protein panel with the engaged cells drawn on the slide; a run that cannot start says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_carspatial._napari.layers import add_sample_layers

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "cytomapper_pancreas_imc"


def _wait(qtbot, w, stat):
    qtbot.waitUntil(lambda: w._worker is None and w.current is not None and w.current.statistic == stat,
                    timeout=90_000)


@pytest.fixture
def cytomapper():
    if not REAL.is_dir():
        pytest.skip("shared real data not here")
    from napari_carspatial.io import read_sample

    return read_sample(REAL / "images" / "G01_imc.tiff", mask=REAL / "masks" / "G01_mask.tiff",
                       table=REAL / "cells.csv")


def test_cytomapper_cell_types_roles_pixel_size(make_napari_viewer_proxy, qtbot, cytomapper):
    from napari_carspatial.analysis.roles import load_roles
    from napari_carspatial.model.cell_types import resolve_cell_type_key
    from napari_carspatial.widgets.analysis import AnalysisWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, cytomapper)
    w = AnalysisWidget(viewer)
    t = cytomapper.table
    # the column the CLI and the batch use, said so; other categorical columns can be chosen
    assert w.cell_type_key == resolve_cell_type_key(t).key == "CellType"
    assert "found by name" in w.key_info.text()
    # the roles: nothing in celltype_A/B/C says tumour or CAR T, and the editor shows it
    rows = {w.roles.table.item(i, 0).text(): w.roles.table.item(i, 1).text() for i in range(w.roles.table.rowCount())}
    assert rows["CAR T"] == "not mapped" and rows["tumour"] == "not mapped"
    assert "celltype_A" in w.roles.unmapped.text()
    # the pixel size: the TIFF has none, the field says so; IMC is 1 µm per pixel
    assert w.setup.pixel_size().value is None and "unknown" in w.setup.px_info.text()
    w.setup.px_override.setChecked(True)
    w.setup.px_spin.setValue(1.0)
    assert w.setup.pixel_size().source == "user" and "from: user" in w.setup.px_info.text()
    w.run("cart")
    _wait(qtbot, w, "cart")
    assert w.current.params["pixel_size_um"] == 1.0
    m = w.current.tables["metrics"].set_index("metric")
    assert np.isnan(m.loc["car_t_density_per_mm2", "value"]) and "not mapped" in m.loc["car_t_density_per_mm2", "note"]
    cells = [w.results.table.item(i, 1).text() for i in range(w.results.table.rowCount())]
    assert "n/a" in cells and "0" not in [c for c in cells if c.startswith("0") and len(c) == 1]
    # map the tumour role (headless underneath) -> saved in uns, used by the next run
    w.roles.set_types("tumor", ["celltype_C"])
    stored = load_roles(t)
    assert stored is not None and stored.types["tumor"] == ["celltype_C"]
    w2 = AnalysisWidget(viewer)   # a fresh dock (or the table reopened) shows the saved edit
    assert w2.roles.mapping.types["tumor"] == ["celltype_C"] and w2.roles.mapping.source["tumor"] == "stored"
    w.run("cart")
    _wait(qtbot, w, "cart")
    m = w.current.tables["metrics"].set_index("metric")
    assert m.loc["n_tumor", "value"] == (t.obs["CellType"] == "celltype_C").sum()
    assert np.isfinite(m.loc["tumor_density_per_mm2", "value"])
    # the menu offers the column's types and a marker-rule field
    menu = w.roles.types_menu("car_t")
    assert {a.text() for a in menu.actions() if a.isCheckable()} == {"celltype_A", "celltype_B", "celltype_C"}
    w.roles.set_rule("car_t", "CD8a+")
    assert load_roles(t).rules["car_t"].text == "CD8a+"
    w.roles.reinfer()
    assert not w.roles.mapping.types["tumor"]


def test_contact_presets_and_phenoptr_statistics(make_napari_viewer_proxy, qtbot, cytomapper):
    from napari_carspatial.analysis.contact import CONTACT_PRESETS
    from napari_carspatial.analysis.results import PUBLISHED
    from napari_carspatial.widgets.analysis import AnalysisWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, cytomapper)
    w = AnalysisWidget(viewer)
    offered = {w.stat_combo.itemData(i) for i in range(w.stat_combo.count())}
    assert set(PUBLISHED) <= offered
    assert [w.setup.contact_combo.itemData(i) for i in range(w.setup.contact_combo.count())] == list(CONTACT_PRESETS)
    w.setup.graph_combo.setCurrentIndex(w.setup.graph_combo.findData("contact"))
    w.setup.contact_combo.setCurrentIndex(w.setup.contact_combo.findData("steinbock_expansion"))
    assert w.setup.expand_spin.value() == 4                        # the preset's default (steinbock --dmax 4)
    assert "steinbock" in w.setup.contact_ref.text()
    w.run("nhood")
    _wait(qtbot, w, "nhood")
    assert w.current.params["graph"]["contact"] == "steinbock_expansion"
    assert w.current.params["graph"]["expand_px"] == 4
    w.run("touching")
    _wait(qtbot, w, "touching")
    assert {"phenotype1", "p1_touch_p2"} <= set(w.current.tables["touching"].columns)
    assert w.results.canvas.fig.axes and "touching" in w.results.canvas.fig.axes[0].get_title(loc="left")
    headers = [w.results.table.horizontalHeaderItem(j).text() for j in range(w.results.table.columnCount())]
    assert "A touching B (n)" in headers


def test_ligrec_dot_plot_and_engaged_pairs_on_the_slide(make_napari_viewer_proxy, qtbot):
    from napari.layers import Vectors

    from napari_carspatial._napari import role_of
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets.analysis import ROLE_ENGAGED, AnalysisWidget

    s = demo_sample(size=800, seed=0, timepoint="post")
    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, s)
    w = AnalysisWidget(viewer)
    w.run("ligrec")
    _wait(qtbot, w, "ligrec")
    t = w.current.tables["spatial"]
    assert set(t["source"]) == {"PD-L1"} and set(t["target"]) == {"PD-1"}      # the protein panel
    assert "CD274 → PDCD1" in w.results.canvas.fig.axes[0].get_title(loc="left")
    worker = w.show_engaged("CD274", "PDCD1", "Macrophage", "CAR T")
    assert worker is not None
    qtbot.waitUntil(lambda: any(role_of(lyr) == ROLE_ENGAGED for lyr in viewer.layers), timeout=60_000)
    lyr = next(lyr for lyr in viewer.layers if role_of(lyr) == ROLE_ENGAGED)
    assert isinstance(lyr, Vectors)
    n = lyr.metadata["engaged"]["n_engaged"]
    assert len(lyr.data) == n > 0
    assert "engaged" in w.results.engaged_info.text()
    # arrows start at a sender's centroid (level-0 px, the sample's scale)
    xy = np.asarray(s.table.obsm["spatial"], float)
    mac = s.table.obs["cell_type"].astype(str).to_numpy() == "Macrophage"
    start = lyr.data[0, 0]
    assert np.min(np.abs(xy[mac][:, ::-1] - start).sum(axis=1)) < 1e-6
    assert np.allclose(lyr.scale[-2:], (s.pixel_size_um, s.pixel_size_um))
    # the helper layer is never offered as a region
    w.setup.refresh_regions()
    assert not any(ROLE_ENGAGED in w.setup.region_list.item(i).text() or "→" in w.setup.region_list.item(i).text()
                   for i in range(w.setup.region_list.count()))
    # a run that cannot start says why in the dock, and the dock stays usable
    s.table.var_names = [f"m{i}" for i in range(s.table.n_vars)]
    w.run("ligrec")
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert not w.status.isHidden() and "no ligand-receptor pair" in w.status.text()
    assert w.run_btn.isEnabled()
