"""The "Curation" dock: select cells, re-annotate them, undo, regions, audit trail, safe saving.

Tabs:

* **Cells**: selection tools (click / shift-click, lasso, polygon, rectangle, clear; "only
  type" restricts any selection to one curated type, e.g. all CAR T cells in a region), the
  selection count, "Assign" to an existing or new type (Alt+1 ... Alt+9 = the first nine
  types; plain digits belong to napari's layer tools), "Exclude" with a reason (artefact, fold,
  necrosis, out of focus), "Confirm" (the call was right: cells count as reviewed), undo / redo
  (Ctrl+Z / Ctrl+Shift+Z). Shortcuts go through :mod:`._keys`: the dock on screen that was used
  last gets them.
* **Regions**: draw a polygon or rectangle as a named ROI with a class, the ROI table (cells,
  review progress), select cells of a ROI, mark a region reviewed, GeoJSON import / export.
* **Audit**: every action (undo and redo included) with time and reviewer; export as CSV.

Top: sample, reviewer (asked once per session, default the OS user), blinded review, progress,
"Save as…" (``.h5ad`` / ``.zarr``, a new name proposed; the source table is never overwritten)
and "Export SpatialData…". Edits are autosaved (a snapshot written in a worker thread) to a
recovery file in the user cache folder every few edits or minutes, before switching sample and
when the dock closes. A recovery file newer than the sample is offered in a banner at the top of
the dock ("Recover" / "Not now"; "Not now" sets the file aside, it is never deleted).
All the work is in the headless :class:`napari_carspatial.editing.CurationSession` (edits,
undo, regions, audit, saving, autosave, recovery), shown through the session's
:class:`~napari_carspatial._napari.CurationView` (``session_for(viewer).curation(sid)``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .._napari import META_ROLE, META_SAMPLE, ROLE_SELECT_SHAPES, notify, role_of, session_for
from ..model import ROI_CLASSES, SampleError
from ..model.curation import EXCLUDE_REASONS
from ._common import BusyNotice, refill_sample_combo
from ._keys import get_dispatcher

log = logging.getLogger(__name__)

AUDIT_COLUMNS = ("time", "reviewer", "action", "cells", "column", "old", "new", "note")
#: keys assigning the first nine types (napari layers use the plain digits for their tools)
TYPE_KEYS = [f"Alt-{k}" for k in range(1, 10)]
UNDO_KEY, REDO_KEY = "Control-Z", "Control-Shift-Z"


def _notify(msg: str, level: str = "info") -> None:
    notify(msg, level)


def _short(value: str, n: int = 40) -> str:
    value = str(value)
    return value if len(value) <= n else value[: n - 1] + "…"


class CurationWidget(QWidget):
    """Curation dock (see the module docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        #: the curation view of the current sample (None without a curatable sample)
        self.view = None
        self._keys_registered = False
        self._cleaned = False
        self._draw_purpose = "select"
        self._click_cb = None
        self._shapes_connected: set[int] = set()
        self._workers: list = []   # running autosave workers (kept referenced)
        self._hooked: list = []    # weak references to the cores whose autosaves report here
        self._last_autosave: Path | None = None
        self.saved_path: Path | None = None
        self._recovery_sid: str | None = None

        # ------------------------------------------------------------ top
        self.sample_box = QComboBox()
        self.reviewer_label = QLabel()
        self.reviewer_button = QPushButton("Change…")
        self.reviewer_button.setToolTip("Name written in the audit trail for every action")
        self.blind_box = QCheckBox("Blinded review")
        self.blind_box.setToolTip("Hide the sample name and clinical metadata (timepoint, response) while reviewing")
        self.meta_label = QLabel()
        self.meta_label.setStyleSheet("color: gray")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setToolTip("Cells reviewed: re-annotated, excluded, confirmed, or in a region marked reviewed")
        self.progress_label = QLabel()
        self.progress_label.setStyleSheet("color: gray; font-size: 10px")
        rev_row = QHBoxLayout()
        rev_row.addWidget(self.reviewer_label, 1)
        rev_row.addWidget(self.reviewer_button)
        top = QFormLayout()
        top.addRow("sample", self.sample_box)
        top.addRow("reviewer", rev_row)
        top.addRow("case", self.meta_label)
        top.addRow("", self.blind_box)
        top.addRow("reviewed", self.progress_bar)
        top.addRow("", self.progress_label)

        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.undo_button.setToolTip("Undo the last curation action (Ctrl+Z)")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("Write the curated table (.h5ad or .zarr) to a new file; the source table is never overwritten")
        self.sdata_button = QPushButton("Export SpatialData…")
        ur = QHBoxLayout()
        ur.addWidget(self.undo_button)
        ur.addWidget(self.redo_button)
        ur.addStretch(1)
        ur.addWidget(self.save_button)
        ur.addWidget(self.sdata_button)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray; font-size: 10px")

        # ------------------------------------------------------------ recovery banner
        self.recovery_banner = QFrame()
        self.recovery_banner.setObjectName("recoveryBanner")
        self.recovery_banner.setStyleSheet(
            "#recoveryBanner { background: #fff3cd; border: 1px solid #e0b84a; border-radius: 4px; }"
            "#recoveryBanner QLabel { color: #533f03; }")
        self.recovery_label = QLabel()
        self.recovery_label.setWordWrap(True)
        self.recover_button = QPushButton("Recover")
        self.recover_button.setToolTip("Replace the open table with the autosaved one (the curation you did not save)")
        self.not_now_button = QPushButton("Not now")
        self.not_now_button.setToolTip("Keep the open table; the recovery file is set aside (renamed *.declined), not deleted")
        bl = QHBoxLayout(self.recovery_banner)
        bl.setContentsMargins(8, 6, 8, 6)
        bl.addWidget(self.recovery_label, 1)
        bl.addWidget(self.recover_button)
        bl.addWidget(self.not_now_button)
        self.recovery_banner.hide()

        # ------------------------------------------------------------ cells tab
        cells = QWidget()
        self.click_button = QPushButton("Click")
        self.click_button.setCheckable(True)
        self.click_button.setToolTip("Click a cell to select it, Shift+click to add or remove one")
        self.lasso_button = QPushButton("Lasso")
        self.polygon_button = QPushButton("Polygon")
        self.rect_button = QPushButton("Rectangle")
        self.clear_button = QPushButton("Clear")
        for b, tip in ((self.lasso_button, "Draw freehand around cells"),
                       (self.polygon_button, "Click the corners, double-click to close"),
                       (self.rect_button, "Drag a rectangle")):
            b.setToolTip(tip + " (cells whose centre is inside are selected)")
        tools = QHBoxLayout()
        for b in (self.click_button, self.lasso_button, self.polygon_button, self.rect_button, self.clear_button):
            tools.addWidget(b)
        self.only_type = QComboBox()
        self.only_type.setToolTip("Restrict selections to one curated type (e.g. all CAR T cells in a region)")
        self.add_box = QCheckBox("add to selection")
        self.add_box.setToolTip("New shapes add to the selection instead of replacing it")
        self.sel_label = QLabel("No cells selected")
        self.sel_label.setWordWrap(True)
        self.sel_label.setStyleSheet("font-weight: bold")
        self.type_box = QComboBox()
        self.type_box.setEditable(True)
        self.type_box.setInsertPolicy(QComboBox.NoInsert)
        self.type_box.setToolTip("An existing type, or type a new name")
        self.assign_button = QPushButton("Assign")
        self.assign_button.setToolTip("Set the curated type of the selected cells (Alt+1 … Alt+9: the first nine types)")
        self.reason_box = QComboBox()
        self.reason_box.addItems(list(EXCLUDE_REASONS))
        self.reason_box.setEditable(True)
        self.exclude_button = QPushButton("Exclude")
        self.include_button = QPushButton("Include")
        self.include_button.setToolTip("Remove the exclusion flag of the selected cells")
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.setToolTip("The calls are right: mark the selected cells reviewed")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note for the audit trail (optional)")
        self.keys_label = QLabel()
        self.keys_label.setWordWrap(True)
        self.keys_label.setStyleSheet("color: gray; font-size: 10px")
        sel_group = QGroupBox("Select cells")
        sg = QFormLayout(sel_group)
        sg.addRow(tools)
        opt = QHBoxLayout()
        opt.addWidget(self.only_type, 1)
        opt.addWidget(self.add_box)
        sg.addRow("only type", opt)
        sg.addRow(self.sel_label)
        ann_group = QGroupBox("Re-annotate the selection")
        ag = QGridLayout(ann_group)
        ag.addWidget(QLabel("cell type"), 0, 0)
        ag.addWidget(self.type_box, 0, 1)
        ag.addWidget(self.assign_button, 0, 2)
        ag.addWidget(QLabel("exclude as"), 1, 0)
        ag.addWidget(self.reason_box, 1, 1)
        ag.addWidget(self.exclude_button, 1, 2)
        ag.addWidget(self.confirm_button, 2, 2)
        ag.addWidget(self.include_button, 2, 1)
        ag.addWidget(self.note_edit, 3, 0, 1, 3)
        ag.addWidget(self.keys_label, 4, 0, 1, 3)
        ag.setColumnStretch(1, 1)
        cl = QVBoxLayout(cells)
        cl.addWidget(sel_group)
        cl.addWidget(ann_group)
        cl.addStretch(1)

        # ------------------------------------------------------------ regions tab
        regions = QWidget()
        self.roi_name = QLineEdit()
        self.roi_name.setPlaceholderText("region name (e.g. core 1)")
        self.roi_class = QComboBox()
        self.roi_class.addItems(list(ROI_CLASSES))
        self.roi_class.setEditable(True)
        self.roi_poly_button = QPushButton("Draw polygon")
        self.roi_rect_button = QPushButton("Draw rectangle")
        self.roi_table = QTableWidget(0, 5)
        self.roi_table.setHorizontalHeaderLabels(["region", "class", "cells", "reviewed", "done"])
        self.roi_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.roi_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.roi_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.roi_table.verticalHeader().setVisible(False)
        rh = self.roi_table.horizontalHeader()
        rh.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, 5):
            rh.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.roi_select_button = QPushButton("Select its cells")
        self.roi_reviewed_button = QPushButton("Mark reviewed")
        self.roi_remove_button = QPushButton("Remove")
        self.import_button = QPushButton("Import GeoJSON…")
        self.export_button = QPushButton("Export GeoJSON…")
        rg = QFormLayout()
        rg.addRow("name", self.roi_name)
        rg.addRow("class", self.roi_class)
        draw = QHBoxLayout()
        draw.addWidget(self.roi_poly_button)
        draw.addWidget(self.roi_rect_button)
        rg.addRow(draw)
        rb = QHBoxLayout()
        rb.addWidget(self.roi_select_button)
        rb.addWidget(self.roi_reviewed_button)
        rb.addWidget(self.roi_remove_button)
        io_row = QHBoxLayout()
        io_row.addWidget(self.import_button)
        io_row.addWidget(self.export_button)
        rl = QVBoxLayout(regions)
        rl.addLayout(rg)
        rl.addWidget(self.roi_table, 1)
        rl.addLayout(rb)
        rl.addLayout(io_row)

        # ------------------------------------------------------------ audit tab
        audit = QWidget()
        self.audit_table = QTableWidget(0, len(AUDIT_COLUMNS))
        self.audit_table.setHorizontalHeaderLabels(list(AUDIT_COLUMNS))
        self.audit_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.audit_table.verticalHeader().setVisible(False)
        self.audit_table.horizontalHeader().setStretchLastSection(True)
        self.csv_button = QPushButton("Export CSV…")
        al = QVBoxLayout(audit)
        al.addWidget(self.audit_table, 1)
        al.addWidget(self.csv_button)

        self.tabs = QTabWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setWidget(cells)
        self.tabs.addTab(scroll, "Cells")
        self.tabs.addTab(regions, "Regions")
        self.tabs.addTab(audit, "Audit trail")
        self.empty = QLabel("Open a sample with a cell table and a segmentation mask to curate it.")
        self.empty.setWordWrap(True)

        self.busy_notice = BusyNotice(self.session, lambda: self.sample_box.currentData(),
                                      on_change=lambda _b: self._on_selection())

        self.setMinimumWidth(400)
        lay = QVBoxLayout(self)
        lay.addWidget(self.recovery_banner)
        lay.addWidget(self.busy_notice)
        lay.addLayout(top)
        lay.addLayout(ur)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status)
        lay.addWidget(self.empty)

        # ------------------------------------------------------------ wiring
        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.reviewer_button.clicked.connect(lambda: self.ask_reviewer(force=True))
        self.blind_box.toggled.connect(self.set_blinded)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.save_button.clicked.connect(self.save_as_dialog)
        self.sdata_button.clicked.connect(self.export_spatialdata_dialog)
        self.click_button.toggled.connect(self.set_click_mode)
        self.lasso_button.clicked.connect(lambda: self.start_drawing("add_polygon_lasso", "select"))
        self.polygon_button.clicked.connect(lambda: self.start_drawing("add_polygon", "select"))
        self.rect_button.clicked.connect(lambda: self.start_drawing("add_rectangle", "select"))
        self.clear_button.clicked.connect(self.clear_selection)
        self.assign_button.clicked.connect(lambda: self.assign())
        self.type_box.lineEdit().returnPressed.connect(lambda: self.assign())
        self.exclude_button.clicked.connect(lambda: self.exclude())
        self.include_button.clicked.connect(lambda: self._edit("include"))
        self.confirm_button.clicked.connect(lambda: self._edit("confirm"))
        self.roi_poly_button.clicked.connect(lambda: self.start_drawing("add_polygon", "roi"))
        self.roi_rect_button.clicked.connect(lambda: self.start_drawing("add_rectangle", "roi"))
        self.roi_select_button.clicked.connect(self.select_roi_cells)
        self.roi_reviewed_button.clicked.connect(self.mark_roi_reviewed)
        self.roi_remove_button.clicked.connect(self.remove_roi)
        self.import_button.clicked.connect(self.import_geojson_dialog)
        self.export_button.clicked.connect(self.export_geojson_dialog)
        self.csv_button.clicked.connect(self.export_csv_dialog)
        self.recover_button.clicked.connect(self.recover_now)
        self.not_now_button.clicked.connect(self.decline_recovery)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.session.events.sample_added.connect(self._on_layers_changed)
        self.session.events.sample_removed.connect(self._on_layers_changed)
        self.session.events.reviewer_changed.connect(self._on_reviewer_changed)
        self._timer = QTimer(self)
        self._timer.setInterval(30_000)
        self._timer.timeout.connect(self._maybe_autosave)
        self._timer.start()
        self._recovery_timer = QTimer(self)
        self._recovery_timer.setSingleShot(True)
        self._recovery_timer.timeout.connect(lambda: self._check_recovery(self.sample_box.currentData()))
        self._bind_keys()
        self._on_layers_changed()

    # ================================================================== reviewer
    @property
    def reviewer(self) -> str:
        return self.session.reviewer

    def set_reviewer(self, name: str) -> None:
        """Set the reviewer of this viewer (written in the audit trail)."""
        self.session.set_reviewer(name)

    def _on_reviewer_changed(self, event=None):
        with contextlib.suppress(RuntimeError):
            self.reviewer_label.setText(self.session.reviewer)

    def ask_reviewer(self, force: bool = False) -> str:
        """Ask the reviewer's name once per viewer (default: the OS user)."""
        if self.session.reviewer_confirmed and not force:
            return self.reviewer
        if os.environ.get("CARSPATIAL_REVIEWER") and not force:
            self.set_reviewer(os.environ["CARSPATIAL_REVIEWER"])
            return self.reviewer
        name, ok = QInputDialog.getText(self, "Reviewer", "Your name for the audit trail:", text=self.reviewer)
        self.set_reviewer(name if ok and name.strip() else self.reviewer)
        return self.reviewer

    # ================================================================== samples
    def _on_layers_changed(self, event=None):
        for layer in self.viewer.layers:
            if role_of(layer) == ROLE_SELECT_SHAPES and id(layer) not in self._shapes_connected:
                self._shapes_connected.add(id(layer))
                layer.events.data.connect(self._on_shape_data)
        changed, samples = refill_sample_combo(self.sample_box, self.session,
                                               where=lambda s: s.table is not None and bool(s.labels))
        if changed:
            self._on_sample()
        self.empty.setVisible(not samples)
        self.tabs.setEnabled(bool(samples))

    @property
    def core(self):
        """The headless curation session of the current sample (None without one)."""
        return None if self.view is None else self.view.core

    def _on_sample(self, *_):
        sid = self.sample_box.currentData()
        if self.view is not None and self.core.autosaver.pending and self.view.sid != sid:
            self.autosave_now()   # the outgoing sample's pending edits
        if self.view is not None:
            for ev, cb in ((self.view.events.selection, self._on_selection),
                           (self.view.events.edited, self._on_edited)):
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    ev.disconnect(cb)
        self.view = None
        self.busy_notice.update_state()
        if sid is None or self.session.sample(sid) is None:
            self._refresh_all()
            return
        sample = self.session.sample(sid)
        try:
            self.view = self.session.curation(sid)
        except (KeyError, ValueError) as err:
            _notify(f"Cannot curate {sample.name}: {err}", "warning")
            self._refresh_all()
            return
        self.core.reviewer = self.reviewer
        self._hook_autosave(self.core)
        self.view.events.selection.connect(self._on_selection)
        self.view.events.edited.connect(self._on_edited)
        self.view.sync_roi_layer()
        self.blind_box.blockSignals(True)
        self.blind_box.setChecked(self.view.blinded)
        self.blind_box.blockSignals(False)
        self._refresh_all()
        # never a modal dialog while the dock is being built: a banner, once the event loop runs
        self._recovery_timer.start(0)   # a child timer: never fires after the dock is deleted

    def _refresh_all(self):
        self.reviewer_label.setText(self.reviewer)
        self._fill_types()
        self._on_selection()
        self._fill_rois()
        self._fill_audit()
        self._update_meta()
        self._update_undo()

    def _fill_types(self):
        cats = self.core.categories if self.core else []
        cur, only = self.type_box.currentText(), self.only_type.currentData()
        self.type_box.blockSignals(True)
        self.type_box.clear()
        for c in cats:
            self.type_box.addItem(c, c)
        self.type_box.setEditText(cur if cur else (cats[0] if cats else ""))
        self.type_box.blockSignals(False)
        self.only_type.clear()
        self.only_type.addItem("any type", None)
        for c in cats:
            self.only_type.addItem(c, c)
        idx = self.only_type.findData(only)
        self.only_type.setCurrentIndex(max(idx, 0))
        keys = "  ".join(f"Alt+{k + 1}: {c}" for k, c in enumerate(cats[:9]))
        self.keys_label.setText(f"keys  {keys}" if keys else "")

    def _update_meta(self):
        c = self.core
        if c is None:
            self.meta_label.setText("")
            self.progress_bar.setValue(0)
            return
        meta = c.public_metadata()
        shown = [f"{k}: {meta[k]}" for k in ("patient", "timepoint", "response") if k in meta]
        self.meta_label.setText(" · ".join(shown) if not c.blinded else "name and clinical data hidden")
        self.meta_label.setToolTip("\n".join(f"{k}: {v}" for k, v in meta.items()))
        p = c.progress()
        self.progress_bar.setValue(round(1000 * p["fraction"]))
        self.progress_bar.setFormat(f"{p['n_reviewed']:,} of {p['n_cells']:,} cells ({100 * p['fraction']:.1f}%)")
        marked = int(p["rois"]["marked"].sum()) if len(p["rois"]) else 0
        self.progress_label.setText(f"{p['n_changed']:,} re-labelled · {p['n_excluded']:,} excluded · "
                                    f"{marked} of {len(p['rois'])} regions marked reviewed")

    # ================================================================== selection
    def _on_selection(self, event=None):
        s = self.view
        if s is None or not s.n_selected:
            self.sel_label.setText("No cells selected")
        else:
            summ = s.selection_summary()
            parts = ", ".join(f"{v:,} {k}" for k, v in list(summ.items())[:4])
            more = "" if len(summ) <= 4 else f", +{len(summ) - 4} types"
            self.sel_label.setText(f"{s.n_selected:,} cells selected ({parts}{more})")
        idle = s is not None and not self.session.busy(s.sid)
        for b in (self.assign_button, self.exclude_button, self.include_button, self.confirm_button):
            b.setEnabled(bool(idle and s.n_selected))

    def clear_selection(self):
        if self.view is not None:
            self.view.clear_selection()
            lyr = self.selection_shapes_layer(create=False)
            if lyr is not None and len(lyr.data):
                lyr.data = []

    def set_click_mode(self, on: bool):
        """Click to select a cell (shift-click adds / removes) while ``on``."""
        cbs = self.viewer.mouse_drag_callbacks
        if self._click_cb is not None and self._click_cb in cbs:
            cbs.remove(self._click_cb)
        self._click_cb = None
        if not on:
            return
        widget = self

        def _click(viewer, event):
            if event.type != "mouse_press" or getattr(event, "button", 1) != 1:
                return
            pos = event.position
            yield
            moved = False
            while event.type == "mouse_move":
                moved = True
                yield
            if not moved and widget.view is not None:
                widget.click_select(pos, add="Shift" in event.modifiers)

        self._click_cb = _click
        cbs.append(_click)
        for lyr in (self.selection_shapes_layer(create=False),):
            if lyr is not None:
                lyr.mode = "pan_zoom"

    def click_select(self, world_position, *, add: bool = False):
        """What a click does in click mode (tests call it with a world position)."""
        if self.view is None:
            return None
        return self.view.select_at(world_position, add=add)

    def selection_shapes_layer(self, create: bool = True):
        if self.view is None:
            return None
        found = self.session.layers_of(self.view.sid, ROLE_SELECT_SHAPES)
        if found or not create:
            return found[0] if found else None
        layer = self.viewer.add_shapes(
            name=f"{self.view.sample.name}: drawing", edge_color="#ffff00", face_color=[1, 1, 0, 0.08],
            edge_width=max(1.5, (self.view.sample.shape_yx or (600,))[0] / 400),
            metadata={META_SAMPLE: self.view.sid, META_ROLE: ROLE_SELECT_SHAPES},
            **self.view.layer_geometry())
        self._on_layers_changed()
        return layer

    def start_drawing(self, mode: str, purpose: str = "select"):
        """Activate the drawing layer in ``mode`` (lasso, polygon, rectangle) for ``purpose``
        (``"select"`` cells or ``"roi"``: the next shape becomes a region)."""
        if self.view is None:
            return None
        self.click_button.setChecked(False)
        self._draw_purpose = purpose
        layer = self.selection_shapes_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = mode
        what = "a region" if purpose == "roi" else "around the cells to select"
        self.status.setText(f"Draw {what} ({mode.replace('add_', '').replace('_', ' ')}).")
        return layer

    def _on_shape_data(self, event):
        if getattr(event, "action", None) not in ("added", "added_shapes") or self.view is None:
            return
        layer = event.source
        if not len(layer.data):
            return
        i = len(layer.data) - 1
        QTimer.singleShot(0, lambda: self.use_shape(layer, i))

    def use_shape(self, layer, i: int):
        """Use shape ``i`` of ``layer`` for the current purpose (select cells, or a new region)."""
        if self.view is None or i >= len(layer.data):
            return
        try:
            if self._draw_purpose == "roi":
                name = self.roi_name.text().strip() or self.core.next_roi_name(self.roi_class.currentText())
                self._ensure_reviewer()
                self.view.add_roi_from_shape(layer, i, name=name, cls=self.roi_class.currentText(),
                                             note=self.note_edit.text())
                self.roi_name.clear()
                layer.data = []
                self._draw_purpose = "select"
                layer.mode = "pan_zoom"
            else:
                n = self.view.select_in_shapes(layer, [i], add=self.add_box.isChecked(),
                                               cell_type=self.only_type.currentData())
                if len(layer.data) > 1:  # keep only the newest shape on screen
                    layer.selected_data = set(range(len(layer.data) - 1))
                    layer.remove_selected()
                self.status.setText(f"{n:,} cells selected. Assign a type (or Alt+1 … Alt+9), exclude or confirm.")
        except ValueError as err:
            _notify(str(err), "warning")

    # ================================================================== editing
    def _ensure_reviewer(self):
        if not self.session.reviewer_confirmed:
            self.ask_reviewer()
        if self.core is not None:
            self.core.reviewer = self.reviewer

    def _busy_refusal(self) -> bool:
        msg = self.session.busy(self.view.sid) if self.view is not None else None
        if msg:
            _notify(f"{self.view.sample.name} is busy ({msg}); edit it when that is done.", "warning")
        return bool(msg)

    def _edit(self, what: str, *args):
        v = self.view
        if v is None:
            return None
        if not v.n_selected:
            _notify("Select cells first (click, lasso, polygon or rectangle).", "warning")
            return None
        if self._busy_refusal():
            return None
        self._ensure_reviewer()
        note = self.note_edit.text()
        try:
            cmd = getattr(v, what)(*args, note=note)
        except (ValueError, KeyError) as err:
            _notify(str(err), "warning")
            return None
        self.note_edit.clear()
        if cmd is not None:
            self.status.setText(f"{cmd.description}. Undo: Ctrl+Z.")
        return cmd

    def assign(self, cell_type: str | None = None):
        """Assign the selection to ``cell_type`` (default: the text in the type box)."""
        cell_type = cell_type if cell_type is not None else self.type_box.currentText()
        if not str(cell_type).strip():
            _notify("Type a cell type name first.", "warning")
            return None
        return self._edit("assign", cell_type)

    def exclude(self, reason: str | None = None):
        return self._edit("exclude", reason if reason is not None else self.reason_box.currentText())

    def undo(self):
        if self.view is None or self._busy_refusal():
            return None
        self._ensure_reviewer()
        cmd = self.view.undo()
        self.status.setText(f"Undone: {cmd.description}" if cmd else "Nothing to undo.")
        return cmd

    def redo(self):
        if self.view is None or self._busy_refusal():
            return None
        self._ensure_reviewer()
        cmd = self.view.redo()
        self.status.setText(f"Redone: {cmd.description}" if cmd else "Nothing to redo.")
        return cmd

    def _on_edited(self, event=None):
        self._fill_types()
        self._on_selection()
        self._fill_rois()
        self._fill_audit()
        self._update_meta()
        self._update_undo()

    def _update_undo(self):
        c = self.core.curation if self.core else None
        self.undo_button.setEnabled(bool(c and c.can_undo))
        self.redo_button.setEnabled(bool(c and c.can_redo))
        self.undo_button.setToolTip(f"Undo: {c.undo_stack[-1].description} (Ctrl+Z)" if c and c.can_undo else "Nothing to undo")
        self.redo_button.setToolTip(f"Redo: {c.redo_stack[-1].description} (Ctrl+Shift+Z)" if c and c.can_redo else "Nothing to redo")

    # ================================================================== keys
    def _bind_keys(self):
        """Alt+1 … Alt+9 (assign the first nine types), Ctrl+Z / Ctrl+Shift+Z, through the
        viewer's shared key bindings (the dock on screen used last gets them).

        napari's layer keymaps win over the viewer's: while a Labels layer is active its Ctrl+Z
        undoes paint strokes (napari's behaviour is kept); Alt+digits are used by no napari layer.
        """
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
        self.set_click_mode(False)
        self._timer.stop()
        self.busy_notice.disconnect_session()
        if self.core is not None and self.core.autosaver.pending:
            self.autosave_now()
        from ..editing import run_now

        for ref in self._hooked:   # later writes (scripts, another dock) no longer need this dock
            core = ref()
            if core is not None and core.autosaver.runner == self._run_in_worker:
                core.autosaver.runner = run_now

    def deleteLater(self):  # noqa: N802 - Qt API
        self.cleanup()
        super().deleteLater()

    # ================================================================== blinded review
    def set_blinded(self, on: bool):
        if self.view is None:
            return
        self.view.set_blinded(on)
        idx = self.sample_box.currentIndex()
        if idx >= 0:
            self.sample_box.setItemText(idx, self.view.sample.name)
        self._update_meta()

    # ================================================================== regions
    def _fill_rois(self):
        c = self.core
        keep = self.current_roi()
        self.roi_table.setRowCount(0)
        if c is None:
            return
        prog = c.progress()["rois"]
        self.roi_table.setRowCount(len(prog))
        for i, (r, row) in enumerate(zip(c.curation.rois, prog.itertuples(), strict=False)):
            vals = [r.name, r.cls, f"{row.cells:,}", f"{100 * row.fraction:.0f}%", "✓" if row.marked else ""]
            for col, v in enumerate(vals):
                it = QTableWidgetItem(v)
                it.setData(Qt.UserRole, r.id)
                if col >= 2:
                    it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.roi_table.setItem(i, col, it)
            if r.id == keep:
                self.roi_table.selectRow(i)

    def current_roi(self) -> str | None:
        row = self.roi_table.currentRow()
        it = self.roi_table.item(row, 0) if row >= 0 else None
        return it.data(Qt.UserRole) if it is not None else None

    def _roi_action(self, fn):
        rid = self.current_roi()
        if self.view is None or rid is None:
            _notify("Pick a region in the table first.", "warning")
            return None
        if self._busy_refusal():
            return None
        self._ensure_reviewer()
        return fn(rid)

    def select_roi_cells(self):
        return self._roi_action(lambda rid: self.view.select_in_roi(
            rid, add=self.add_box.isChecked(), cell_type=self.only_type.currentData()))

    def mark_roi_reviewed(self):
        return self._roi_action(lambda rid: self.core.mark_roi_reviewed(rid, note=self.note_edit.text()))

    def remove_roi(self):
        return self._roi_action(lambda rid: self.core.remove_roi(rid))

    def import_geojson(self, path):
        if self.view is None or self._busy_refusal():
            return None
        self._ensure_reviewer()
        try:
            cmd, n = self.core.import_geojson(path)
        except SampleError as err:
            _notify(str(err), "error")
            return None
        _notify(f"{n} region(s) imported from {Path(path).name}")
        return cmd

    def export_geojson(self, path, *, overwrite: bool = True):
        if self.core is None:
            return None
        return self.core.export_geojson(path, overwrite=overwrite)

    def import_geojson_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import regions (QuPath GeoJSON)", "", "GeoJSON (*.geojson *.json)")
        if path:
            self.import_geojson(path)

    def export_geojson_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export regions (QuPath GeoJSON)", self._default_dir("rois.geojson"),
                                              "GeoJSON (*.geojson)")
        if path:
            try:
                self.export_geojson(path)
                _notify(f"Regions written to {path}")
            except SampleError as err:
                _notify(str(err), "error")

    # ================================================================== audit
    def _fill_audit(self):
        self.audit_table.setRowCount(0)
        if self.core is None:
            return
        import json

        df = self.core.audit()
        self.audit_table.setRowCount(len(df))
        for i, row in enumerate(df.itertuples(index=False)):
            n = len(json.loads(row.cell_ids or "[]"))
            vals = [row.time.replace("T", " ").replace("+00:00", "Z"), row.reviewer, row.action, f"{n:,}",
                    row.column, _short(row.old), _short(row.new), row.note]
            for c, v in enumerate(vals):
                it = QTableWidgetItem(str(v))
                it.setToolTip(str(v) if c not in (5, 6) else str(getattr(row, AUDIT_COLUMNS[c]))[:500])
                self.audit_table.setItem(i, c, it)
        self.audit_table.resizeColumnsToContents()
        self.audit_table.scrollToBottom()

    def export_csv(self, path):
        if self.core is not None:
            self.core.export_audit(path)

    def export_csv_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export audit trail", self._default_dir("audit_trail.csv"), "CSV (*.csv)")
        if path:
            self.export_csv(path)
            _notify(f"Audit trail written to {path}")

    # ================================================================== saving
    def _default_dir(self, name: str) -> str:
        src = self.core.source if self.core else None
        return os.fspath(Path(src).with_name(name)) if src else name

    def save(self, path, *, overwrite: bool = False) -> Path | None:
        """Write the curated table to ``path`` (:meth:`CurationSession.save`: atomic, provenance).

        The sample's own files are never overwritten, whatever ``overwrite`` says. Errors are
        shown as notifications; the work stays in memory.
        """
        if self.core is None:
            return None
        if self.core.is_source(path):
            _notify(f"{path} is the file this sample was opened from; it is never overwritten. "
                    "Choose another name.", "warning")
            self.status.setText("Not saved: that is the source file. Choose another name.")
            return None
        try:
            out = self.core.save(path, overwrite=overwrite)
        except SampleError as err:
            _notify(str(err), "error")
            return None
        self.saved_path = out
        self.status.setText(f"Saved to {out}")
        _notify(f"Curated table saved to {out}")
        return out

    def save_as_dialog(self):
        from ..io import proposed_name

        if self.core is None:
            return
        src = self.core.source or os.path.join(os.path.expanduser("~"), f"{self.core.sample.name}.h5ad")
        prop = proposed_name(src)
        path, _ = QFileDialog.getSaveFileName(self, "Save curated table as", os.fspath(prop),
                                              "AnnData (*.h5ad);;AnnData zarr (*.zarr)",
                                              options=QFileDialog.DontConfirmOverwrite)
        if not path:
            return
        if self.core.is_source(path):
            self.save(path)   # refuses, with the message
            return
        overwrite = False
        if os.path.exists(path):
            if not self._ask_yes_no("Replace file?", f"{path} exists. Replace it?"):
                return
            overwrite = True
        self.save(path, overwrite=overwrite)

    def export_spatialdata(self, path, *, overwrite: bool = False):
        from ..io import export_spatialdata

        if self.core is None:
            return None
        try:
            return export_spatialdata(self.core.sample, path, overwrite=overwrite)
        except SampleError as err:
            _notify(str(err), "error")
            return None

    def export_spatialdata_dialog(self):
        if self.core is None:
            return
        path = QFileDialog.getExistingDirectory(self, "Folder for the SpatialData store", self._default_dir("."))
        if path:
            out = self.export_spatialdata(Path(path) / f"{self.core.sample.name}_curated.sdata.zarr")
            if out is not None:
                _notify(f"SpatialData store written to {out}")

    # ------------------------------------------------------------------ autosave / recovery
    @property
    def autosave_policy(self):
        """When the current sample is autosaved (edits pending, last save)."""
        return self.core.autosaver.policy if self.core else None

    @property
    def last_autosave(self) -> Path | None:
        """The recovery file this dock's last autosave wrote (any sample)."""
        return self._last_autosave

    def _run_in_worker(self, fn, on_done, on_error) -> None:
        """The autosave runner: ``fn`` in a napari thread worker, results back on the main thread."""
        from napari.qt.threading import create_worker

        worker = create_worker(fn, _start_thread=False)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(lambda w=worker: self._workers.remove(w) if w in self._workers else None)
        self._workers.append(worker)
        worker.start()

    def _hook_autosave(self, core) -> None:
        """Autosaves of ``core`` run in workers and report here (also after switching sample)."""
        import weakref

        core.autosaver.runner = self._run_in_worker
        if self._on_autosaved not in core.autosaver.on_written:
            core.autosaver.on_written.append(self._on_autosaved)
            core.autosaver.on_failed.append(self._on_autosave_error)
            self._hooked.append(weakref.ref(core))

    def autosave_now(self):
        """Autosave the current sample: a snapshot (``table.copy()``) is written to its recovery
        file in a napari thread worker; the live table is not touched."""
        if self.core is None:
            return None
        self.core.autosaver.autosave_now()
        return True

    def _on_autosaved(self, path):
        self._last_autosave = Path(path)
        with contextlib.suppress(RuntimeError):  # the dock is gone
            self.status.setText(f"Autosaved to {path}")

    def _on_autosave_error(self, err):
        with contextlib.suppress(RuntimeError):
            self.status.setText(f"Autosave failed ({err}). Save your work with Save as…")

    def autosave_busy(self) -> bool:
        """An autosave of this dock is being written (tests wait on this)."""
        return bool(self._workers) or bool(self.core is not None and self.core.autosaver.busy)

    def _maybe_autosave(self):
        if self.core is not None:
            self.core.autosaver.maybe_autosave()

    def _ask_yes_no(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No) == QMessageBox.Yes

    @property
    def recovery_file(self) -> Path | None:
        """The recovery file offered in the banner (None when none is)."""
        return self.core.recovery.offered if self.core is not None and not self.recovery_banner.isHidden() else None

    def _check_recovery(self, sid) -> Path | None:
        """Show the recovery banner when the sample has a recovery file newer than its table."""
        try:
            if self._cleaned or sid != self.sample_box.currentData() or self.view is None:
                return None
        except RuntimeError:   # the dock is being deleted
            return None
        return self.offer_recovery()

    def offer_recovery(self) -> Path | None:
        """When a recovery file newer than the sample's table exists, offer it in the banner
        (non-modal; plus a notification). Returns the file offered, or None."""
        rec = self.core.recovery.offer() if self.core is not None else None
        if rec is None:
            self._hide_recovery()
            return None
        import datetime as _dt

        when = _dt.datetime.fromtimestamp(rec.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        self._recovery_sid = self.view.sid
        name = self.core.real_name if self.core.blinded else self.core.sample.name
        self.recovery_label.setText(f"<b>Unsaved curation of {name}</b> from {when} was autosaved. Recover it?")
        self.recovery_label.setToolTip(os.fspath(rec))
        self.recovery_banner.show()
        _notify(f"Unsaved curation of {name} from {when} was found: "
                "Recover it from the Curation dock (or Not now).")
        return rec

    def _hide_recovery(self):
        self._recovery_sid = None
        self.recovery_banner.hide()

    def decline_recovery(self) -> Path | None:
        """"Not now": keep the open table; the recovery file is renamed ``*.declined`` (kept)."""
        core = self.core
        self._hide_recovery()
        if core is None:
            return None
        try:
            out = core.recovery.decline()
        except SampleError as err:
            log.warning("%s", err)
            return None
        if out is not None:
            self.status.setText(f"Recovery file kept as {out}")
        return out

    def recover_now(self) -> bool:
        """"Recover": the recovery file becomes the sample's table; every dock follows (hover,
        colouring, gating) through the session's ``table_changed``."""
        sid, core = self._recovery_sid, self.core
        if sid is None or core is None or self.view.sid != sid or core.recovery.offered is None:
            self._hide_recovery()
            return False
        rec = core.recovery.offered
        self._hide_recovery()
        try:
            core.recovery.recover()
        except SampleError as err:
            _notify(f"Not recovered: {err}", "error")
            return False
        self.session.table_changed(sid, structure=True, reason=f"recovered from {rec}")
        self.view.sync_roi_layer()
        self._refresh_all()
        _notify(f"Recovered unsaved curation from {rec}")
        self.status.setText(f"Recovered from {rec}. Save it with Save as…")
        return True
