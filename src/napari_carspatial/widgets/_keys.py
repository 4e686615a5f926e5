"""One key binding per key on the viewer, shared by the docks: the dock the user is looking at wins.

napari has one keymap per viewer: two docks that both ``viewer.bind_key("Control-Z", ...,
overwrite=True)`` silently replace each other, and when one unbinds (restoring what it found)
the other dock's shortcut is gone. :class:`KeyDispatcher` owns the viewer binding of each key
and keeps, per key, a stack of handlers registered by docks. A key press goes to the handler of
the most recently *activated* dock that is **on screen** (:func:`on_screen`: visible and not a
background tab of tabified docks). A dock is activated when it registers, is shown, or gets the
keyboard focus (or a mouse press) anywhere inside it. Unregistering a dock removes only its
handlers; a key with no handler left is unbound (and whatever the viewer had bound to it before
the dispatcher took it is put back).

Layer keymaps take priority over the viewer's in napari: while a Labels layer is active, its own
bindings (digits 1-7 for its tools, Ctrl+Z / Ctrl+Shift+Z for paint undo) win. Choose keys that
napari layers do not use (e.g. ``Alt-1`` ... ``Alt-9``; napari 0.9 binds no ``Alt``+digit).

Example (a dock)::

    from ._keys import get_dispatcher

    class MyDock(QWidget):
        def __init__(self, napari_viewer):
            super().__init__()
            self.viewer = napari_viewer
            get_dispatcher(napari_viewer).register(self, {
                "Control-Z": lambda viewer: self.undo(),
                "Control-Shift-Z": lambda viewer: self.redo(),
                "Alt-1": lambda viewer: self.do_first(),
            })

        def cleanup(self):            # call from closeEvent / deleteLater
            get_dispatcher(self.viewer).unregister(self)

Handlers take the viewer, like ``viewer.bind_key`` callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]
_UNSET = object()


def on_screen(widget) -> bool:
    """True when ``widget`` is shown to the user.

    Qt reports widgets in background tabs of tabified docks as visible; their visible region is
    empty.
    """
    try:
        return bool(widget.isVisible()) and not widget.visibleRegion().isEmpty()
    except RuntimeError:  # the C++ object is gone
        return False


def _real(viewer):
    return getattr(viewer, "__wrapped__", viewer)


class _Activator(QObject):
    """Event filter on a registered dock: shown / mouse press -> the dock becomes the most recent."""

    def __init__(self, dispatcher: KeyDispatcher, owner):
        super().__init__(owner)
        self._dispatcher = weakref.ref(dispatcher)
        self._owner = weakref.ref(owner)

    def eventFilter(self, obj, event):
        if event.type() in (QEvent.Type.Show, QEvent.Type.MouseButtonPress, QEvent.Type.FocusIn):
            d, o = self._dispatcher(), self._owner()
            if d is not None and o is not None:
                d.activate(o)
        return False


class KeyDispatcher:
    """Per-viewer dispatcher of viewer key bindings to docks (see the module docstring).

    Use :func:`get_dispatcher` to get the one of a viewer.
    """

    def __init__(self, viewer):
        self.viewer = viewer
        #: (owner, {key: handler}); the most recently activated owner last
        self._stack: list[tuple[Any, dict[str, Handler]]] = []
        #: key -> what the viewer had bound to it before we took it (None: nothing)
        self._prev: dict[str, Any] = {}
        #: key -> the function we bound on the viewer
        self._ours: dict[str, Handler] = {}

    # ------------------------------------------------------------------ registration
    def register(self, owner, keys: dict[str, Handler]) -> None:
        """Register ``owner``'s handlers (``{key: handler(viewer)}``) and activate it.

        Registering again replaces the owner's handlers.
        """
        self._remove(owner)
        self._stack.append((owner, dict(keys)))
        for key in keys:
            self._bind(key)
        self._watch(owner)

    def unregister(self, owner) -> None:
        """Remove ``owner``'s handlers only; keys nobody handles any more are unbound."""
        self._remove(owner)
        for key in list(self._ours):
            if not any(key in k for _o, k in self._stack):
                self._unbind(key)

    def activate(self, owner) -> None:
        """Make ``owner`` the most recent dock (its handlers win among the docks on screen)."""
        for i, (o, _keys) in enumerate(self._stack):
            if o is owner:
                if i != len(self._stack) - 1:
                    self._stack.append(self._stack.pop(i))
                return

    def owners(self) -> list:
        """Registered owners, the most recently activated last."""
        return [o for o, _k in self._stack]

    def handler(self, key: str):
        """The handler a press of ``key`` runs now (None when no dock on screen handles it)."""
        from napari.utils.key_bindings import coerce_keybinding

        kb = coerce_keybinding(key)
        for owner, keys in reversed(self._stack):
            for k, fn in keys.items():
                if coerce_keybinding(k) == kb and on_screen(owner):
                    return fn
        return None

    def dispatch(self, key: str, viewer=None):
        """Run the handler of ``key`` (what the viewer binding calls). Returns its result."""
        fn = self.handler(key)
        viewer = self.viewer if viewer is None else viewer
        if fn is None:
            prev = self._prev.get(key)
            return prev(viewer) if callable(prev) else None
        return fn(viewer)

    # ------------------------------------------------------------------ internals
    def _remove(self, owner) -> None:
        self._stack = [(o, k) for o, k in self._stack if o is not owner]

    def _bind(self, key: str) -> None:
        if key in self._ours:
            return

        def _on_key(viewer, _key=key):
            return self.dispatch(_key, viewer)

        _on_key.__name__ = f"carspatial_dispatch_{key}"
        prev = self.viewer.bind_key(key, _on_key, overwrite=True)
        self._prev[key] = prev
        self._ours[key] = _on_key

    def _unbind(self, key: str) -> None:
        ours = self._ours.pop(key, None)
        prev = self._prev.pop(key, None)
        try:
            current = self.viewer.keymap.get(_coerce(key))
            if current is ours:
                self.viewer.bind_key(key, None)
                if prev is not None:
                    self.viewer.bind_key(key, prev, overwrite=True)
        except (ValueError, TypeError, RuntimeError):  # pragma: no cover - viewer closing
            pass

    def _watch(self, owner) -> None:
        with contextlib.suppress(AttributeError, TypeError, RuntimeError):  # not a QWidget (scripts, tests)
            owner.installEventFilter(_Activator(self, owner))
        ref = id(owner)
        with contextlib.suppress(AttributeError, TypeError, RuntimeError):
            owner.destroyed.connect(lambda *_a: self._forget(ref))
        _watch_focus()

    def _forget(self, ref: int) -> None:
        for o, _k in list(self._stack):
            if id(o) == ref:
                self.unregister(o)

    def _on_focus(self, _old, new) -> None:
        w = new
        owners = {id(o): o for o, _k in self._stack}
        while w is not None:
            if id(w) in owners:
                self.activate(owners[id(w)])
                return
            try:
                w = w.parentWidget()
            except RuntimeError:
                return


def _coerce(key: str):
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(key)


_dispatchers: weakref.WeakKeyDictionary[Any, KeyDispatcher] = weakref.WeakKeyDictionary()
_focus_app: list = []


def _on_focus_changed(old, new) -> None:
    for d in list(_dispatchers.values()):
        d._on_focus(old, new)


def _watch_focus() -> None:
    """Activate the dock that gets the keyboard focus (one connection per application)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None or any(a is app for a in _focus_app):
        return
    app.focusChanged.connect(_on_focus_changed)
    _focus_app[:] = [app]


def get_dispatcher(viewer) -> KeyDispatcher:
    """The :class:`KeyDispatcher` of ``viewer`` (one per viewer; napari's test proxy shares the
    one of the viewer it wraps)."""
    key = _real(viewer)
    d = _dispatchers.get(key)
    if d is None:
        d = _dispatchers[key] = KeyDispatcher(viewer)
    return d
