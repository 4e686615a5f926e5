"""The busy notice never moves the layout (issue 14, latency).

The first "Save as" of the Curation dock blocked the GUI thread 0.9-1.6 s at 10^6 cells although
the save itself takes ~20 ms: the notice ("<sample> is busy: saving") that every dock shows made
each dock taller when it appeared, the main window grew / the canvas shrank (1083 -> 1177 px in a
small run), and napari re-sliced and repainted the canvas once per dock, and again when it went.
Now the notice floats over its dock's row without taking layout space: showing or hiding it
changes no dock's size or size hint, not the window, not the canvas.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import QEvent, QObject, QPoint
from qtpy.QtWidgets import QApplication
from ux_samples import _private_user_dirs  # noqa: F401 - the autouse fixture

W, H = 1600, 1000
DOCKS = ("Legend", "Curation", "Cell inspector")


class _Resizes(QObject):
    """Counts the resize events of the widgets it watches."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Resize:
            self.count += 1
        return False


def _settle():
    for _ in range(5):   # posted layout requests (and the ones they post) are handled
        QApplication.sendPostedEvents()
        QApplication.processEvents()


def _sizes(viewer, mw, docks) -> dict:
    out = {"window": (mw.width(), mw.height()), "central": (mw.centralWidget().width(), mw.centralWidget().height()),
           "canvas": tuple(viewer.canvas.size)}
    for name, (dock, widget) in docks.items():
        for what, w in (("dock", dock), ("widget", widget)):
            out[f"{name} {what}"] = tuple((q.width(), q.height()) for q in (w.size(), w.sizeHint(),
                                                                            w.minimumSizeHint(), w.minimumSize()))
    return out


@pytest.fixture
def busy_window(qtbot):
    """A 1600 x 1000 window (a plain viewer, closed at the end, as test_layouta_fit_gui has it: the
    leak check of napari's fixture flags any test that opens these docks from the plugin manifest)."""
    from plain_viewer import plain_viewer

    from napari_carspatial._napari import add_sample_layers, session_for
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets import workflows

    with plain_viewer(width=W, height=H) as viewer:
        sample = demo_sample(size=256, seed=0, image=False)   # the mask and table: 1 layer, not 15
        add_sample_layers(viewer, sample)
        docks = {}
        for name in DOCKS:   # stacked, all visible: each one's notice used to grow the column
            dock, widget = viewer.window.add_plugin_dock_widget("napari-carspatial", name)
            docks[name] = (dock, getattr(widget, "native", widget))
        mw = workflows.main_window(docks["Legend"][0])
        mw.resize(W, H)
        qtbot.waitUntil(lambda: (mw.width(), mw.height()) == (W, H), timeout=20_000)
        _settle()
        session = session_for(viewer)
        yield viewer, mw, docks, session, session.sid_of(sample), sample.name


def test_busy_notice_moves_nothing(busy_window, qtbot):
    viewer, mw, docks, session, sid, name = busy_window
    notices = {n: w.busy_notice for n, (_d, w) in docks.items()}
    assert all(n.isHidden() for n in notices.values())
    before = _sizes(viewer, mw, docks)
    resizes = _Resizes()
    canvas = mw.centralWidget()
    watched = [mw, canvas, *canvas.findChildren(QObject), *(d for d, _w in docks.values())]
    watched = [w for w in watched if hasattr(w, "installEventFilter")]
    for w in watched:
        w.installEventFilter(resizes)

    session.set_busy(sid, "saving")
    qtbot.waitUntil(lambda: all(n.isVisible() for n in notices.values()), timeout=5_000)
    _settle()
    busy = _sizes(viewer, mw, docks)
    for dock_name, notice in notices.items():
        assert notice.text() == f"{name} is busy: saving. Edits wait until it is done."
        host = notice.parentWidget()
        geo = notice.geometry()
        assert geo.height() >= notice.label.sizeHint().height() > 0, dock_name
        assert host.rect().contains(geo), (dock_name, geo, host.rect())   # inside its dock, width-wise too
        # on top: what is under its centre is the notice (or its label / icon), not a control
        hit = QApplication.widgetAt(notice.mapToGlobal(QPoint(geo.width() // 2, geo.height() // 2)))
        assert hit is notice or notice.isAncestorOf(hit), (dock_name, hit)
    assert busy == before
    assert resizes.count == 0

    session.set_busy(sid, None)
    qtbot.waitUntil(lambda: all(n.isHidden() for n in notices.values()), timeout=5_000)
    _settle()
    assert _sizes(viewer, mw, docks) == before
    assert resizes.count == 0
    # a second save shows it again, still in place, still without moving anything
    session.set_busy(sid, "saving")
    qtbot.waitUntil(lambda: all(n.isVisible() for n in notices.values()), timeout=5_000)
    _settle()
    assert _sizes(viewer, mw, docks) == before
    session.set_busy(sid, None)
    qtbot.waitUntil(lambda: all(n.isHidden() for n in notices.values()), timeout=5_000)
    _settle()
    assert resizes.count == 0
    for w in watched:
        w.removeEventFilter(resizes)
