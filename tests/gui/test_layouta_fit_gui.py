"""Every workflow fits a 1600 x 1000 window (issue 14, layout): no dock's minimum size forces the
window taller, the canvas keeps at least 60 % of the width, and the class list shows its rows.

The Analyse workflow needed 1110-1126 px of height (the Analysis dock's minimum height was 754 px:
its Results tab, figure and table, had no scroll area), which squeezed the Legend to 3 rows."""

from __future__ import annotations

import contextlib

import pytest
from pytestqt.exceptions import TimeoutError  # noqa: A004 - pytest-qt's
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers

#: ten classes, as the demo has: the Legend must show them all (>= 8 rows) beside the working dock
TYPES = ("CAR T", "Tumor", "Macrophage", "Stroma", "CD4 T", "CD8 T", "B cell", "Endothelial", "Other",
         "Tumor (antigen-neg)")
W, H = 1600, 1000


@pytest.fixture(scope="module")
def laid_out(request):
    """One viewer for the module (a viewer costs ~1 s): 1600 x 1000, ten classes."""
    from plain_viewer import plain_viewer
    from qtpy.QtWidgets import QApplication

    with plain_viewer(width=W, height=H) as viewer:
        add_sample_layers(viewer, grid_sample(types=TYPES))
        QApplication.processEvents()
        yield viewer


def _rows_in_view(tree) -> float:
    return tree.viewport().height() / max(tree.sizeHintForRow(0), 1)


@pytest.mark.parametrize("name", ["Review", "Curate", "Segment", "Analyse", "Cohort"])
def test_workflow_fits_1600_by_1000(laid_out, qtbot, name):
    from napari_carspatial.widgets import workflows

    viewer = laid_out
    docks = workflows.apply_workflow(viewer, name)
    mw = workflows.main_window(docks[workflows.CLASS_LIST])
    mw.resize(W, H)
    qtbot.waitUntil(lambda: (mw.width(), mw.height()) == (W, H), timeout=20_000)
    qtbot.wait(50)
    # no dock forces the window taller or wider than the screen: Qt's own minimum of the window
    assert mw.minimumSizeHint().height() <= H, (name, mw.minimumSizeHint())
    assert mw.minimumSizeHint().width() <= W
    for dock_name, d in docks.items():
        assert d.minimumSizeHint().height() <= H - 300, (name, dock_name, d.minimumSizeHint())
        assert d.minimumSizeHint().width() <= 0.4 * W, (name, dock_name, d.minimumSizeHint())
    assert (mw.width(), mw.height()) == (W, H)
    h, w = viewer.canvas.size
    assert w >= 0.6 * W, (name, w)
    assert h >= 0.85 * H, (name, h)
    legend = workflows.find_widget(viewer, workflows.CLASS_LIST)
    tree = legend.categories.tree
    assert tree.topLevelItemCount() == len(TYPES)
    assert _rows_in_view(tree) >= 8, (name, _rows_in_view(tree))   # Segment too: its sections scroll
    # no button or check box of a working dock is cut off ("dit current viev", "mmit (Shift+Ente")
    from qtpy.QtWidgets import QAbstractButton

    for dock_name, d in docks.items():
        for b in d.findChildren(QAbstractButton):
            if b.isVisibleTo(d) and b.text():
                assert b.width() >= b.sizeHint().width() - 2, (name, dock_name, b.text(), b.width(), b.sizeHint())
    # after a window resize (shown, maximised, by the user) the Legend keeps the height of its
    # rows, without empty rows taken from the working dock
    mw.resize(W, H + 100)   # taller: every workflow's minimum allows it (the Xvfb screen is 1200 px)
    qtbot.waitUntil(lambda: mw.height() == H + 100, timeout=20_000)
    mw.resize(W, H)
    qtbot.waitUntil(lambda: mw.height() == H, timeout=20_000)
    low = 8

    def sized():   # the column is sized again 50 ms after the last resize
        return low <= _rows_in_view(tree) <= len(TYPES) + 2

    with contextlib.suppress(TimeoutError):   # pytest-qt's own TimeoutError: the assert says more
        qtbot.waitUntil(sized, timeout=20_000)
    assert sized(), (name, _rows_in_view(tree), mw.height(), legend.height())


def test_analysis_tabs_scroll_instead_of_growing(laid_out, qtbot):
    """The Results tab (figure, table, exports) scrolls in a short dock; its figure stays whole."""
    from napari_carspatial.widgets import workflows
    from napari_carspatial.widgets.analysis.results import FIGURE_MIN_PX

    viewer = laid_out
    workflows.apply_workflow(viewer, "Analyse")
    w = workflows.find_widget(viewer, "Analysis")
    w.tabs.setCurrentWidget(w.results)
    qtbot.wait(50)
    # the dock's minimum no longer holds the figure and the table: a scroll area does
    assert w.minimumSizeHint().height() < 420, w.minimumSizeHint()
    assert w.results.canvas.height() >= FIGURE_MIN_PX
    # the controls above the figure and the figure itself are in view without scrolling
    top = w.results.canvas.mapTo(w.results.scroll.widget(), w.results.canvas.rect().bottomLeft()).y()
    assert top <= w.results.scroll.viewport().height(), (top, w.results.scroll.viewport().height())
