"""Small pieces every dock uses: the sample chooser, the busy notice, the plot theme."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from qtpy.QtWidgets import QLabel, QSizePolicy

log = logging.getLogger(__name__)


def refill_sample_combo(combo, session, *, where: Callable | None = None,
                        label: Callable | None = None) -> tuple[bool, dict]:
    """Fill ``combo`` with the session's samples (those passing ``where``), keeping the selection.

    Items are the sample names (or ``label(sample)``) with the sample id as data. The combo is
    only rebuilt when its samples or labels changed, with signals blocked. Returns
    ``(selection_changed, samples)`` so the dock can react once.
    """
    samples = session.samples(where)
    texts = [label(s) if label else s.name for s in samples.values()]
    current = combo.currentData()
    have = [combo.itemData(i) for i in range(combo.count())]
    have_texts = [combo.itemText(i) for i in range(combo.count())]
    if have != list(samples) or have_texts != texts:
        combo.blockSignals(True)
        combo.clear()
        for sid, text in zip(samples, texts, strict=False):
            combo.addItem(text, sid)
        idx = combo.findData(current)
        combo.setCurrentIndex(idx if idx >= 0 else (0 if samples else -1))
        combo.blockSignals(False)
    return combo.currentData() != current, samples


class BusyNotice(QLabel):
    """"<sample> is busy: <what>" while a worker writes the dock's current sample's table.

    ``current()`` returns the dock's sample id; ``on_change(busy)`` (optional) lets the dock
    disable its edits. The notice follows the session's ``busy`` events.
    """

    def __init__(self, session, current: Callable[[], str | None], on_change: Callable[[bool], None] | None = None,
                 parent=None):
        super().__init__(parent)
        self.session = session
        self._current = current
        self._on_change = on_change
        self.setWordWrap(True)
        self.setStyleSheet("color: #e0a000; font-weight: bold")
        # never widen the dock when shown: a wider dock resizes the canvas, and napari re-slices
        # every layer (~1 s with a 10^6-cell mask) each time a worker starts and stops
        sp = self.sizePolicy()
        sp.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        self.setSizePolicy(sp)
        self.hide()
        session.events.busy.connect(self.update_state)

    def update_state(self, event=None) -> None:
        try:
            sid = self._current()
            msg = self.session.busy(sid)
            s = self.session.sample(sid)
            self.setText(f"⏳ {s.name if s is not None else 'sample'} is busy: {msg}. Edits wait until it is done."
                         if msg else "")
            self.setVisible(bool(msg))
        except RuntimeError:   # the dock is being deleted
            return
        if self._on_change is not None:
            self._on_change(bool(msg))

    def disconnect_session(self) -> None:
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.session.events.busy.disconnect(self.update_state)


def theme_colors(viewer) -> dict:
    """Plot colours matching the viewer's napari theme (background, axes, text, negative bars)."""
    out = {"bg": "#262930", "fg": "#5a626c", "text": "#f0f1f2", "neg": "#8fa3b8"}
    try:
        from napari.utils.theme import get_theme

        th = get_theme(viewer.theme)
        out["bg"] = th.foreground.as_hex()
        out["fg"] = th.highlight.as_hex()
        out["text"] = th.text.as_hex()
        if viewer.theme == "light":
            out["neg"] = "#5b6f86"
    except Exception:  # noqa: BLE001 - cosmetic only
        log.debug("no napari theme colours", exc_info=True)
    return out
