"""The Measurements dock: the cell table (sortable, filterable by class / ROI / region, a click
centres the cell, CSV export) and the region table (area in mm², counts and density per class).

Everything is the headless :mod:`napari_carspatial.model.measurements`; this dock only shows it.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..._napari import (
    STRUCTURE,
    CellIndex,
    cell_info,
    cell_zoom,
    center_on,
    notify,
    ring_marker_layer,
    session_for,
)
from ...model.measurements import CellMeasurements, format_number, region_measurements
from .._common import one_notification_at_a_time, refill_sample_combo
from .table_model import CellTableModel

log = logging.getLogger(__name__)

ANY = "any"
#: columns first on screen, in this order (then the markers, then the rest); CSV keeps the table's order
KEY_COLUMNS = ("cell_id", "curated", "type", "roi", "region", "excluded", "area")
#: shown only when some cell has a value (an all-"–" column is noise beside the markers)
HIDE_WHEN_EMPTY = ("roi", "region", "excluded")
#: column widths fit the header and the first rows, within these bounds (px)
MIN_COLUMN_PX, MAX_COLUMN_PX = 36, 120
#: rows measured for the width of a column
WIDTH_SAMPLE_ROWS = 200


def _compact(combo: QComboBox, chars: int = 8) -> QComboBox:
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


class MeasurementsWidget(QWidget):
    """Per-cell and per-region measurements of one sample.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    model
        The :class:`~.table_model.CellTableModel` of the cell table.
    measurements
        The current sample's :class:`~napari_carspatial.model.measurements.CellMeasurements`.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        one_notification_at_a_time()
        self.measurements: CellMeasurements | None = None

        self.sample_box = QComboBox()
        self.class_box = _compact(QComboBox())
        self.roi_box = _compact(QComboBox())
        self.region_box = _compact(QComboBox())
        self.count_label = QLabel()
        self.count_label.setStyleSheet("color: gray")
        self.model = CellTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicatorShown(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setDefaultSectionSize(64)
        self.table.horizontalHeader().setDefaultAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        self.table.horizontalHeader().setHighlightSections(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)   # no per-row sizing at 1M rows
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setToolTip("Click a row to centre the slide on that cell; click a header to sort")
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.setToolTip("The rows shown (filtered, in this order) with every column")

        self.region_table = QTableWidget(0, 0)
        self.region_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.region_table.verticalHeader().setVisible(False)
        self.region_table.setSortingEnabled(True)
        self.region_csv_button = QPushButton("Export regions CSV…")
        self.region_hint = QLabel("")
        self.region_hint.setWordWrap(True)
        self.region_hint.setStyleSheet("color: gray")

        cells = QWidget()
        cl = QVBoxLayout(cells)
        cl.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("class", self.class_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("ROI"))
        row.addWidget(self.roi_box, 1)
        row.addWidget(QLabel("region"))
        row.addWidget(self.region_box, 1)
        form.addRow(row)
        cl.addLayout(form)
        cl.addWidget(self.count_label)
        cl.addWidget(self.table, 1)
        cl.addWidget(self.csv_button)
        regions = QWidget()
        rl = QVBoxLayout(regions)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.region_hint)
        rl.addWidget(self.region_table, 1)
        rl.addWidget(self.region_csv_button)
        self.tabs = QTabWidget()
        self.tabs.addTab(cells, "Cells")
        self.tabs.addTab(regions, "Regions")

        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("sample"))
        top.addWidget(self.sample_box, 1)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)

        self.sample_box.currentIndexChanged.connect(self.refresh)
        for box in (self.class_box, self.roi_box, self.region_box):
            box.currentIndexChanged.connect(self._apply_filter)
        self.table.clicked.connect(self._on_clicked)
        self.csv_button.clicked.connect(self._export_dialog)
        self.region_csv_button.clicked.connect(self._export_regions_dialog)
        self.session.events.sample_added.connect(self._refill)
        self.session.events.sample_removed.connect(self._refill)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._refill()

    # ------------------------------------------------------------------ samples
    def _sid(self):
        return self.sample_box.currentData()

    def _refill(self, event=None):
        changed, _ = refill_sample_combo(self.sample_box, self.session, where=lambda s: s.table is not None)
        if changed or self.measurements is None:
            self.refresh()

    def _on_table_changed(self, event):
        if event.sid == self._sid():
            self.refresh()

    def refresh(self, *_):
        """Re-read the current sample's table (keeps the filters and the sort where they still apply)."""
        sid = self._sid()
        sample = self.session.sample(sid)
        try:
            self.measurements = CellMeasurements(sample) if sample is not None and sample.table is not None else None
        except (ValueError, KeyError) as err:
            notify(f"No measurements for {sample.name}: {err}", "warning")
            self.measurements = None
        self._fill_filters()
        self.model.set_measurements(self.measurements)
        self._apply_filter()
        self.arrange_columns()
        self.refresh_regions()

    def _class_key(self) -> str | None:
        m = self.measurements
        if m is None:
            return None
        return "curated" if m.curated_key is not None else ("type" if m.type_key is not None else None)

    def _fill_filters(self):
        m = self.measurements
        for box, key in ((self.class_box, self._class_key()), (self.roi_box, "roi"), (self.region_box, "region")):
            keep = box.currentData()
            box.blockSignals(True)
            box.clear()
            box.addItem(ANY, None)
            names = m.categories(key) if m is not None and key else []
            if key in ("roi", "region"):   # cells in several regions: offer each name once
                names = list(dict.fromkeys(n for c in names for n in c.split(" | ")))
            for n in names:
                box.addItem(n, n)
            idx = box.findData(keep)
            box.setCurrentIndex(max(idx, 0))
            box.setEnabled(bool(names))
            box.blockSignals(False)

    def _apply_filter(self, *_):
        ck = self._class_key()
        filt = {"roi": self.roi_box.currentData(), "region": self.region_box.currentData()}
        if ck:
            filt[ck] = self.class_box.currentData()
        self.model.set_filter(**filt)
        m = self.measurements
        n = 0 if m is None else m.n
        self.count_label.setText(f"{self.model.rowCount():,} of {n:,} cells" if m is not None
                                 else "Open a sample with a cell table.")
        self.fit_columns()   # widths and empty columns follow the rows shown

    def column_order(self) -> list[int]:
        """Columns (model indices) in screen order: id, curated type, type, ROI, region, excluded,
        area, the markers, then the rest (centroid)."""
        m = self.measurements
        if m is None:
            return []
        keys = [c.key for c in m.columns]
        first = [keys.index(k) for k in KEY_COLUMNS if k in keys]
        markers = [j for j, k in enumerate(keys) if k.startswith("marker:")]
        rest = [j for j in range(len(keys)) if j not in first and j not in markers]
        return first + markers + rest

    def _empty(self, j: int) -> bool:
        """Column ``j`` is ROI / region / excluded and no row shown has a value in it."""
        m = self.measurements
        c = m.columns[j]
        if c.key not in HIDE_WHEN_EMPTY:
            return False
        v = m.values(j)[self.model.rows]
        return bool((v < 0).all()) if c.kind == "category" else not bool(np.asarray(v).any())

    def arrange_columns(self) -> None:
        """Key columns first (the table's own order stays for sorting and the CSV), then fit them
        to the rows shown (:meth:`fit_columns`)."""
        m = self.measurements
        header = self.table.horizontalHeader()
        if m is None:
            return
        for visual, logical in enumerate(self.column_order()):
            header.moveSection(header.visualIndex(logical), visual)
        self.fit_columns()

    def fit_columns(self) -> None:
        """ROI / region / excluded columns with no value in the rows shown are hidden; each column is
        as wide as its header and its first rows shown, within [MIN_COLUMN_PX, MAX_COLUMN_PX] (longer
        text elides, the full text is one click away in the CSV)."""
        m = self.measurements
        if m is None:
            return
        header = self.table.horizontalHeader()
        fm, hfm = self.table.fontMetrics(), header.fontMetrics()
        rows = self.model.rows[:WIDTH_SAMPLE_ROWS]
        for j in range(len(m.columns)):
            hidden = self._empty(j)
            self.table.setColumnHidden(j, hidden)
            if hidden:
                continue
            title = self.model.headerData(j, Qt.Horizontal)
            head = max(hfm.horizontalAdvance(line) for line in str(title).split("\n")) + 18   # + sort arrow
            body = max((fm.horizontalAdvance(m.text(int(r), j)) for r in rows), default=0) + 12
            self.table.setColumnWidth(j, int(min(MAX_COLUMN_PX, max(MIN_COLUMN_PX, head, body))))

    def visible_columns(self) -> list[str]:
        """Keys of the columns on screen (not hidden), in screen order."""
        m = self.measurements
        if m is None:
            return []
        header = self.table.horizontalHeader()
        shown = [j for j in range(len(m.columns)) if not self.table.isColumnHidden(j)]
        return [m.columns[j].key for j in sorted(shown, key=header.visualIndex)]

    # ------------------------------------------------------------------ actions
    def _on_clicked(self, index):
        if index.isValid():
            self.center_on_row(index.row())

    def center_on_row(self, view_row: int) -> int | None:
        """Centre the slide on the cell shown in ``view_row`` (and ring it); returns its id."""
        m, sid = self.measurements, self._sid()
        if m is None or not 0 <= view_row < self.model.rowCount():
            return None
        row = self.model.table_row(view_row)
        cid = m.cell_id(row)
        lyr = self.session.labels_layer(sid)
        if lyr is None:
            return cid
        sample = self.session.sample(sid)
        center_on(self.viewer, lyr, m.centroid_px(row), zoom=cell_zoom(sample))
        index = self.session.cached(sid, ("table", STRUCTURE, "cell_index"), lambda: CellIndex(sample))
        info = cell_info(index, cid)
        if info is not None:
            ring_marker_layer(self.viewer, lyr, sid, info)
        return cid

    def export_csv(self, path) -> int:
        """Write the rows shown (filtered, in view order) to ``path``; returns the row count."""
        if self.measurements is None:
            return 0
        return self.measurements.to_csv(path, self.model.rows)

    def _export_dialog(self):
        if self.measurements is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export cell measurements",
                                              f"{self.measurements.sample.name}_cells.csv", "CSV (*.csv)")
        if path:
            n = self.export_csv(path)
            notify(f"{n:,} cells written to {path}")

    # ------------------------------------------------------------------ regions
    def region_frame(self):
        sample = self.session.sample(self._sid())
        return None if sample is None or sample.table is None else region_measurements(sample)

    def refresh_regions(self):
        df = self.region_frame()
        self.region_table.setSortingEnabled(False)
        self.region_table.clear()
        if df is None or df.empty:
            self.region_table.setRowCount(0)
            self.region_table.setColumnCount(0)
            self.region_hint.setText("No regions yet: draw or import them in the Curation dock (Regions tab).")
            return
        self.region_hint.setText("Cells whose centre is inside each region; excluded cells are not counted.")
        cols = [c for c in df.columns if not c.endswith(" per mm²")] + [c for c in df.columns if c.endswith(" per mm²")]
        self.region_table.setColumnCount(len(cols))
        self.region_table.setHorizontalHeaderLabels(cols)
        self.region_table.setRowCount(len(df))
        for i, (_, rec) in enumerate(df[cols].iterrows()):
            for j, c in enumerate(cols):
                v = rec[c]
                if isinstance(v, str):
                    it = QTableWidgetItem(v)
                else:
                    it = QTableWidgetItem()
                    it.setData(Qt.DisplayRole, format_number(float(v)) if c == "area (mm²)" or "per mm²" in c
                               else int(v))
                    it.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                    if c == "area (mm²)":
                        it.setText(f"{float(v):.4f}" if v == v else "–")
                self.region_table.setItem(i, j, it)
        self.region_table.resizeColumnsToContents()
        self.region_table.setSortingEnabled(True)

    def _export_regions_dialog(self):
        df = self.region_frame()
        if df is None or df.empty:
            notify("No regions to export.", "warning")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export region measurements", "regions.csv", "CSV (*.csv)")
        if path:
            from ...model.atomic import atomic_write_text

            atomic_write_text(path, df.to_csv(index=False))
            notify(f"{len(df)} regions written to {path}")

    def closeEvent(self, event):  # noqa: N802 - Qt API
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.session.events.table_changed.disconnect(self._on_table_changed)
        super().closeEvent(event)
