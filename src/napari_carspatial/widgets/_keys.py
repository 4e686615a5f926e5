"""The Qt half of the viewer's shared key bindings (:mod:`napari_carspatial._napari.keys`).

A key press goes to the dock that was used last among the docks **on screen** (:func:`on_screen`:
visible and not a background tab of tabified docks). A dock becomes the most recent when it
registers, is shown, gets a mouse press or the keyboard focus anywhere inside it; that tracking is
Qt, so it lives here, on each registered dock (nothing kept per viewer or per process).

Example (a dock)::

    from ._keys import get_dispatcher

    class MyDock(QWidget):
        def __init__(self, napari_viewer):
            super().__init__()
            self.viewer = napari_viewer
            get_dispatcher(napari_viewer).register(self, {
                "Control-Z": lambda viewer: self.undo(),
                "Alt-1": lambda viewer: self.do_first(),
            })

        def cleanup(self):            # call from closeEvent / deleteLater
            get_dispatcher(self.viewer).unregister(self)
"""

from __future__ import annotations

import contextlib
import weakref

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication

from .._napari import KeyBindings, session_for


def on_screen(widget) -> bool:
    """True when ``widget`` is shown to the user.

    Qt reports widgets in background tabs of tabified docks as visible; their visible region is
    empty.
    """
    try:
        return bool(widget.isVisible()) and not widget.visibleRegion().isEmpty()
    except (RuntimeError, AttributeError):  # the C++ object is gone, or not a widget
        return False


class _Activator(QObject):
    """Child of a registered dock: shown / mouse press / focus inside -> the dock is the most recent."""

    def __init__(self, bindings: KeyBindings, owner):
        super().__init__(owner)
        self._bindings = weakref.ref(bindings)
        self._owner = weakref.ref(owner)
        owner.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.focusChanged.connect(self._on_focus)
        bref, oid = self._bindings, id(owner)
        owner.destroyed.connect(lambda *_a: _forget(bref, oid))

    def _activate(self) -> None:
        b, o = self._bindings(), self._owner()
        if b is not None and o is not None:
            b.activate(o)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() in (QEvent.Type.Show, QEvent.Type.MouseButtonPress, QEvent.Type.FocusIn):
            self._activate()
        return False

    def _on_focus(self, _old, new) -> None:
        o = self._owner()
        if o is None or new is None:
            return
        with contextlib.suppress(RuntimeError):
            if new is o or o.isAncestorOf(new):
                self._activate()



def _forget(bindings_ref, owner_id: int) -> None:
    """A registered dock was destroyed: remove its handlers."""
    b = bindings_ref()
    if b is None:
        return
    for o in b.owners():
        if id(o) == owner_id:
            with contextlib.suppress(RuntimeError, ValueError, TypeError):
                b.unregister(o)


def _watch(bindings: KeyBindings, owner) -> None:
    if not hasattr(owner, "installEventFilter"):   # scripts and tests may register plain objects
        return
    for child in owner.findChildren(_Activator):
        if child.parent() is owner:
            return
    _Activator(bindings, owner)


def get_dispatcher(viewer) -> KeyBindings:
    """The viewer's shared :class:`~napari_carspatial._napari.KeyBindings` (``session_for(viewer).keys``),
    with docks judged by :func:`on_screen` and activated by focus, clicks and showing."""
    keys = session_for(viewer).keys
    if keys.shown_default is not on_screen:
        keys.shown_default = on_screen
        keys.on_register.append(lambda owner, _k=keys: _watch(_k, owner))
    return keys
