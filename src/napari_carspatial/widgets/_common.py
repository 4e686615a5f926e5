"""Small pieces every dock uses: the sample chooser, the busy notice, the plot theme."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt, QThread, QTimer, Signal
from qtpy.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QWidget,
)

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


#: the busy notice's icon (Qt's own: renders without any icon theme or emoji font)
BUSY_ICON = QStyle.StandardPixmap.SP_BrowserReload

#: napari's notification toast (found by its class name: napari's Qt module is not public API)
TOAST_CLASS = "NapariQtNotification"
_one_toast_installed = False
_SEEN = "_carspatial_seen"
_toast_seq = 0
#: napari slides a toast in over 220 ms and re-sizes it to its text: stack again after that
TOAST_SETTLE_MS = 350
TOAST_GAP_PX = 4


class _ToastRelay(QObject):
    message = Signal(object)


_relay: _ToastRelay | None = None


def shown_toasts() -> list:
    """napari's notification toasts on screen now."""
    app = QApplication.instance()
    if app is None:
        return []
    return [w for w in app.allWidgets() if type(w).__name__ == TOAST_CLASS and w.isVisible()]


def _severity(value) -> int:
    """0 info (or anything milder), 1 warning, 2 error."""
    name = str(getattr(value, "value", value) or "").lower()
    return 2 if name in ("error", "critical", "fatal") else (1 if name == "warning" else 0)


def _replace_shown_toasts(event=None) -> None:
    """The toast napari has just shown for this notification replaces the earlier ones (napari's
    own handler runs first: core callbacks always precede a plugin's). An earlier warning or error
    is not replaced by a milder message: it stays, stacked above the new toast, until it times out."""
    global _toast_seq
    app = QApplication.instance()
    if app is None:
        return
    if QThread.currentThread() is not app.thread():   # a worker's message: napari shows it on the GUI
        if _relay is not None:                        # thread later, this runs after it there
            _relay.message.emit(event)
        return
    level = _severity(getattr(event, "severity", None))
    toasts = shown_toasts()
    for t in toasts:
        if getattr(t, _SEEN, None) is None:
            _toast_seq += 1
            setattr(t, _SEEN, (level, _toast_seq))
    newest = max((getattr(t, _SEEN)[1] for t in toasts), default=0)
    for toast in toasts:
        old_level, seq = getattr(toast, _SEEN)
        if seq != newest and old_level <= level:
            with contextlib.suppress(RuntimeError):   # already deleted
                toast.close()
    _stack_toasts()
    QTimer.singleShot(TOAST_SETTLE_MS, _stack_toasts)   # after napari's slide-in and resizes


def _stack_toasts() -> None:
    """The toasts on screen one above the other, the newest at the bottom where napari put it."""
    with contextlib.suppress(RuntimeError):
        toasts = sorted(shown_toasts(), key=lambda t: -getattr(t, _SEEN, (0, 0))[1])
        if not toasts:
            return
        top = toasts[0].y()
        for toast in toasts[1:]:
            top -= toast.height() + TOAST_GAP_PX
            toast.move(toast.x(), top)


def one_notification_at_a_time() -> None:
    """A new notification replaces the one on screen (issue 14, item 9).

    napari puts every toast at the same spot (bottom right of the canvas), so two in quick
    succession were drawn over each other, half-faded, unreadable. From now on (once per process;
    every dock calls it) the toast on screen closes as napari shows the next one, unless it is a
    warning or an error and the new one is milder: then it moves up, above the new one, so it is
    still read, never overdrawn. Each message is still logged and kept in napari's list.
    """
    global _one_toast_installed
    if _one_toast_installed:
        return
    from napari.utils.notifications import notification_manager

    global _relay
    if QApplication.instance() is not None and _relay is None:
        _relay = _ToastRelay()   # made on the GUI thread: its signal queues a worker's message there
        _relay.message.connect(_replace_shown_toasts)
    notification_manager.notification_ready.connect(_replace_shown_toasts)
    _one_toast_installed = True


