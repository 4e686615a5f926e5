"""The per-viewer key dispatcher (widgets/_keys.py): one viewer binding per key, the dock on
screen used last gets the key, unregistering one dock keeps the other's keys, Alt+digits reach
the dock even with a Labels layer active (plain digits are the Labels tools)."""

from __future__ import annotations

import numpy as np
from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from napari_carspatial.widgets._keys import get_dispatcher, on_screen


def _qt_viewer(viewer):
    return viewer.__wrapped__.window._qt_viewer


def _press(viewer, key):
    return _qt_viewer(viewer)._key_map_handler.press_key(key)


def _dock(name, log, qtbot, show=True):
    w = QLabel(name)
    if show:
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
    keys = {"Control-Z": lambda v: log.append((name, "undo")), "Alt-1": lambda v: log.append((name, "1"))}
    return w, keys


def test_most_recent_dock_on_screen_gets_the_key(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    before = viewer.keymap.get(coerce_keybinding("Control-Z"))
    log = []
    d = get_dispatcher(viewer)
    assert get_dispatcher(viewer.__wrapped__) is d
    a, ka = _dock("curation", log, qtbot)
    b, kb = _dock("segmentation", log, qtbot)
    d.register(a, ka)
    d.register(b, kb)
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("segmentation", "undo")   # registered last
    d.activate(a)
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("curation", "undo")
    a.hide()                                   # the recent one is not on screen: the other one
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("segmentation", "undo")
    a.show()
    qtbot.waitExposed(a)
    a.setFocusPolicy(Qt.StrongFocus)
    b.setFocusPolicy(Qt.StrongFocus)
    b.activateWindow()
    b.setFocus()
    qtbot.waitUntil(lambda: d.owners()[-1] is b, timeout=20_000)   # focus activates a dock
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("segmentation", "undo")

    # unregistering one dock keeps the other's keys
    d.unregister(b)
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("curation", "undo")
    assert _press(viewer, "Alt-1")
    assert log[-1] == ("curation", "1")
    d.unregister(a)
    assert coerce_keybinding("Alt-1") not in viewer.keymap   # no handler left: unbound
    assert viewer.keymap.get(coerce_keybinding("Control-Z")) is before


def test_background_tab_is_not_on_screen(make_napari_viewer_proxy, qtbot):
    """Two tabified docks: Qt calls both visible; only the front tab gets the keys."""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    viewer = make_napari_viewer_proxy()
    log = []
    d = get_dispatcher(viewer)
    a, ka = _dock("curation", log, qtbot, show=False)
    b, kb = _dock("segmentation", log, qtbot, show=False)
    win = QMainWindow()
    qtbot.addWidget(win)
    win.setCentralWidget(QLabel("canvas"))
    da, db = QDockWidget("Curation", win), QDockWidget("Segmentation", win)
    da.setWidget(a)
    db.setWidget(b)
    win.addDockWidget(Qt.RightDockWidgetArea, da)
    win.tabifyDockWidget(da, db)
    win.resize(800, 600)
    win.show()
    qtbot.waitExposed(win)
    da.raise_()
    qtbot.waitUntil(lambda: on_screen(a), timeout=20_000)
    assert a.isVisible()
    assert b.isVisible()   # Qt says both are visible...
    assert not on_screen(b)                          # ...but b is a background tab
    d.register(a, ka)
    d.register(b, kb)                                # the most recent, but not on screen
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("curation", "undo")
    db.raise_()
    qtbot.waitUntil(lambda: on_screen(b) and not on_screen(a), timeout=20_000)
    assert _press(viewer, "Control-Z")
    assert log[-1] == ("segmentation", "undo")
    d.unregister(a)
    d.unregister(b)


def test_alt_digit_reaches_the_dock_from_the_canvas_with_labels_active(make_napari_viewer_proxy, qtbot):
    """A real key event on the canvas: Alt+2 goes to the dock, the Labels layer stays in its mode
    (plain 2 would switch it to paint)."""
    viewer = make_napari_viewer_proxy(show=True)
    lab = viewer.add_labels(np.zeros((32, 32), np.int32))
    viewer.layers.selection.active = lab
    log = []
    w, _ = _dock("curation", log, qtbot)
    get_dispatcher(viewer).register(w, {"Alt-2": lambda v: log.append("alt2")})
    canvas = _qt_viewer(viewer).canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_2, Qt.AltModifier)
    qtbot.waitUntil(lambda: log == ["alt2"], timeout=20_000)
    assert lab.mode == "pan_zoom"
    qtbot.keyClick(canvas, Qt.Key_2)               # napari's own digit is untouched
    qtbot.waitUntil(lambda: lab.mode == "paint", timeout=20_000)
    assert log == ["alt2"]
    get_dispatcher(viewer).unregister(w)
