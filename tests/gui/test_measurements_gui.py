"""The Measurements dock: one row per cell, sorted and filtered with numpy, a click centres the cell,
CSV export of what is shown; region rows with area and per-class counts (issue 14, item 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, camera, session_for


@pytest.fixture
def dock(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.measurements import MeasurementsWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample(pixel_size_um=0.5)
    add_sample_layers(viewer, sample)
    w = MeasurementsWidget(viewer)
    qtbot.addWidget(w)
    return viewer, sample, w


def test_one_row_per_cell_with_units(dock):
    viewer, sample, w = dock
    m = w.model
    assert m.rowCount() == sample.table.n_obs
    from qtpy.QtCore import Qt

    headers = [m.headerData(j, Qt.Horizontal).replace("\n", " ") for j in range(m.columnCount())]   # 2-line headers
    assert headers[:2] == ["cell id", "type"]
    assert "area (µm²)" in headers
    assert "CD3 mean" in headers
    assert m.data(m.index(0, headers.index("area (µm²)"))) == "25"     # 100 px² x 0.25 µm²/px²
    assert "nan" not in {m.data(m.index(r, c)) for r in range(5) for c in range(m.columnCount())}


def test_sort_filter_click_and_export(dock, tmp_path):
    from qtpy.QtCore import Qt

    viewer, sample, w = dock
    m = w.model
    j = m.meas.index_of("marker:CD3")
    m.sort(j, Qt.DescendingOrder)
    shown = [float(m.meas.values(j)[m.table_row(r)]) for r in range(m.rowCount())]
    assert shown == sorted(shown, reverse=True)
    w.class_box.setCurrentIndex(w.class_box.findData("CAR T"))
    obs = sample.table.obs
    assert m.rowCount() == int((obs["cell_type"] == "CAR T").sum())
    assert w.count_label.text() == f"{m.rowCount()} of {sample.table.n_obs} cells"
    kept = [float(m.meas.values(j)[m.table_row(r)]) for r in range(m.rowCount())]
    assert kept == sorted(kept, reverse=True)                       # the sort survives the filter
    cid = w.center_on_row(0)
    row = int(np.flatnonzero(obs["cell_id"].to_numpy() == cid)[0])
    x, y = sample.table.obsm["spatial"][row]
    np.testing.assert_allclose(camera(viewer).center[-2:], (y * 0.5, x * 0.5))
    assert viewer.layers.selection.active is not session_for(viewer).labels_layer(session_for(viewer).sid_of(sample))
    n = w.export_csv(tmp_path / "car_t.csv")
    back = pd.read_csv(tmp_path / "car_t.csv")
    assert n == len(back) == m.rowCount()
    assert back["cell id"].iloc[0] == cid
    assert set(back["type"]) == {"CAR T"}


def test_region_rows(dock):
    viewer, sample, w = dock
    session = session_for(viewer)
    view = session.curation(session.sid_of(sample))
    view.core.add_roi(np.array([[0, 0], [0, 30], [30, 30], [30, 0]], float), name="corner", cls="Tumor core")
    view.sync_roi_layer()
    w.refresh()
    df = w.region_frame().set_index("region")
    assert df.loc["corner", "area (mm²)"] == pytest.approx(30 * 30 * 0.25 / 1e6)
    assert df.loc["corner", "cells"] == 9          # 3 x 3 cell centres inside
    headers = [w.region_table.horizontalHeaderItem(j).text() for j in range(w.region_table.columnCount())]
    assert "area (mm²)" in headers
    assert "CAR T cells" in headers
    assert "CAR T per mm²" in headers
    assert w.roi_box.findData("corner") >= 0
    w.roi_box.setCurrentIndex(w.roi_box.findData("corner"))
    assert w.model.rowCount() == 9