def vertical_scroll(body: QWidget | None = None, *, frame: bool = False, horizontal: bool = False) -> QScrollArea:
    """A scroll area for a dock's sections: it scrolls up and down (``horizontal=True``: also
    sideways when needed), the body takes the viewport's width, no frame unless ``frame``."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    if not horizontal:
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    if not frame:
        scroll.setFrameShape(QScrollArea.NoFrame)
    if body is not None:
        scroll.setWidget(body)
    return scroll


class StableText(QWidget):
    """Plain text in a fixed number of lines (word-wrapped, the last line cut with "…", the whole
    text in the tooltip when cut) whose height never depends on the text.

    For the lines a dock rewrites on every pan, selection or edit (counts, a selection summary, a
    status line). A ``QLabel`` re-lays its parents on every ``setText`` (Qt's ``updateGeometry``),
    and the request climbs one level per turn of the event loop up to the main window, which then
    repaints the whole window: 2-3 extra window repaints per interaction (~20 ms each under Xvfb),
    and rows below a label whose line count changed jump. This widget only repaints itself."""

    def __init__(self, text: str = "", lines: int = 1, parent=None):
        super().__init__(parent)
        self._text = ""
        self._shown: list[str] = []
        self._lines = max(int(lines), 1)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.setText(text)

    # ------------------------------------------------------------------ the QLabel-like API
    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        text = "" if text is None else str(text)
        if text == self._text:
            return
        self._text = text
        self._wrap()
        self.update()

    def text(self) -> str:
        """The whole text (what is shown may be cut)."""
        return self._text

    def shown_text(self) -> str:
        """What is on screen, its lines joined by newlines."""
        return "\n".join(self._shown)

    # ------------------------------------------------------------------ geometry and painting
    def _height(self) -> int:
        m = self.contentsMargins()
        return self._lines * self.fontMetrics().lineSpacing() + m.top() + m.bottom()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(20 * self.fontMetrics().averageCharWidth(), self._height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(0, self._height())

    def _wrap(self) -> None:
        """Break the text into at most ``lines`` lines of this width with Qt's own line
        breaking (``QTextLayout``: at word boundaries, inside a word longer than a line), the
        last one elided."""
        from qtpy.QtGui import QTextLayout, QTextOption

        fm = self.fontMetrics()
        width = max(self.contentsRect().width(), 1)
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)
        out: list[str] = []
        for para in self._text.split("\n"):
            layout = QTextLayout(para, self.font())
            layout.setTextOption(option)
            layout.beginLayout()
            n0 = len(out)
            while (line := layout.createLine()).isValid():
                line.setLineWidth(width)
                out.append(para[line.textStart():line.textStart() + line.textLength()].rstrip())
            layout.endLayout()
            if len(out) == n0:       # an empty paragraph is an empty line
                out.append("")
        cut = len(out) > self._lines
        if cut:
            out = out[:self._lines - 1] + [" ".join(x for x in out[self._lines - 1:] if x)]
        last = fm.elidedText(out[-1], Qt.ElideRight, width)
        cut = cut or last != out[-1]
        out[-1] = last
        self._shown = out
        self.setToolTip(self._text if cut else "")

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._wrap()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().changeEvent(event)
        if event.type() in (QEvent.FontChange, QEvent.StyleChange):
            self._wrap()
            self.updateGeometry()      # the height follows the font (a style sheet's size)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        from qtpy.QtGui import QPainter

        p = QPainter(self)
        p.setPen(self.palette().color(self.foregroundRole()))
        r = self.contentsRect()
        step = self.fontMetrics().lineSpacing()
        for k, line in enumerate(self._shown[:self._lines]):
            p.drawText(QRect(r.left(), r.top() + k * step, r.width(), step), Qt.AlignLeft | Qt.AlignVCenter, line)
        p.end()


class ElidedLabel(QLabel):
    """One line of plain text that never widens its dock: cut with "…" to the width it gets, the
    full text in its tooltip (and in :meth:`text`)."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.setTextFormat(Qt.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self._full = str(text)
        self.setToolTip(self._full)
        self._elide()

    def text(self) -> str:
        """The full text (what is shown may be cut)."""
        return self._full

    def shown_text(self) -> str:
        """What is on screen (the text cut to the label's width)."""
        return super().text()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(0, super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, width) if width > 0 else self._full
        QLabel.setText(self, shown)


def _take_from_layout(layout, widget) -> tuple | None:
    """Take ``widget`` out of ``layout`` (or one of its sub-layouts), leaving it a child of its parent.

    Returns ``(layout it was in, objects after it, objects before it nearest first)``: the widgets
    and sub-layouts around its slot, to place it there again. None when it is in no layout.
    """
    if layout is None:
        return None
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is widget:
            around = [layout.itemAt(j) for j in range(layout.count())]
            objs = [it.widget() or it.layout() for it in around]
            after = [o for o in objs[i + 1:] if o is not None]
            before = [o for o in reversed(objs[:i]) if o is not None]
            layout.takeAt(i)
            layout.invalidate()
            return layout, after, before
        found = _take_from_layout(item.layout(), widget)
        if found is not None:
            return found
    return None


def _top_in(obj, host) -> int | None:
    """Top (in ``host``'s coordinates) of a widget or layout on screen; None when it takes no space."""
    with contextlib.suppress(RuntimeError):   # deleted meanwhile
        if isinstance(obj, QWidget):
            return None if obj.isHidden() else obj.mapTo(host, QPoint(0, 0)).y()
        if not obj.isEmpty():
            return obj.geometry().top()
    return None


def _bottom_in(obj, host) -> int | None:
    with contextlib.suppress(RuntimeError):
        if isinstance(obj, QWidget):
            return None if obj.isHidden() else obj.mapTo(host, QPoint(0, obj.height())).y()
        if not obj.isEmpty():
            return obj.geometry().bottom() + 1
    return None


class BusyNotice(QWidget):
    """"<sample> is busy: <what>" while a worker writes the dock's current sample's table.

    ``current()`` returns the dock's sample id; ``on_change(busy)`` (optional) lets the dock
    disable its edits. The notice follows the session's ``busy`` events. Its icon is one of Qt's
    standard icons (:data:`BUSY_ICON`), drawn the same on every platform: an emoji (the hourglass
    it had) is an empty box where no emoji font is installed (Xvfb, many clinical PCs).

    The dock adds it to its layout where it should appear; the notice then floats there, over
    the dock's next row, as a framed banner, without taking layout space: showing or hiding it
    changes no dock's size or size hint, so the window and the canvas keep their size. (When it
    took a row, each dock grew as a save began and shrank as it ended, the canvas was resized, and
    napari re-sliced and repainted every layer once per dock: 0.9-1.6 s of a ~20 ms save with a
    10^6-cell mask.) Idle docks look as they would without it: no strip is reserved.
    """

    #: padding inside the banner's frame (px)
    PAD = (8, 5, 8, 5)

    def __init__(self, session, current: Callable[[], str | None], on_change: Callable[[bool], None] | None = None,
                 parent=None):
        super().__init__(parent)
        self.session = session
        self._current = current
        self._on_change = on_change
        self._host: QWidget | None = None
        self._slot: tuple | None = None
        self.setObjectName("carspatialBusyNotice")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.icon = QLabel()
        size = self.fontMetrics().height()
        self.icon.setPixmap(self.style().standardIcon(BUSY_ICON).pixmap(size, size))
        self.icon.setAlignment(Qt.AlignTop)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: #e0a000; font-weight: bold; background: transparent")
        self.icon.setStyleSheet("background: transparent")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(*self.PAD)
        lay.setSpacing(6)
        lay.addWidget(self.icon, 0, Qt.AlignTop)
        lay.addWidget(self.label, 1)
        # never widen the dock (nor make it taller): it is taken out of the dock's layout
        sp = self.sizePolicy()
        sp.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        self.setSizePolicy(sp)
        self.hide()
        session.events.busy.connect(self.update_state)
        one_notification_at_a_time()   # every dock with a busy notice: one toast at a time

    def text(self) -> str:
        """The notice's text ("" when the sample is not busy)."""
        return self.label.text()

    def setVisible(self, visible: bool) -> None:  # noqa: N802 - Qt API
        if visible:
            self._float()   # out of the layout before it is shown: the layout never sees it
            self._style()
        super().setVisible(visible)
        if visible:
            self._place()
            self.raise_()

    def _float(self) -> None:
        """Take the notice out of its dock's layout (once, and again after a new parent)."""
        host = self.parentWidget()
        if host is None:
            return
        if host is not self._host:
            if self._host is not None:
                with contextlib.suppress(RuntimeError):
                    self._host.removeEventFilter(self)
            self._host = host
            self._slot = None
            host.installEventFilter(self)
        found = _take_from_layout(host.layout(), self)
        if found is not None:
            self._slot = found

    def _style(self) -> None:
        bg = self.palette().color(self.backgroundRole()).name()
        with contextlib.suppress(Exception):   # the napari theme's panel colour, when there is one
            from napari.utils.theme import get_theme

            bg = get_theme(self.session.viewer.theme).background.as_hex()
        self.setStyleSheet(f"#carspatialBusyNotice {{ background-color: {bg}; border: 1px solid #e0a000; "
                           "border-radius: 3px; }")

    def _place(self) -> None:
        """Over the row that follows its slot in the dock's layout, the slot's width."""
        host = self._host
        if host is None or self.isHidden():
            return
        area = host.rect()
        top = None
        if self._slot is not None:
            layout, after, before = self._slot
            with contextlib.suppress(RuntimeError):
                area = layout.contentsRect() if layout.geometry().isValid() else area
            top = next((t for o in after if (t := _top_in(o, host)) is not None), None)
            if top is None:
                bottom = next((b for o in before if (b := _bottom_in(o, host)) is not None), None)
                top = None if bottom is None else bottom + max(layout.spacing(), 0)
        width = max(area.width(), 1)
        height = self.heightForWidth(width) if self.hasHeightForWidth() else -1
        height = max(height, self.sizeHint().height())
        top = area.top() if top is None else top
        top = max(0, min(top, host.height() - height))
        height = self._to_row_end(host, area.left(), top, width, height)
        self.setGeometry(area.left(), top, width, height)

    #: a banner ends where a row under it ends (none shows half, cut at its middle) if that is near
    SNAP_PX = 24

    def _to_row_end(self, host, left: int, top: int, width: int, height: int) -> int:
        """``height``, made a little taller so that no small control (a field, a header) peeks out
        half covered under the banner's lower edge."""
        bottom = top + height
        for w in host.findChildren(QWidget):
            if w is self or self.isAncestorOf(w) or not w.isVisible() or w.height() > 2 * self.SNAP_PX:
                continue
            r = QRect(w.mapTo(host, QPoint(0, 0)), w.size())
            if r.top() < bottom < r.bottom() + 1 and r.left() < left + width and r.right() > left:
                bottom = max(bottom, min(r.bottom() + 1 + 2, top + height + self.SNAP_PX))
        return min(bottom, host.height()) - top

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self._host and event.type() in (QEvent.Type.Resize, QEvent.Type.LayoutRequest) \
                and not self.isHidden():
            QTimer.singleShot(0, self._place)   # after the layout has placed the rows
        return False

    def update_state(self, event=None) -> None:
        try:
            sid = self._current()
            msg = self.session.busy(sid)
            s = self.session.sample(sid)
            self.label.setText(f"{s.name if s is not None else 'sample'} is busy: {msg}. Edits wait until it is done."
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
