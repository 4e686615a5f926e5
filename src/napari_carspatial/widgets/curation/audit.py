"""The Curation dock's "Audit trail" tab: every action (undo and redo included), exported as CSV.

Plain values (no JSON quotes), the cell ids, local times with the zone
(:mod:`napari_carspatial.model.audit_display`); all columns fit the dock (the change reads
``column: old → new``), the full values are in the tooltips.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...model.audit_display import COLUMNS, display_rows, zone_name

AUDIT_COLUMNS = COLUMNS


class AuditTab(QWidget):
    """One row per audit entry of the current sample; "Export CSV…"."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.audit_table = QTableWidget(0, len(AUDIT_COLUMNS))
        self.audit_table.setHorizontalHeaderLabels(list(AUDIT_COLUMNS))
        self.audit_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.audit_table.verticalHeader().setVisible(False)
        self.audit_table.setWordWrap(False)
        hdr = self.audit_table.horizontalHeader()
        for c, name in enumerate(AUDIT_COLUMNS):
            hdr.setSectionResizeMode(c, QHeaderView.Stretch if name in ("change", "note")
                                     else QHeaderView.ResizeToContents)
        self.csv_button = QPushButton("Export CSV…")
        lay = QVBoxLayout(self)
        lay.addWidget(self.audit_table, 1)
        lay.addWidget(self.csv_button)
        self.csv_button.clicked.connect(self.export_csv_dialog)

    def refresh(self, core) -> None:
        self.audit_table.setRowCount(0)
        self.audit_table.setHorizontalHeaderItem(0, QTableWidgetItem(f"time ({zone_name()})"))
        if core is None:
            return
        rows = display_rows(core.audit())
        self.audit_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for c, name in enumerate(AUDIT_COLUMNS):
                it = QTableWidgetItem(row["text"][name])
                it.setToolTip(row["tip"][name][:2000])
                self.audit_table.setItem(i, c, it)
        self.audit_table.scrollToBottom()

    def export_csv(self, path) -> None:
        if self.dock.core is not None:
            self.dock.core.export_audit(path)

    def export_csv_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export audit trail", self.dock.saving.default_dir("audit_trail.csv"),
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)
            notify(f"Audit trail written to {path}")
