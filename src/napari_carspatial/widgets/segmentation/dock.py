"""The Segmentation dock: composes the sections over the sample's headless segmentation editor
(:class:`~napari_carspatial.editing.SegmentationEditor`, kept in the viewer session with the
sample) and the open region (:class:`~napari_carspatial.editing.RegionEdit`, ``dock.edit``).

Shortcuts (viewer key bindings while the dock is open, through the viewer's shared key bindings:
with the Curation dock also open, the dock on screen used last gets Ctrl+Z): see
:data:`~.operations.SHORTCUTS`.
"""

from __future__ import annotations

import contextlib
import logging

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from ..._napari import project_item, segmentation_refusal, session_for
from ...editing import RegionEdit, SegmentationEditor
from ...editing.segmentation import EDITOR_CACHE_KEY, REVIEW_HINT
from ...model import SampleError
from .._common import BusyNotice, refill_sample_combo
from .._keys import get_dispatcher
from .commit import CommitView
from .operations import SHORTCUTS, OperationsView
from .region import RegionView
from .tools import ToolsView

log = logging.getLogger(__name__)


class SegmentationWidget(QWidget):
    """Segmentation-correction dock (see the package docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    edit
        The open region (headless: pixels, selection, undo stack), None without one.
    edit_layer
        The editable labels layer over the region.
    region_view, tools, ops, commit_view
        The sections.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.sid: str | None = None
        self.edit: RegionEdit | None = None
        self.edit_layer = None
        #: a commit or save of this dock runs in a worker
        self.busy = False
        self._bound: dict[str, tuple] = {}

        self.region_view = RegionView(self)
        self.tools = ToolsView(self)
        self.ops = OperationsView(self)
        self.commit_view = CommitView(self)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray")
        self.busy_notice = BusyNotice(self.session, lambda: self.sid, on_change=lambda _b: self.update_state())
        # the sections scroll: their full height (~620 px) as the dock's minimum would squeeze the
        # Legend beside it to ~4 rows in the Segment workflow at 1000 px
        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.region_view, self.tools, self.ops, self.commit_view, self.status):
            body_lay.addWidget(w)
        body_lay.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.NoFrame)
        self.scroll.setWidget(body)
        # scroll up and down only: the sections take the column's width (as without the scroll area)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        sp = body.sizePolicy()
        sp.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        body.setSizePolicy(sp)
        lay = QVBoxLayout(self)
        lay.addWidget(self.busy_notice)
        lay.addWidget(self.scroll, 1)
        self.setMinimumWidth(380)

        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.viewer.layers.events.removed.connect(self._on_samples)
        self.session.events.sample_added.connect(self._on_samples)
        self.session.events.sample_removed.connect(self._on_samples)
        self._bind_keys()
        self._on_samples()
        self.update_state()

    # ================================================================== shared state
    @property
    def sample_box(self):
        return self.region_view.sample_box

    @property
    def sample(self):
        return self.session.sample(self.sid)

    @property
    def editor(self) -> SegmentationEditor | None:
        """The sample's segmentation editor (kept in the session with the sample)."""
        s = self.sample
        if s is None:
            return None
        return self.session.cached(self.sid, EDITOR_CACHE_KEY,
                                   lambda: SegmentationEditor(s, reviewer=self.session.reviewer))

    def read_only_reason(self) -> str | None:
        """Why the current sample's segmentation may not be edited here (None: it may): a slide
        opened from a review project (``segmentation_refusal`` of the viewer's project workspace,
        or the review marks of its table)."""
        ed = self.editor
        if ed is None:
            return None
        if ed.read_only is None:
            try:
                refusal = segmentation_refusal(self.session, self.sid)
            except SampleError:
                refusal = None
            if refusal:
                ed.set_read_only(refusal, review=True)
        return ed.read_only

    def show_read_only(self) -> bool:
        """One short line in the dock when the sample's segmentation may not be edited (the full
        reason in its tooltip); True then."""
        reason = self.read_only_reason()
        label = self.region_view.read_only_label
        if reason:
            s = self.sample
            try:
                item = project_item(self.session, self.sid)
            except SampleError:
                item = None
            if item is not None:
                label.setText(f"Read-only: {item.label} is a review project slide ({item.role}); its cell mask "
                              "is shared by every reader.")
            else:
                label.setText(f"Read-only: {s.name if s is not None else 'this sample'}: {reason.rstrip('.')}.")
            label.setToolTip(f"{reason.rstrip('.')}. {REVIEW_HINT}")
        label.setVisible(bool(reason))
        return bool(reason)

    @property
    def region(self):
        """The open :class:`~napari_carspatial.editing.EditRegion` (None without one)."""
        return None if self.edit is None else self.edit.region

    @property
    def selection(self) -> list[int]:
        """Selected cell ids of the open region."""
        return [] if self.edit is None else list(self.edit.selection)

    @property
    def is_busy(self) -> bool:
        """A commit or save of this dock runs, or another worker writes the sample's table."""
        return self.busy or bool(self.session.busy(self.sid))

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def activate(self, layer) -> None:
        self.viewer.layers.selection.active = layer

    def set_busy(self, on: bool, msg: str = "", *, session: bool = True):
        """This dock's worker runs; with ``session`` it writes the sample's table: every dock sees
        the sample busy (a region being read keeps only this dock waiting)."""
        self.busy = on
        if on and session:
            self._session_busy = True
            self.session.set_busy(self.sid, msg.rstrip("…").rstrip(".") or "working")
        elif not on and getattr(self, "_session_busy", False):
            self._session_busy = False
            self.session.set_busy(self.sid, None)
        for w in self.findChildren(QPushButton):
            w.setEnabled(not on)
        if self.edit_layer is not None:
            self.edit_layer.editable = not on
        if msg:
            self.set_status(msg)
        if not on:
            self.update_state()

    # ================================================================== samples
    def _on_samples(self, event=None):
        if event is not None and getattr(event, "type", None) == "removed":
            self.region_view.remove_orphans()
        changed, _ = refill_sample_combo(self.sample_box, self.session, where=lambda s: bool(s.labels))
        if changed:
            self._on_sample()
        if self.edit_layer is not None and self.edit_layer not in self.viewer.layers:
            self.region_view.drop_region()

    def _on_sample(self, *_):
        sid = self.sample_box.currentData()
        if sid == self.sid:
            return
        if self.edit is not None:
            self.region_view.close_region(wait=True)   # the outgoing sample's edits, before switching
        self.sid = sid
        self.ops.set_channels(self.sample)
        self.update_state()

    def update_state(self):
        has = self.edit is not None
        idle = not self.is_busy and not self.show_read_only()
        for b in (*self.tools.buttons(), *self.ops.buttons(), self.region_view.close_button,
                  self.commit_view.undo_button, self.commit_view.commit_button):
            b.setEnabled(has and idle)
        self.commit_view.redo_button.setEnabled(has and self.edit.can_redo and idle)
        for b in (self.region_view.view_button, self.region_view.rect_button, self.commit_view.save_button):
            b.setEnabled(self.sid is not None and idle)
        if has and self.edit.undo_name:
            self.commit_view.undo_button.setToolTip(f"Undo: {self.edit.undo_name}")
        if has and self.edit.redo_name:
            self.commit_view.redo_button.setToolTip(f"Redo: {self.edit.redo_name}")

    # ================================================================== keys and closing
    def _bind_keys(self):
        """The dock's shortcuts (:data:`SHORTCUTS`), through the viewer's shared key bindings: the
        Curation dock's Ctrl+Z / Ctrl+Shift+Z and ours do not replace each other."""
        o, c = self.ops, self.commit_view
        acts = {"merge": lambda v: o.merge(), "split_line": lambda v: o.split_by_line(),
                "split_seeds": lambda v: o.split_by_seeds(), "delete": lambda v: o.delete(),
                "draw": lambda v: o.draw_cell(), "grow": lambda v: o.grow(), "shrink": lambda v: o.shrink(),
                "undo": lambda v: o.undo(), "redo": lambda v: o.redo(), "commit": lambda v: c.commit()}
        keys = {SHORTCUTS[name]: fn for name, fn in acts.items()}
        get_dispatcher(self.viewer).register(self, keys)
        self._bound = {key: (fn, None) for key, fn in keys.items()}

    def unbind_keys(self):
        """Remove this dock's key handlers (other docks' handlers stay)."""
        if self._bound:
            with contextlib.suppress(ValueError, TypeError, RuntimeError):
                get_dispatcher(self.viewer).unregister(self)
        self._bound.clear()

    def cleanup(self):
        """Unbind keys (called when the dock closes); the edit layers stay until closed."""
        self.unbind_keys()
        self.busy_notice.disconnect_session()

    def closeEvent(self, event):  # noqa: N802 - Qt API
        self.cleanup()
        super().closeEvent(event)

    def deleteLater(self):  # noqa: N802 - Qt API
        self.cleanup()
        super().deleteLater()
