"""The Curation dock's "Audit trail" tab: every action (undo and redo included), exported as CSV."""

from __future__ import annotations

import json

from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify

AUDIT_COLUMNS = ("time", "reviewer", "action", "cells", "column", "old", "new", "note")


def _short(value, n: int = 40) -> str:
    value = str(value)
    return value if len(value) <= n else value[: n - 1] + "…"


class AuditTab(QWidget):
    """One row per audit entry of the current sample; "Export CSV…"."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.audit_table = QTableWidget(0, len(AUDIT_COLUMNS))
        self.audit_table.setHorizontalHeaderLabels(list(AUDIT_COLUMNS))
        self.audit_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.audit_table.verticalHeader().setVisible(False)
        self.audit_table.horizontalHeader().setStretchLastSection(True)
        self.csv_button = QPushButton("Export CSV…")
        lay = QVBoxLayout(self)
        lay.addWidget(self.audit_table, 1)
        lay.addWidget(self.csv_button)
        self.csv_button.clicked.connect(self.export_csv_dialog)

    def refresh(self, core) -> None:
        self.audit_table.setRowCount(0)
        if core is None:
            return
        df = core.audit()
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

    def export_csv(self, path) -> None:
        if self.dock.core is not None:
            self.dock.core.export_audit(path)

    def export_csv_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export audit trail", self.dock.saving.default_dir("audit_trail.csv"),
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)
            notify(f"Audit trail written to {path}")
