"""The Curation dock's "Cells" tab: select cells on the slide, re-annotate, exclude, confirm.

Selection tools: click / shift-click, lasso, polygon, rectangle, clear; "only type" restricts any
selection to one curated type (e.g. all CAR T cells in a region). Shapes are drawn on the
sample's drawing layer; each new shape selects (or, for the Regions tab, becomes a region).
"""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import (
    META_ROLE,
    META_SAMPLE,
    ROI_EDGE_PX,
    ROLE_SELECT_SHAPES,
    keep_edge_on_screen,
    notify,
)
from ...model.curation import EXCLUDE_REASONS
from .._common import StableText


def _compact(combo: QComboBox, chars: int = 10) -> None:
    """A combo as wide as ``chars`` characters, whatever its longest item (long type names elide)."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)


def _slim(button: QPushButton) -> None:
    """Less side padding than napari's theme gives a button (the label still fits: no fixed width)."""
    button.setStyleSheet("QPushButton { padding-left: 6px; padding-right: 6px; }")


class CellsTab(QWidget):
    """Selection tools and the re-annotation of the selection."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.viewer = dock.viewer
        self._click_cb = None
        self._draw_purpose = "select"
        self._connected: set[int] = set()   # drawing layers whose new shapes reach this tab
        # short labels (the tooltips say the rest), no fixed widths: the tab fits the ~370 px
        # column beside the canvas at 1600 x 1000 with Assign / Exclude on screen (issue 14)
        self.click_button = QPushButton("Click")
        self.click_button.setCheckable(True)
        self.click_button.setToolTip("Click a cell to select it, Shift+click to add or remove one")
        self.lasso_button = QPushButton("Lasso")
        self.polygon_button = QPushButton("Polygon")
        self.rect_button = QPushButton("Rect")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Clear the selection")
        for b, tip in ((self.lasso_button, "Lasso: draw freehand around cells"),
                       (self.polygon_button, "Polygon: click the corners, double-click to close"),
                       (self.rect_button, "Rectangle: drag a rectangle")):
            b.setToolTip(tip + " (cells whose centre is inside are selected)")
        tools = QHBoxLayout()   # one row: the Re-annotate buttons stay above the fold
        tools.setSpacing(4)
        for b in (self.click_button, self.lasso_button, self.polygon_button, self.rect_button, self.clear_button):
            _slim(b)
            tools.addWidget(b, 1)
        self.only_type = QComboBox()
        _compact(self.only_type, 6)
        self.only_type.setToolTip("Restrict selections to one curated type (e.g. all CAR T cells in a region)")
        self.add_box = QCheckBox("add")
        self.add_box.setToolTip("Add to the selection: new shapes add cells instead of replacing the selection")
        # two lines whatever is selected (the whole summary in the tooltip when cut): a wrapped
        # label of 1 to 4 lines moved the rows below, showed or hid the tab's scroll bar and
        # re-laid the whole window on each selection, edit and undo
        self.sel_label = StableText("No cells selected", lines=2)
        bold = self.sel_label.font()
        bold.setBold(True)
        self.sel_label.setFont(bold)
        self.type_box = QComboBox()
        _compact(self.type_box, 6)
        self.type_box.setEditable(True)
        self.type_box.setInsertPolicy(QComboBox.NoInsert)
        self.type_box.setToolTip("The curated type to assign: an existing type, or type a new name")
        self.assign_button = QPushButton("Assign")
        self.assign_button.setToolTip("Set the curated type of the selected cells (Alt+1 … Alt+9: the first nine types)")
        self.reason_box = QComboBox()
        _compact(self.reason_box, 6)
        self.reason_box.addItems(list(EXCLUDE_REASONS))
        self.reason_box.setEditable(True)
        self.reason_box.setToolTip("Why the selected cells are excluded from the analysis (pick or type a reason)")
        self.exclude_button = QPushButton("Exclude")
        self.exclude_button.setToolTip("Exclude the selected cells from the analysis, with the reason beside")
        self.include_button = QPushButton("Include")
        self.include_button.setToolTip("Remove the exclusion flag of the selected cells")
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.setToolTip("The calls are right: mark the selected cells reviewed")
        for b in (self.assign_button, self.exclude_button, self.include_button, self.confirm_button):
            _slim(b)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note for the audit trail (optional)")
        self.keys_label = QLabel()
        self.keys_label.setWordWrap(True)
        self.keys_label.setStyleSheet("color: gray; font-size: 10px")
        sel_group = QGroupBox("Select cells")
        sg = QVBoxLayout(sel_group)
        sg.setSpacing(4)
        sg.addLayout(tools)
        opt = QHBoxLayout()
        opt.addWidget(QLabel("only type"))
        opt.addWidget(self.only_type, 1)
        opt.addWidget(self.add_box)
        sg.addLayout(opt)
        sg.addWidget(self.sel_label)
        ann_group = QGroupBox("Re-annotate the selection")
        ag = QGridLayout(ann_group)
        ag.setVerticalSpacing(4)
        ag.addWidget(QLabel("type"), 0, 0)
        ag.addWidget(self.type_box, 0, 1)
        ag.addWidget(self.assign_button, 0, 2)
        ag.addWidget(QLabel("reason"), 1, 0)
        ag.addWidget(self.reason_box, 1, 1)
        ag.addWidget(self.exclude_button, 1, 2)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.include_button)
        row.addWidget(self.confirm_button)
        ag.addLayout(row, 2, 0, 1, 3)
        ag.addWidget(self.note_edit, 3, 0, 1, 3)
        ag.addWidget(self.keys_label, 4, 0, 1, 3)
        ag.setColumnStretch(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addWidget(sel_group)
        lay.addWidget(ann_group)
        lay.addStretch(1)

        self.click_button.toggled.connect(self.set_click_mode)
        self.lasso_button.clicked.connect(lambda: self.start_drawing("add_polygon_lasso", "select"))
        self.polygon_button.clicked.connect(lambda: self.start_drawing("add_polygon", "select"))
        self.rect_button.clicked.connect(lambda: self.start_drawing("add_rectangle", "select"))
        self.clear_button.clicked.connect(self.clear_selection)
        self.assign_button.clicked.connect(lambda: dock.assign())
        self.type_box.lineEdit().returnPressed.connect(lambda: dock.assign())
        self.exclude_button.clicked.connect(lambda: dock.exclude())
        self.include_button.clicked.connect(lambda: dock.include())
        self.confirm_button.clicked.connect(lambda: dock.confirm())

    def take_note(self) -> str:
        """The note typed for the audit trail (cleared: it goes with one action)."""
        note = self.note_edit.text()
        self.note_edit.clear()
        return note

    # ------------------------------------------------------------------ refresh
    def fill_types(self, core) -> None:
        """The curated types in the type box, the "only type" filter and the Alt+digit legend."""
        cats = core.categories if core else []
        listed = [self.type_box.itemData(i) for i in range(self.type_box.count())]
        only_listed = [self.only_type.itemData(i) for i in range(1, self.only_type.count())]
        if listed == cats and only_listed == cats and self.only_type.count() == len(cats) + 1:
            return   # after most edits: the same types (refilling would re-lay out and repaint both lists)
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

    def show_selection(self, view, *, busy: bool) -> None:
        """The selection count per type; edit buttons only with a selection and an idle sample."""
        if view is None or not view.n_selected:
            self.sel_label.setText("No cells selected")
        else:
            summ = view.selection_summary()
            parts = ", ".join(f"{v:,} {k}" for k, v in list(summ.items())[:4])
            more = "" if len(summ) <= 4 else f", +{len(summ) - 4} types"
            self.sel_label.setText(f"{view.n_selected:,} cells selected ({parts}{more})")
        on = bool(view is not None and view.n_selected and not busy)
        for b in (self.assign_button, self.exclude_button, self.include_button, self.confirm_button):
            b.setEnabled(on)

    # ------------------------------------------------------------------ selecting on the slide
    def clear_selection(self):
        view = self.dock.view
        if view is not None:
            view.clear_selection()
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
        tab = self

        def _click(viewer, event):
            if event.type != "mouse_press" or getattr(event, "button", 1) != 1:
                return
            pos = event.position
            yield
            moved = False
            while event.type == "mouse_move":
                moved = True
                yield
            if not moved and tab.dock.view is not None:
                tab.click_select(pos, add="Shift" in event.modifiers)

        self._click_cb = _click
        cbs.append(_click)
        lyr = self.selection_shapes_layer(create=False)
        if lyr is not None:
            lyr.mode = "pan_zoom"

    def click_select(self, world_position, *, add: bool = False):
        """What a click does in click mode (tests call it with a world position)."""
        view = self.dock.view
        return None if view is None else view.select_at(world_position, add=add)

    def selection_shapes_layer(self, create: bool = True):
        """The sample's drawing layer (made on first use when ``create``)."""
        view = self.dock.view
        if view is None:
            return None
        found = self.dock.session.layers_of(view.sid, ROLE_SELECT_SHAPES)
        if found or not create:
            if found:
                self._follow(found[0])
            return found[0] if found else None
        layer = self.viewer.add_shapes(
            name=f"{view.sample.name}: drawing", edge_color="#ffff00", face_color=[1, 1, 0, 0.08],
            metadata={META_SAMPLE: view.sid, META_ROLE: ROLE_SELECT_SHAPES},
            **view.layer_geometry())
        keep_edge_on_screen(self.viewer, layer, ROI_EDGE_PX)   # thin at any zoom
        self._follow(layer)
        return layer

    def _follow(self, layer) -> None:
        if hash(layer) not in self._connected:
            self._connected.add(hash(layer))
            layer.events.data.connect(self._on_shape_data)

    def start_drawing(self, mode: str, purpose: str = "select"):
        """Activate the drawing layer in ``mode`` (lasso, polygon, rectangle) for ``purpose``
        (``"select"`` cells or ``"roi"``: the next shape becomes a region)."""
        if self.dock.view is None:
            return None
        self.click_button.setChecked(False)
        self._draw_purpose = purpose
        layer = self.selection_shapes_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = mode
        what = "a region" if purpose == "roi" else "around the cells to select"
        self.dock.set_status(f"Draw {what} ({mode.replace('add_', '').replace('_', ' ')}).")
        return layer

    def _on_shape_data(self, event):
        if getattr(event, "action", None) not in ("added", "added_shapes") or self.dock.view is None:
            return
        layer = event.source
        if not len(layer.data):
            return
        i = len(layer.data) - 1
        QTimer.singleShot(0, lambda: self.use_shape(layer, i))

    def use_shape(self, layer, i: int):
        """Use shape ``i`` of ``layer`` for the current purpose (select cells, or a new region)."""
        view = self.dock.view
        if view is None or i >= len(layer.data):
            return
        try:
            if self._draw_purpose == "roi":
                self.dock.regions.add_from_shape(layer, i, note=self.take_note())
                layer.data = []
                self._draw_purpose = "select"
                layer.mode = "pan_zoom"
            else:
                n = view.select_in_shapes(layer, [i], add=self.add_box.isChecked(),
                                          cell_type=self.only_type.currentData())
                if len(layer.data) > 1:  # keep only the newest shape on screen
                    layer.selected_data = set(range(len(layer.data) - 1))
                    layer.remove_selected()
                self.dock.set_status(f"{n:,} cells selected. Assign a type (or Alt+1 … Alt+9), exclude or confirm.")
        except ValueError as err:
            notify(str(err), "warning")
