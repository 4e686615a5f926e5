"""One key binding per key on the viewer, shared by the docks: the dock the user is looking at wins.
No Qt (the docks' "on screen" test and focus tracking live in ``widgets/_keys.py``).

napari has one keymap per viewer: two docks that both ``viewer.bind_key("Control-Z", ...,
overwrite=True)`` silently replace each other, and when one unbinds (restoring what it found)
the other dock's shortcut is gone. :class:`KeyBindings` (``session_for(viewer).keys``) owns the
viewer binding of each key and keeps, per key, a stack of handlers registered by owners (docks).
A key press goes to the handler of the most recently *activated* owner that is *shown* (each
owner registers with a ``shown()`` test; a dock passes "visible and not a background tab").
Unregistering an owner removes only its handlers; a key with no handler left is unbound (and
whatever the viewer had bound to it before is put back).

Layer keymaps take priority over the viewer's in napari: while a Labels layer is active, its own
bindings (digits 1-7 for its tools, Ctrl+Z / Ctrl+Shift+Z for paint undo) win. Choose keys that
napari layers do not use (e.g. ``Alt-1`` ... ``Alt-9``; napari 0.9 binds no ``Alt``+digit).

Handlers take the viewer, like ``viewer.bind_key`` callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


def _always(_owner) -> bool:
    return True


def coerce(key: str):
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(key)


class KeyBindings:
    """Per-viewer dispatcher of viewer key bindings to owners (see the module docstring)."""

    def __init__(self, viewer):
        self.viewer = viewer
        #: (owner, {key: handler}, shown); the most recently activated owner last
        self._stack: list[tuple[Any, dict[str, Handler], Callable[[Any], bool]]] = []
        #: key -> what the viewer had bound to it before we took it (None: nothing)
        self._prev: dict[str, Any] = {}
        #: key -> the function we bound on the viewer
        self._ours: dict[str, Handler] = {}
        #: ``shown(owner)`` used when an owner registers without one (the Qt side sets "on screen")
        self.shown_default: Callable[[Any], bool] = _always
        #: called with each owner that registers (the Qt side watches focus and clicks there)
        self.on_register: list[Callable[[Any], None]] = []

    # ------------------------------------------------------------------ registration
    def register(self, owner, keys: dict[str, Handler], *, shown: Callable[[Any], bool] | None = None) -> None:
        """Register ``owner``'s handlers (``{key: handler(viewer)}``) and activate it.

        ``shown(owner)`` tells whether the owner is on screen (default: :attr:`shown_default`).
        Registering again replaces the owner's handlers.
        """
        self._remove(owner)
        self._stack.append((owner, dict(keys), shown or self.shown_default))
        for key in keys:
            self._bind(key)
        for hook in list(self.on_register):
            hook(owner)

    def unregister(self, owner) -> None:
        """Remove ``owner``'s handlers only; keys nobody handles any more are unbound."""
        self._remove(owner)
        for key in list(self._ours):
            if not any(key in k for _o, k, _s in self._stack):
                self._unbind(key)

    def activate(self, owner) -> None:
        """Make ``owner`` the most recent (its handlers win among the owners shown)."""
        for i, entry in enumerate(self._stack):
            if entry[0] is owner:
                if i != len(self._stack) - 1:
                    self._stack.append(self._stack.pop(i))
                return

    def owners(self) -> list:
        """Registered owners, the most recently activated last."""
        return [o for o, _k, _s in self._stack]

    def handler(self, key: str):
        """The handler a press of ``key`` runs now (None when no owner shown handles it)."""
        kb = coerce(key)
        for owner, keys, shown in reversed(self._stack):
            for k, fn in keys.items():
                if coerce(k) == kb and shown(owner):
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
        self._stack = [e for e in self._stack if e[0] is not owner]

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
            current = self.viewer.keymap.get(coerce(key))
            if current is ours:
                self.viewer.bind_key(key, None)
                if prev is not None:
                    self.viewer.bind_key(key, prev, overwrite=True)
        except (ValueError, TypeError, RuntimeError):  # pragma: no cover - viewer closing
            log.debug("key %s not unbound", key, exc_info=True)
