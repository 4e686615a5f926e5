"""Curate at 1600 x 1000: the Cells tab's primary actions are on screen without scrolling, and the
header's case line never widens the dock (issue 14: Assign / Exclude sat behind a horizontal scroll
bar)."""

from __future__ import annotations

from qtpy.QtCore import QPoint, QRect
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers

#: ten classes with long names, as the demo has: the class list above takes its full height
TYPES = ("Tumor", "Stroma", "Macrophage", "Tumor (antigen-neg)", "CAR T", "B cell", "CD4 T", "CD8 T",
         "Other", "Endothelial")


def _inside(widget, container) -> bool:
    """``widget`` lies entirely within ``container``'s visible rectangle."""
    rect = QRect(widget.mapTo(container, QPoint(0, 0)), widget.size())
    return container.rect().contains(rect)


def test_curate_primary_actions_on_screen(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets import workflows

    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    sample = grid_sample(types=TYPES)
    sample.metadata.update(patient="PATIENT-0001-LONG-IDENTIFIER", timepoint="day 28 post infusion",
                           response="complete response")
    add_sample_layers(viewer, sample)
    docks = workflows.apply_workflow(viewer, "Curate")
    qtbot.wait(100)
    mw = workflows.main_window(docks["Curation"])
    assert (mw.width(), mw.height()) == (1600, 1000)
    cur = workflows.find_widget(viewer, "Curation")
    assert cur.view is not None
    cur.view.core.select_ids(sample.table.obs["cell_id"].to_numpy()[:4])
    qtbot.wait(50)
    scroll = cur.tabs.widget(0)
    assert cur.tabs.currentIndex() == 0
    assert scroll.horizontalScrollBar().maximum() == 0          # no horizontal scrolling at all
    assert scroll.verticalScrollBar().value() == 0
    dock = docks["Curation"]
    cells = cur.cells
    for b in (cells.assign_button, cells.exclude_button, cells.include_button, cells.confirm_button,
              cells.lasso_button, cells.type_box, cells.reason_box):
        assert b.isVisible()
        assert _inside(b, scroll.viewport()), b.text() if hasattr(b, "text") else b
        assert _inside(b, dock)
        assert b.width() >= b.minimumSizeHint().width()         # labels not cut
    assert cells.assign_button.isEnabled()
    # the case line is cut to the column, the full text in its tooltip
    meta = cur.header.meta_label
    assert "complete response" in meta.text()
    assert "complete response" in meta.toolTip()
    assert _inside(meta, dock)
    assert cur.header.minimumSizeHint().width() <= dock.width()
