"""The Curation dock: composes the header, the save bar, the recovery banner and the tabs (Cells,
Regions, Audit trail) over the current sample's curation view, and dispatches the edits.

Everything the user does is the headless :class:`napari_carspatial.editing.CurationSession`
(``dock.core``), shown through the session's :class:`~napari_carspatial._napari.CurationView`
(``dock.view``): selection on the slide, ROI layer, colouring and hover follow its edits.
Shortcuts go through the viewer's shared key bindings: Alt+1 … Alt+9 assign the first nine
types (plain digits belong to napari's layer tools), Ctrl+Z / Ctrl+Shift+Z undo / redo; the dock
on screen that was used last gets them.
"""

from __future__ import annotations

import contextlib
import logging

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ..._napari import notify, session_for
from ...model.user_settings import remembered_reviewer
from .._common import BusyNotice, StableText, refill_sample_combo
from .._keys import get_dispatcher
from .audit import AuditTab
from .cells import CellsTab
from .header import HeaderView
from .recovery import Autosave, RecoveryBanner
from .regions import RegionsTab
from .saving import SaveBar

log = logging.getLogger(__name__)

#: keys assigning the first nine types (napari layers use the plain digits for their tools)
TYPE_KEYS = [f"Alt-{k}" for k in range(1, 10)]
UNDO_KEY, REDO_KEY = "Control-Z", "Control-Shift-Z"
#: the autosave timer (the policy decides whether a tick writes)
AUTOSAVE_TICK_MS = 30_000


