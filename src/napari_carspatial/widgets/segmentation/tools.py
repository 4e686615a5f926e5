"""The Segmentation dock's "Paint and select" section: napari's paint / erase / fill / pan on the
edit layer, a fresh id, and the cell selection (Pick cells or Alt+click; a white veil over it)."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton

from ..._napari import META_ROLE, META_SAMPLE, find_cell_type_key
from .region import ROLE_EDIT_SELECTION


class ToolsView(QGroupBox):
    """Paint, Erase, Fill, Pan, New id, Pick cells, Clear, and what is selected."""

    def __init__(self, dock):
        super().__init__("Paint and select")
        self.dock = dock
        self.viewer = dock.viewer
        self.paint_button = QPushButton("Paint")
        self.erase_button = QPushButton("Erase")
        self.fill_button = QPushButton("Fill")
        self.pan_button = QPushButton("Pan")
        for b, tip in ((self.paint_button, "napari paint (2 / P) with the selected label"),
                       (self.erase_button, "napari erase (1 / E)"), (self.fill_button, "napari fill (4 / F)"),
                       (self.pan_button, "pan / zoom (6 / Z)")):
            b.setToolTip(tip)
        self.new_label_button = QPushButton("New id")
        self.new_label_button.setToolTip("Paint with a fresh cell id (max id ever used + 1)")
        self.pick_button = QPushButton("Pick cells")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click cells to add / remove them from the selection, shown under a white veil (Alt+click works in any mode)")
        self.clear_button = QPushButton("Clear")
        self.selection_label = QLabel("No cells selected")
        self.selection_label.setWordWrap(True)
        tl = QGridLayout(self)
        for i, b in enumerate((self.paint_button, self.erase_button, self.fill_button, self.pan_button,
                               self.new_label_button)):
            tl.addWidget(b, 0, i)
        tl.addWidget(self.pick_button, 1, 0, 1, 2)
        tl.addWidget(self.clear_button, 1, 2)
        tl.addWidget(self.selection_label, 2, 0, 1, 5)
        self.paint_button.clicked.connect(lambda: self.set_mode("paint"))
        self.erase_button.clicked.connect(lambda: self.set_mode("erase"))
        self.fill_button.clicked.connect(lambda: self.set_mode("fill"))
        self.pan_button.clicked.connect(lambda: self.set_mode("pan_zoom"))
        self.new_label_button.clicked.connect(self.new_label)
        self.pick_button.toggled.connect(self._on_pick)
        self.clear_button.clicked.connect(self.clear_selection)

    def buttons(self):
        return (self.paint_button, self.erase_button, self.fill_button, self.pan_button, self.new_label_button,
                self.pick_button, self.clear_button)

    # ------------------------------------------------------------------ napari modes
    def set_mode(self, mode: str):
        """Select the edit layer and set its napari mode (``paint``, ``erase``, ``fill``, ``pan_zoom``...)."""
        d = self.dock
        if d.edit_layer is None:
            return
        if mode != "pan_zoom":
            self.pick_button.setChecked(False)
        d.activate(d.edit_layer)
        d.edit_layer.mode = mode

    def new_label(self) -> int | None:
        """Paint with a new unique id."""
        d = self.dock
        ed = d.editor
        if ed is None or d.edit_layer is None:
            return None
        nid = ed.new_id()
        d.edit_layer.selected_label = nid
        self.set_mode("paint")
        d.set_status(f"Painting new cell {nid}")
        return nid

    def _on_pick(self, on: bool):
        d = self.dock
        if on and d.edit_layer is not None:
            d.activate(d.edit_layer)
            d.edit_layer.mode = "pan_zoom"
            d.set_status("Click cells to add or remove them from the selection.")

    def on_click(self, layer, event):
        """Pick cells (or Alt+click in any mode): the clicked cell joins or leaves the selection."""
        if not (self.pick_button.isChecked() or "Alt" in {str(m) for m in event.modifiers}):
            return
        if layer.mode not in ("pan_zoom", "paint", "erase", "fill", "picker") and not self.pick_button.isChecked():
            return
        data_pos = layer.world_to_data(event.position)
        y, x = (round(float(v)) for v in data_pos[-2:])
        edit = self.dock.edit
        cell = edit.cell_at(y, x) if edit is not None else None
        if cell is not None:
            self.toggle_cell(cell)

    # ------------------------------------------------------------------ selection
    def toggle_cell(self, cell: int):
        """Add ``cell`` to the selection, or remove it when it is selected."""
        if self.dock.edit is not None:
            self.dock.edit.toggle(int(cell))
        self.refresh_selection()

    def select_cells(self, ids):
        """Replace the selection by ``ids``."""
        if self.dock.edit is not None:
            self.dock.edit.select(ids)
        self.refresh_selection()

    def clear_selection(self):
        if self.dock.edit is not None:
            self.dock.edit.clear_selection()
        self.refresh_selection()

    def refresh_selection(self):
        """The selection label and the white veil over the selected cells."""
        d = self.dock
        self.update_selection_label()
        if d.region is None:
            return
        lyr = next(iter(d.session.layers_of(d.sid, ROLE_EDIT_SELECTION)), None)
        selection = d.selection
        if not selection:
            if lyr is not None:
                lyr.data = np.zeros((1, 1), np.uint8)
                lyr.visible = False
            return
        mask = np.isin(d.region.data, selection).astype(np.uint8)
        kw = d.region_view.layer_kwargs()
        if lyr is None:
            from napari.utils.colormaps import DirectLabelColormap

            # a white veil over the selected cells: distinct from every outline colour of the edit layer
            cmap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: (1.0, 1.0, 1.0, 0.45)})
            active = self.viewer.layers.selection.active
            lyr = self.viewer.add_labels(mask, name=f"{d.sample.name} selected cells", colormap=cmap, opacity=1.0,
                                         metadata={META_SAMPLE: d.sid, META_ROLE: ROLE_EDIT_SELECTION}, **kw)
            lyr.editable = False
            if active is not None:
                d.activate(active)
        else:
            d.region_view.unpark(lyr)
            lyr.data = mask
            lyr.translate = kw["translate"]
            lyr.visible = True

    def update_selection_label(self):
        d = self.dock
        selection = d.selection
        if not selection:
            hint = " (picked label used)" if d.edit_layer is not None else ""
            self.selection_label.setText("No cells selected" + hint)
            return
        types = self._types(selection)
        txt = ", ".join(f"{c}" + (f" ({types[c]})" if types.get(c) else "") for c in selection[:8])
        more = f" … +{len(selection) - 8}" if len(selection) > 8 else ""
        self.selection_label.setText(f"{len(selection)} selected: {txt}{more}")

    def _types(self, ids) -> dict[int, str]:
        t = self.dock.sample.table if self.dock.sample is not None else None
        if t is None:
            return {}
        key = find_cell_type_key(t)
        if key is None or self.dock.editor is None:
            return {}
        ids = [int(c) for c in ids]
        rows = self.dock.editor.row_positions(ids)   # not a dict of the table's 10^6 ids
        col = t.obs[key]
        return {c: str(col.iloc[int(r)]) for c, r in zip(ids, rows, strict=True) if r >= 0}
