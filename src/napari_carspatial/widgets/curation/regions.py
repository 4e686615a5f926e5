"""The Curation dock's "Regions" tab: named regions with a class, their cells and review state,
QuPath GeoJSON import / export."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...model import ROI_CLASSES, SampleError


class RegionsTab(QWidget):
    """Draw a region, the region table (cells, reviewed, done), actions on the picked region."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
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
        form = QFormLayout()
        form.addRow("name", self.roi_name)
        form.addRow("class", self.roi_class)
        draw = QHBoxLayout()
        draw.addWidget(self.roi_poly_button)
        draw.addWidget(self.roi_rect_button)
        form.addRow(draw)
        acts = QHBoxLayout()
        for b in (self.roi_select_button, self.roi_reviewed_button, self.roi_remove_button):
            acts.addWidget(b)
        io_row = QHBoxLayout()
        io_row.addWidget(self.import_button)
        io_row.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.roi_table, 1)
        lay.addLayout(acts)
        lay.addLayout(io_row)

        self.roi_poly_button.clicked.connect(lambda: dock.cells.start_drawing("add_polygon", "roi"))
        self.roi_rect_button.clicked.connect(lambda: dock.cells.start_drawing("add_rectangle", "roi"))
        self.roi_select_button.clicked.connect(self.select_roi_cells)
        self.roi_reviewed_button.clicked.connect(self.mark_roi_reviewed)
        self.roi_remove_button.clicked.connect(self.remove_roi)
        self.import_button.clicked.connect(self.import_geojson_dialog)
        self.export_button.clicked.connect(self.export_geojson_dialog)

    # ------------------------------------------------------------------ refresh
    def refresh(self, core) -> None:
        keep = self.current_roi()
        self.roi_table.setRowCount(0)
        if core is None:
            return
        prog = core.progress()["rois"]
        self.roi_table.setRowCount(len(prog))
        for i, (r, row) in enumerate(zip(core.curation.rois, prog.itertuples(), strict=False)):
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

    # ------------------------------------------------------------------ actions
    def add_from_shape(self, layer, i: int, *, note: str = ""):
        """Shape ``i`` of ``layer`` becomes a region named as typed (or "<class> <n>")."""
        core = self.dock.core
        cls = self.roi_class.currentText()
        name = self.roi_name.text().strip() or core.next_roi_name(cls)
        self.dock.ensure_reviewer()
        cmd = self.dock.view.add_roi_from_shape(layer, i, name=name, cls=cls, note=note)
        self.roi_name.clear()
        return cmd

    def _roi_action(self, fn):
        rid = self.current_roi()
        if self.dock.view is None or rid is None:
            notify("Pick a region in the table first.", "warning")
            return None
        if self.dock.busy_refusal():
            return None
        self.dock.ensure_reviewer()
        return fn(rid)

    def select_roi_cells(self):
        cells = self.dock.cells
        return self._roi_action(lambda rid: self.dock.view.select_in_roi(
            rid, add=cells.add_box.isChecked(), cell_type=cells.only_type.currentData()))

    def mark_roi_reviewed(self):
        return self._roi_action(lambda rid: self.dock.core.mark_roi_reviewed(rid, note=self.dock.cells.take_note()))

    def remove_roi(self):
        return self._roi_action(lambda rid: self.dock.core.remove_roi(rid))

    def import_geojson(self, path):
        if self.dock.view is None or self.dock.busy_refusal():
            return None
        self.dock.ensure_reviewer()
        try:
            cmd, n = self.dock.core.import_geojson(path)
        except SampleError as err:
            notify(str(err), "error")
            return None
        notify(f"{n} region(s) imported from {Path(path).name}")
        return cmd

    def export_geojson(self, path, *, overwrite: bool = True):
        core = self.dock.core
        return None if core is None else core.export_geojson(path, overwrite=overwrite)

    def import_geojson_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import regions (QuPath GeoJSON)", "", "GeoJSON (*.geojson *.json)")
        if path:
            self.import_geojson(path)

    def export_geojson_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export regions (QuPath GeoJSON)",
                                              self.dock.saving.default_dir("rois.geojson"), "GeoJSON (*.geojson)")
        if path:
            try:
                self.export_geojson(path)
                notify(f"Regions written to {path}")
            except SampleError as err:
                notify(str(err), "error")
