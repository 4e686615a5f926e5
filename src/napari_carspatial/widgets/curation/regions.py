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
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...model import ROI_CLASSES, SampleError
from ...model.measurements import region_measurements

#: columns of the region table
ROI_COLUMNS = ("region", "class", "area (mm²)", "cells", "reviewed", "done")


def _per_class(m) -> list[tuple[str, int, float]]:
    """(class, cells, per mm²) of one region_measurements row, most cells first."""
    if m is None:
        return []
    out = []
    for k in m.index:
        if isinstance(k, str) and k.endswith(" cells") and k != "cells":
            name = k[: -len(" cells")]
            out.append((name, int(m[k]), float(m.get(f"{name} per mm²", float("nan")))))
    return sorted(out, key=lambda t: -t[1])


def _class_counts_tip(m) -> str:
    return "\n".join(f"{name}: {n:,} cells ({d:,.0f} per mm²)" if d == d else f"{name}: {n:,} cells"
                      for name, n, d in _per_class(m))


def _class_counts_line(by_name, name) -> str:
    """Per-class counts of the picked region (or a hint)."""
    if by_name is None:
        return ""
    if name is None or name not in by_name.index:
        return "Pick a region to see its cells per class."
    m = by_name.loc[name]
    if not hasattr(m, "index") or isinstance(m, type(by_name)):
        m = m.iloc[0]
    parts = [f"{c} {n:,}" for c, n, _ in _per_class(m) if n]
    return f"{name}: " + (", ".join(parts) if parts else "no cells")


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
        self.roi_table = QTableWidget(0, len(ROI_COLUMNS))
        self.roi_table.setHorizontalHeaderLabels(list(ROI_COLUMNS))
        self.roi_table.setToolTip("Cells whose centre is inside each region (excluded cells not counted); "
                                  "per-class counts and densities: hover a row, or the Measurements dock")
        self.roi_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.roi_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.roi_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.roi_table.verticalHeader().setVisible(False)
        rh = self.roi_table.horizontalHeader()
        rh.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, len(ROI_COLUMNS)):
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
        self.counts_label = QLabel("")
        self.counts_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.roi_table, 1)
        lay.addWidget(self.counts_label)
        lay.addLayout(acts)
        lay.addLayout(io_row)

        self.roi_poly_button.clicked.connect(lambda: dock.cells.start_drawing("add_polygon", "roi"))
        self.roi_rect_button.clicked.connect(lambda: dock.cells.start_drawing("add_rectangle", "roi"))
        self.roi_select_button.clicked.connect(self.select_roi_cells)
        self.roi_table.itemSelectionChanged.connect(self._on_pick)
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
        meas = region_measurements(self.dock.view.sample) if self.dock.view is not None else None
        by_name = meas.set_index("region") if meas is not None and not meas.empty else None
        self.roi_table.setRowCount(len(prog))
        for i, (r, row) in enumerate(zip(core.curation.rois, prog.itertuples(), strict=False)):
            m = by_name.loc[r.name] if by_name is not None and r.name in by_name.index else None
            if isinstance(m, type(by_name)):    # two regions of one name: the first
                m = m.iloc[0]
            area = float(m["area (mm²)"]) if m is not None and "area (mm²)" in m.index else float("nan")
            vals = [r.name, r.cls, f"{area:.3f}" if area == area else "–", f"{row.cells:,}",
                    f"{100 * row.fraction:.0f}%", "✓" if row.marked else ""]
            tip = _class_counts_tip(m)
            for col, v in enumerate(vals):
                it = QTableWidgetItem(v)
                it.setData(Qt.UserRole, r.id)
                if tip:
                    it.setToolTip(tip)
                if col >= 2:
                    it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.roi_table.setItem(i, col, it)
            if r.id == keep:
                self.roi_table.selectRow(i)
        self.counts_label.setText(_class_counts_line(by_name, self.current_roi_name()))

    def current_roi_name(self) -> str | None:
        row = self.roi_table.currentRow()
        it = self.roi_table.item(row, 0) if row >= 0 else None
        return it.text() if it is not None else None

    def _on_pick(self) -> None:
        view = self.dock.view
        if view is None:
            return
        meas = region_measurements(view.sample)
        self.counts_label.setText(_class_counts_line(meas.set_index("region") if not meas.empty else None,
                                                     self.current_roi_name()))

    def lists_rois_of(self, core) -> bool:
        """The table lists exactly ``core``'s regions, in order (only its counts may be stale)."""
        rois = core.curation.rois if core is not None else []
        if self.roi_table.rowCount() != len(rois):
            return False
        items = (self.roi_table.item(i, 0) for i in range(len(rois)))
        return all(it is not None and it.data(Qt.UserRole) == r.id for it, r in zip(items, rois, strict=True))

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
        self.dock.ensure_fresh(self)
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
