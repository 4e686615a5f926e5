"""A ``QAbstractTableModel`` over the per-cell measurement columns: sorting and filtering are
numpy over the columns, and only the rows on screen are ever formatted."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt

from ...model.measurements import CellMeasurements

#: titles longer than this break at their last space: two short header lines ("curated / type",
#: "CD8 / mean", "area / (µm²)") keep columns narrow and every header readable
WRAP_CHARS = 7

_TIPS = {"cell_id": "The cell's id in the mask", "type": "Cell type as read from the table",
         "curated": "Cell type after curation (the reviewer's call)", "roi": "Region of interest the cell is in",
         "region": "Class of that region", "excluded": "Excluded from the analysis by a reviewer",
         "area": "Cell area", "x": "Centroid, x", "y": "Centroid, y"}


def header_text(title: str) -> str:
    """A column title as the header shows it (long titles on two lines)."""
    if len(title) <= WRAP_CHARS or " " not in title:
        return title
    head, _, tail = title.rpartition(" ")
    return f"{head}\n{tail}"


class CellTableModel(QAbstractTableModel):
    """Rows = the cells passing the filter (table rows in ``self.rows``), in the chosen order."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.meas: CellMeasurements | None = None
        self.rows = np.zeros(0, dtype=np.int64)
        self.sort_column: int | None = None
        self.descending = False
        self._filter: dict = {}

    # ------------------------------------------------------------------ content
    def set_measurements(self, meas: CellMeasurements | None) -> None:
        """Show ``meas`` (keeping the filter and the sort column when it still exists)."""
        self.beginResetModel()
        old = None if self.meas is None or self.sort_column is None else self.meas.columns[self.sort_column].key
        self.meas = meas
        self.sort_column = None
        if meas is not None and old is not None:
            keys = [c.key for c in meas.columns]
            self.sort_column = keys.index(old) if old in keys else None
        self._recompute()
        self.endResetModel()

    def set_filter(self, **equal) -> None:
        """Keep only rows whose categorical columns equal these names (None: any)."""
        self.beginResetModel()
        self._filter = {k: v for k, v in equal.items() if v is not None}
        self._recompute()
        self.endResetModel()

    def _recompute(self) -> None:
        m = self.meas
        if m is None:
            self.rows = np.zeros(0, dtype=np.int64)
            return
        keep = {k: v for k, v in self._filter.items() if k in {c.key for c in m.columns}}
        rows = np.flatnonzero(m.mask(**keep)) if keep else np.arange(m.n)
        if self.sort_column is not None:
            rows = m.order(self.sort_column, rows, descending=self.descending)
        self.rows = rows

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:  # noqa: D102 - Qt API
        if self.meas is None or not 0 <= column < len(self.meas.columns):
            return
        self.layoutAboutToBeChanged.emit()
        self.sort_column = column
        self.descending = order == Qt.DescendingOrder
        self.rows = self.meas.order(column, self.rows, descending=self.descending)
        self.layoutChanged.emit()

    def table_row(self, view_row: int) -> int:
        """The table row of the cell shown in view row ``view_row``."""
        return int(self.rows[view_row])

    # ------------------------------------------------------------------ Qt
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else int(self.rows.size)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() or self.meas is None else len(self.meas.columns)

    def data(self, index, role=Qt.DisplayRole):  # noqa: D102 - Qt API
        if not index.isValid() or self.meas is None:
            return None
        col = self.meas.columns[index.column()]
        if role == Qt.DisplayRole:
            return self.meas.text(int(self.rows[index.row()]), index.column())
        if role == Qt.TextAlignmentRole:
            return int((Qt.AlignRight if col.kind in ("number", "id") else Qt.AlignLeft) | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802, D102 - Qt API
        if self.meas is None or orientation != Qt.Horizontal or not 0 <= section < len(self.meas.columns):
            return None
        col = self.meas.columns[section]
        if role == Qt.DisplayRole:
            return header_text(col.title)
        if role == Qt.ToolTipRole:
            what = "Mean intensity of the marker in the cell" if col.key.startswith("marker:") else _TIPS.get(col.key, "")
            return f"{col.title}{': ' + what if what else ''}. Click to sort."
        return None
