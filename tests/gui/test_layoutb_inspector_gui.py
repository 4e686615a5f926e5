"""The Cell inspector in Review at 1600 x 1000: at least ten marker rows on screen (compact rows, the
table takes the height, details fold away, the chart is a tab), and after pinning a cell with a
real click the active layer is a channel, never the mask (issue 14, item 8b)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, camera, session_for

#: a 16-marker panel (more than fit without the fix: about 3 rows were on screen)
PANEL = ["DAPI", "PanCK", "MSLN", "CD3", "CD4", "CD8", "CAR", "CD68", "CD163", "CD20", "Ki-67", "PD-1",
         "PD-L1", "SMA", "CD31", "FOXP3"]


def _rows_on_screen(table) -> int:
    vh = table.viewport().height()
    return sum(1 for r in range(table.rowCount())
               if table.rowViewportPosition(r) >= 0
               and table.rowViewportPosition(r) + table.rowHeight(r) <= vh)


def test_review_inspector_shows_ten_marker_rows_and_a_click_keeps_paint_away(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets import workflows

    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    sample = grid_sample(markers=PANEL, types=("CAR T", "Tumor", "Macrophage", "Tumor (antigen-neg)", "Stroma",
                                               "CD8 T", "CD4 T", "B cell", "Endothelial", "Other"))
    add_sample_layers(viewer, sample)
    docks = workflows.apply_workflow(viewer, "Review")
    workflows.find_dock(viewer, "Cell inspector").raise_()
    qtbot.wait(100)
    mw = workflows.main_window(docks["Cell inspector"])
    assert (mw.width(), mw.height()) == (1600, 1000)
    insp = workflows.find_widget(viewer, "Cell inspector")
    session = session_for(viewer)
    labels = session.labels_layer(session.sid_of(sample))
    viewer.layers.selection.active = labels                   # the reviewer was on the mask
    # a real click on a cell: centre the camera on cell 3 (the first 10 x 10 px square), click the centre
    obs = sample.table.obs
    row = int(np.flatnonzero(obs["cell_id"].to_numpy() == 30)[0])
    x, y = sample.table.obsm["spatial"][row]
    camera(viewer).center = (float(y), float(x))
    camera(viewer).zoom = 8.0
    qtbot.wait(50)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, pos=QPoint(canvas.width() // 2, canvas.height() // 2))
    qtbot.waitUntil(lambda: insp._current is not None, timeout=20_000)
    assert insp._current[1] == 30
    active = viewer.layers.selection.active
    assert active is not labels
    assert active.__class__.__name__ == "Image"                # no paint / erase one key away
    qtbot.wait(50)
    table = insp.table
    assert table.rowCount() == len(PANEL)
    assert insp.values_tabs.currentWidget() is table
    assert table.isVisible()
    assert _rows_on_screen(table) >= 10, (_rows_on_screen(table), table.viewport().height())
    assert insp.details_section.isVisible() and "Cell 30" in insp.header.text()   # the details too
    # folding the details gives the table more rows
    before = _rows_on_screen(table)
    insp.details_section.set_expanded(False)
    qtbot.wait(50)
    assert _rows_on_screen(table) >= before
    insp.details_section.set_expanded(True)