class CurationWidget(QWidget):
    """Curation dock (see the module docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    session
        The viewer's session.
    view
        The curation view of the current sample (None without a curatable sample).
    header, saving, recovery, cells, regions, audit
        The sections; ``autosave`` runs the autosaves in workers.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.view = None
        self._keys_registered = False
        self._cleaned = False

        self.header = HeaderView(self)
        self.saving = SaveBar(self)
        self.recovery = RecoveryBanner(self)
        self.autosave = Autosave(self)
        self.cells = CellsTab(self)
        self.regions = RegionsTab(self)
        self.audit = AuditTab(self)
        self.status = StableText(lines=2)    # re-lays nothing when it changes (cells.py)
        self.status.setStyleSheet("color: gray; font-size: 10px")
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_box.currentData(),
                                      on_change=lambda _b: self._on_selection())
        self.tabs = QTabWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setWidget(self.cells)
        self.tabs.addTab(scroll, "Cells")
        self.tabs.addTab(self.regions, "Regions")
        self.tabs.addTab(self.audit, "Audit trail")
        self._stale: set = set()   # tabs refreshed when next brought to the front (see _refresh_tab)
        self.tabs.currentChanged.connect(self._refresh_stale)
        self.empty = QLabel("Open a sample with a cell table and a segmentation mask to curate it.")
        self.empty.setWordWrap(True)

        self.setMinimumWidth(400)
        lay = QVBoxLayout(self)
        lay.addWidget(self.recovery)
        lay.addWidget(self.busy_notice)
        lay.addWidget(self.header)
        lay.addWidget(self.saving)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status)
        lay.addWidget(self.empty)

        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.session.events.sample_added.connect(self._on_samples)
        self.session.events.sample_removed.connect(self._on_samples)
        self.session.events.reviewer_changed.connect(self._on_reviewer_changed)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._timer = QTimer(self)
        self._timer.setInterval(AUTOSAVE_TICK_MS)
        self._timer.timeout.connect(self.autosave.tick)
        self._timer.start()
        self._recovery_timer = QTimer(self)
        self._recovery_timer.setSingleShot(True)
        self._recovery_timer.timeout.connect(lambda: self._check_recovery(self.sample_box.currentData()))
        self._bind_keys()
        self._adopt_remembered_reviewer()
        self.header.show_reviewer(self.session.reviewer)
        self._on_samples()

    # ================================================================== small shared pieces
    @property
    def sample_box(self):
        return self.header.sample_box

    @property
    def core(self):
        """The headless curation session of the current sample (None without one)."""
        return None if self.view is None else self.view.core

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def busy_refusal(self) -> bool:
        """True (and a notification) when a worker writes the current sample's table."""
        msg = self.session.busy(self.view.sid) if self.view is not None else None
        if self.view is not None and self.core.read_only:   # e.g. a done review read
            notify(f"{self.view.sample.name} is read-only: {self.core.read_only_reason}.", "warning")
            return True
        if msg:
            notify(f"{self.view.sample.name} is busy ({msg}); edit it when that is done.", "warning")
        return bool(msg)

    # ================================================================== reviewer
    @property
    def reviewer(self) -> str:
        return self.session.reviewer

    def set_reviewer(self, name: str) -> None:
        """Set the reviewer of this viewer (written in the audit trail)."""
        self.session.set_reviewer(name)

    def _on_reviewer_changed(self, event=None):
        with contextlib.suppress(RuntimeError):
            self.header.show_reviewer(self.session.reviewer)

    def _adopt_remembered_reviewer(self) -> None:
        """The name typed last time (user config) becomes this viewer's reviewer, unless one is set."""
        if self.session.reviewer_confirmed:
            return
        name = remembered_reviewer()
        if name:
            self.session.set_reviewer(name)

    def ensure_reviewer(self) -> None:
        """The current core writes the header's reviewer. Never a dialog: the field is always there."""
        if self.core is not None:
            self.core.reviewer = self.reviewer

    # ================================================================== samples
    def _on_samples(self, event=None):
        changed, samples = refill_sample_combo(self.sample_box, self.session,
                                               where=lambda s: s.table is not None and bool(s.labels))
        if changed:
            self._on_sample()
        self.empty.setVisible(not samples)
        self.tabs.setEnabled(bool(samples))

    def _on_sample(self, *_):
        sid = self.sample_box.currentData()
        if self.view is not None and self.core.autosaver.pending and self.view.sid != sid:
            self.autosave.now()   # the outgoing sample's pending edits
        if self.view is not None:
            for ev, cb in ((self.view.events.selection, self._on_selection),
                           (self.view.events.edited, self._on_edited),
                           (self.view.events.blinded, self._on_view_settings)):
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    ev.disconnect(cb)
        self.view = None
        self.busy_notice.update_state()
        sample = self.session.sample(sid)
        if sample is None:   # no sample left: "Saved to …" / the last edit belonged to the one gone
            self.set_status("")
            self.refresh_all()
            return
        try:
            self.view = self.session.curation(sid)
        except (KeyError, ValueError) as err:
            notify(f"Cannot curate {sample.name}: {err}", "warning")
            self.refresh_all()
            return
        self.core.reviewer = self.reviewer
        self.autosave.hook(self.core)
        self.view.events.selection.connect(self._on_selection)
        self.view.events.edited.connect(self._on_edited)
        self.view.events.blinded.connect(self._on_view_settings)
        self.view.sync_roi_layer()
        self.header.show_blinded(self.view.blinded)
        self.refresh_all()
        # never a modal dialog while the dock is being built: a banner, once the event loop runs
        self._recovery_timer.start(0)   # a child timer: never fires after the dock is deleted

    def refresh_all(self):
        self.cells.fill_types(self.core)
        self._on_selection()
        self._refresh_tab(self.regions)
        self._refresh_tab(self.audit)
        self.header.refresh(self.core)
        self.saving.refresh_undo(self.core)

    def _on_table_changed(self, event=None):
        """Rows added or removed (a segmentation commit): the progress counts follow."""
        if event is not None and event.structure and self.view is not None and event.sid == self.view.sid:
            self.header.refresh(self.core)

    def _refresh_tab(self, tab) -> None:
        """Refresh ``tab`` (Regions, Audit trail) now, or, while the dock is on screen with another
        tab in front, when it is next brought to the front: at 10^6 cells the two cost ~0.25 s of
        every edit on the GUI thread and nobody sees them. What the tab then shows is the same."""
        if self.tabs.isVisible() and self.tabs.currentWidget() is not tab and (
                tab is not self.regions or self.regions.lists_rois_of(self.core)):
            # (a region added or removed is listed at once: rows picked in the table stay right)
            self._stale.add(tab)
            return
        self._stale.discard(tab)
        tab.refresh(self.core)

    def ensure_fresh(self, tab) -> None:
        """Refresh ``tab`` now if an edit left it stale (before reading what it shows)."""
        if tab in self._stale:
            self._stale.discard(tab)
            tab.refresh(self.core)

    def _refresh_stale(self, _index=None) -> None:
        tab = self.tabs.currentWidget()
        if tab in self._stale:
            self._stale.discard(tab)
            tab.refresh(self.core)

    def _on_selection(self, event=None):
        self.cells.show_selection(self.view, busy=bool(self.view and self.session.busy(self.view.sid)))

    def _on_edited(self, event=None):
        self.refresh_all()

    def _on_view_settings(self, event=None):
        """Blinding, the save target or read-only changed (e.g. set by the Project dock)."""
        with contextlib.suppress(RuntimeError):
            if self.view is not None:
                self.header.show_blinded(self.view.blinded)
                if self.sample_box.currentIndex() >= 0:
                    self.sample_box.setItemText(self.sample_box.currentIndex(), self.view.sample.name)
            self.refresh_all()

    def _check_recovery(self, sid):
        try:
            if self._cleaned or sid != self.sample_box.currentData() or self.view is None:
                return None
        except RuntimeError:   # the dock is being deleted
            return None
        return self.recovery.offer()

    # ================================================================== edits
    def _edit(self, what: str, *args):
        v = self.view
        if v is None:
            return None
        if not v.n_selected:
            notify("Select cells first (click, lasso, polygon or rectangle).", "warning")
            return None
        if self.busy_refusal():
            return None
        self.ensure_reviewer()
        try:
            cmd = getattr(v, what)(*args, note=self.cells.take_note())
        except (ValueError, KeyError) as err:
            notify(str(err), "warning")
            return None
        if cmd is not None:
            self.set_status(f"{cmd.description}. Undo: Ctrl+Z.")
        return cmd

    def assign(self, cell_type: str | None = None):
        """Assign the selection to ``cell_type`` (default: the text in the type box)."""
        cell_type = cell_type if cell_type is not None else self.cells.type_box.currentText()
        if not str(cell_type).strip():
            notify("Type a cell type name first.", "warning")
            return None
        return self._edit("assign", cell_type)

    def exclude(self, reason: str | None = None):
        """Exclude the selection as ``reason`` (default: the reason box)."""
        return self._edit("exclude", reason if reason is not None else self.cells.reason_box.currentText())

    def include(self):
        """Remove the exclusion flag of the selection."""
        return self._edit("include")

    def confirm(self):
        """The calls of the selection are right: mark the cells reviewed."""
        return self._edit("confirm")

    def undo(self):
        if self.view is None or self.busy_refusal():
            return None
        self.ensure_reviewer()
        cmd = self.view.undo()
        self.set_status(f"Undone: {cmd.description}" if cmd else "Nothing to undo.")
        return cmd

    def redo(self):
        if self.view is None or self.busy_refusal():
            return None
        self.ensure_reviewer()
        cmd = self.view.redo()
        self.set_status(f"Redone: {cmd.description}" if cmd else "Nothing to redo.")
        return cmd

    def set_blinded(self, on: bool):
        if self.view is None:
            return
        self.view.set_blinded(on)
        idx = self.sample_box.currentIndex()
        if idx >= 0:
            self.sample_box.setItemText(idx, self.view.sample.name)
        self.header.refresh(self.core)

    # ================================================================== keys and closing
    def _bind_keys(self):
        """Alt+1 … Alt+9 (assign the first nine types), Ctrl+Z / Ctrl+Shift+Z, through the
        viewer's shared key bindings. napari's layer keymaps win over the viewer's: while a
        Labels layer is active its Ctrl+Z undoes paint strokes; Alt+digits are used by no layer."""
        def number(k):
            def _f(viewer):
                return self.assign_key(k)
            return _f

        keys = {UNDO_KEY: lambda v: self.undo(), REDO_KEY: lambda v: self.redo()}
        for k, key in enumerate(TYPE_KEYS, start=1):
            keys[key] = number(k)
        get_dispatcher(self.viewer).register(self, keys)
        self._keys_registered = True

    def assign_key(self, k: int):
        """What Alt+``k`` does: assign the ``k``-th type to the selection (nothing without one)."""
        cats = self.core.categories if self.core else []
        if self.view is not None and self.view.n_selected and 1 <= k <= len(cats):
            return self.assign(cats[k - 1])
        return None

    def unbind_keys(self):
        """Remove this dock's key handlers (other docks' handlers stay)."""
        if self._keys_registered:
            get_dispatcher(self.viewer).unregister(self)
            self._keys_registered = False

    def closeEvent(self, event):  # noqa: N802 - Qt API
        self.cleanup()
        super().closeEvent(event)

    def cleanup(self):
        """Unbind keys, stop the click tool and the autosave timer (called when the dock closes);
        pending edits are autosaved (in a worker thread; napari waits for workers on quit)."""
        if self._cleaned:
            return
        self._cleaned = True
        self.unbind_keys()
        self.cells.set_click_mode(False)
        self._timer.stop()
        self.busy_notice.disconnect_session()
        if self.core is not None and self.core.autosaver.pending:
            self.autosave.now()
        self.autosave.release()

    def deleteLater(self):  # noqa: N802 - Qt API
        self.cleanup()
        super().deleteLater()
