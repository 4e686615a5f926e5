"""The Project dock's slides table: one row per slide assigned to the current reviewer."""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

COLUMNS = ("slide", "role", "status", "reviewed", "due")
#: rows shown without scrolling
MIN_ROWS = 6
#: text colours of the statuses (readable on napari's dark and light themes)
STATUS_COLORS = {"not_started": None, "in_progress": "#e0a000", "done": "#3c9a5f", "adjudicated": "#3c7ec8",
                 "waiting": "#8a8a8a"}
OVERDUE_COLOR = "#d55e00"


def percent(fraction: float) -> str:
    """``0.0045`` -> ``"0.5%"``, ``0.42`` -> ``"42%"``."""
    v = 100 * fraction + 1e-9   # 0.0045 stored -> "0.5%", as the Curation dock rounds
    return f"{v:.1f}%" if 0 < v < 10 else f"{v:.0f}%"


class SlidesTable(QTableWidget):
    """Slide (code), role, status, reviewed (%), due; open slides in bold, overdue dates in red."""

    def __init__(self, dock):
        super().__init__(0, len(COLUMNS))
        self.dock = dock
        self.setHorizontalHeaderLabels([c.capitalize() for c in COLUMNS])
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        hh = self.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setStretchLastSection(True)
        self.setToolTip("Double-click a slide to open it")
        self.set_min_rows(MIN_ROWS)
        self.cellDoubleClicked.connect(lambda row, _col: dock.open_label(self.label_at(row)))

    def set_min_rows(self, n: int) -> None:
        """Show at least ``n`` rows without scrolling."""
        self.setMinimumHeight(self.verticalHeader().defaultSectionSize() * n + self.horizontalHeader().sizeHint().height() + 4)

    def fill(self, df) -> None:
        """Show ``ProjectWorkspace.assignments()``, keeping the selected slide."""
        keep = self.current_label()
        self.setRowCount(0)
        if df is None:
            return
        self.setRowCount(len(df))
        for i, r in enumerate(df.itertuples(index=False)):
            prog = r.progress
            prog_text = "" if prog is None or (isinstance(prog, float) and math.isnan(prog)) else percent(float(prog))
            values = (("▶ " if r.open else "") + r.label, r.role, r.status_text, prog_text,
                      (r.due or "") + (" !" if r.overdue else ""))
            for j, v in enumerate(values):
                it = QTableWidgetItem(str(v))
                it.setData(Qt.UserRole, r.label)
                if r.open:
                    f = QFont()
                    f.setBold(True)
                    it.setFont(f)
                if j == 2 and STATUS_COLORS.get(r.status):
                    it.setForeground(QBrush(QColor(STATUS_COLORS[r.status])))
                if j == 4 and r.overdue:
                    it.setForeground(QBrush(QColor(OVERDUE_COLOR)))
                if j == 2 and r.status == "waiting":
                    it.setToolTip("The adjudication opens once both reads are done")
                if j == 0 and r.open:
                    it.setToolTip("Open in the viewer")
                if j == 4 and r.overdue:
                    it.setToolTip("Overdue")
                if j == 3:
                    it.setToolTip("Cells reviewed at the last save")
                self.setItem(i, j, it)
        self.setColumnHidden(COLUMNS.index("reviewed"), bool(df["progress"].isna().all()))
        if keep is not None:
            self.select_label(keep)

    def label_at(self, row: int) -> str | None:
        it = self.item(row, 0) if row >= 0 else None
        return None if it is None else it.data(Qt.UserRole)

    def current_label(self) -> str | None:
        return self.label_at(self.currentRow())

    def select_label(self, label: str) -> bool:
        for i in range(self.rowCount()):
            if self.label_at(i) == label:
                self.selectRow(i)
                return True
        return False

    def labels(self) -> list[str]:
        return [self.label_at(i) for i in range(self.rowCount())]
