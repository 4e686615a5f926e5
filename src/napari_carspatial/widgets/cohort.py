"""The "Cohort" dock: the samples of a batch run with their key metrics; open any of them.

Load a results folder written by ``carspatial batch`` (its ``run.json`` names the manifest). The
table lists every sample of the manifest with its clinical columns and key metrics; a
double-click opens that sample in the viewer (read in a worker thread, layers added on the main
thread, errors as napari notifications). The table fits the dock: the clinical columns and one
key metric at a time (the "metric" chooser; sort by clicking its header). The strip plots below
show, for each key metric, every sample of the cohort as a dot (blue responders, orange
non-responders, grey unknown) on an axis with its values (the cohort's range at the ends), the
sample that is open or selected ringed, with its value, so one sees where it sits in the cohort.

One module (~540 lines) because the strip plot is drawn only for this dock and its text layout
(:meth:`_StripPlot.text_boxes`, what the tests check for overlaps) belongs next to the table it
follows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import notify, session_for
from ._common import vertical_scroll

log = logging.getLogger(__name__)

R_COLOR, NR_COLOR, NA_COLOR = "#0072b2", "#d55e00", "#9a9a9a"
#: the sample table shows at least this many rows (all of a smaller cohort) without scrolling
TABLE_ROWS = 6
_SHORT = {
    "car_t_density_per_mm2": "CAR T /mm²",
    "antigen_neg_fraction": "Ag-neg frac",
    "frac_car_t_contact_tumor": "CAR T–tumour contact",
    "frac_car_t_contact_myeloid": "CAR T–myeloid contact",
    "myeloid_density_per_mm2": "myeloid /mm²",
    "log2_oe_car_t_tumor": "log2 O/E CAR T–tumour",
    "frac_car_t_pd1_pos": "PD-1+ CAR T",
}
_REGION = {"tumor_core": "core", "margin": "margin", "whole": "all", "stroma": "stroma"}


def _group(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "NA"
    return "R" if bool(v) else "NR"


def short_label(region: str, metric: str) -> str:
    return f"{_SHORT.get(metric, metric)} ({_REGION.get(region, region)})"


def axis_value(v: float) -> str:
    """A compact axis value: ``0.034``, ``12.5``, ``1,250``, ``-3.2``."""
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


class _StripPlot(QWidget):
    """One horizontal strip per key metric: every sample a dot. Above the axis the metric's name
    (left) and the current sample's value (right); below it the cohort's minimum and maximum at
    the ends. The texts of a strip never overlap (:meth:`text_boxes` is what is drawn)."""

    #: space above and below the axis (the current sample's ring is 7 px in radius), px
    GAP = 9
    #: space at the left and right of the axis, px
    PAD = 10

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, np.ndarray, list[str]]] = []  # label, values, groups
        self.samples: list[str] = []
        self.current: str | None = None
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_data(self, samples: list[str], rows) -> None:
        self.samples = list(samples)
        self.rows = list(rows)
        self.setFixedHeight(self.row_height() * max(len(self.rows), 1) + 6)
        self.update()

    def set_current(self, sample: str | None) -> None:
        self.current = sample
        self.update()

    def axis_texts(self, k: int) -> tuple[str, str, str | None]:
        """(min, max, current sample's value) texts of strip ``k`` (what is drawn)."""
        _label, vals, _groups = self.rows[k]
        fin = vals[np.isfinite(vals)]
        if not fin.size:
            return "–", "–", None
        cur = self.samples.index(self.current) if self.current in self.samples else None
        cur_text = axis_value(float(vals[cur])) if cur is not None and np.isfinite(vals[cur]) else None
        return axis_value(float(fin.min())), axis_value(float(fin.max())), cur_text

    def _fonts(self) -> tuple[QFont, QFont, QFont]:
        font = QFont(self.font())
        small = QFont(font)
        small.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        bold = QFont(font)
        bold.setBold(True)
        return font, small, bold

    def row_height(self) -> int:
        """Height of one strip: the name line, the axis with the dots, the range line."""
        from qtpy.QtGui import QFontMetricsF

        font, small, bold = self._fonts()
        name_h = max(QFontMetricsF(font).height(), QFontMetricsF(bold).height())
        return int(np.ceil(name_h + 2 * self.GAP + QFontMetricsF(small).height() + 4))

    def axis_span(self) -> tuple[float, float]:
        """x of the axis' two ends, px."""
        return float(self.PAD), float(max(self.width() - self.PAD, self.PAD + 1))

    def text_boxes(self, k: int) -> list[tuple[str, QRectF, str]]:
        """The texts of strip ``k`` as ``(text, rectangle, role)`` (role ``name``, ``value``,
        ``min``, ``max``): the metric's name elided so that it never runs into the value."""
        from qtpy.QtGui import QFontMetricsF

        label, _vals, _groups = self.rows[k]
        font, small, bold = self._fonts()
        top = 3 + k * self.row_height()
        x0, x1 = self.axis_span()
        lo_t, hi_t, cur_t = self.axis_texts(k)
        fm, fs, fb = QFontMetricsF(font), QFontMetricsF(small), QFontMetricsF(bold)
        out = []
        vw = 0.0
        if cur_t is not None:
            vt = f"this sample {cur_t}"
            vw = fb.horizontalAdvance(vt) + 2
            out.append((vt, QRectF(x1 - vw, top, vw, fb.height()), "value"))
        room = max(x1 - x0 - vw - 12, 20)
        name = fm.elidedText(label, Qt.ElideRight, room)
        out.append((name, QRectF(x0, top, min(fm.horizontalAdvance(name) + 2, room), fm.height()), "name"))
        ytxt = self.axis_y(k) + self.GAP
        lw, hw = fs.horizontalAdvance(lo_t) + 2, fs.horizontalAdvance(hi_t) + 2
        out.append((lo_t, QRectF(x0, ytxt, lw, fs.height()), "min"))
        out.append((hi_t, QRectF(x1 - hw, ytxt, hw, fs.height()), "max"))
        return out

    def axis_y(self, k: int) -> float:
        """y of strip ``k``'s axis, px (between the name line and the range line)."""
        from qtpy.QtGui import QFontMetricsF

        font, _small, bold = self._fonts()
        name_h = max(QFontMetricsF(font).height(), QFontMetricsF(bold).height())
        return 3 + k * self.row_height() + name_h + self.GAP

    def paintEvent(self, event):  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        pal = self.palette()
        fg = pal.windowText().color()
        dim = QColor(fg.red(), fg.green(), fg.blue(), 160)
        font, small, bold = self._fonts()
        x0, x1 = self.axis_span()
        cur = self.samples.index(self.current) if self.current in self.samples else None
        for k, (_label, vals, groups) in enumerate(self.rows):
            y = self.axis_y(k)
            for text, rect, role in self.text_boxes(k):
                p.setFont({"name": font, "value": bold}.get(role, small))
                p.setPen(fg if role in ("name", "value") else dim)
                align = Qt.AlignRight if role in ("value", "max") else Qt.AlignLeft
                p.drawText(rect, align | Qt.AlignVCenter, text)
            p.setPen(QPen(QColor(fg.red(), fg.green(), fg.blue(), 90), 1))
            p.drawLine(QPointF(x0, y), QPointF(x1, y))
            for xt in (x0, x1):   # end ticks
                p.drawLine(QPointF(xt, y - 4), QPointF(xt, y + 4))
            fin = np.isfinite(vals)
            if not fin.any():
                continue
            lo, hi = float(np.min(vals[fin])), float(np.max(vals[fin]))
            span = hi - lo or 1.0
            for i, (v, g) in enumerate(zip(vals, groups, strict=False)):
                if not np.isfinite(v):
                    continue
                x = x0 + (v - lo) / span * (x1 - x0)
                c = QColor({"R": R_COLOR, "NR": NR_COLOR}.get(g, NA_COLOR))
                c.setAlpha(210)
                p.setPen(Qt.NoPen)
                p.setBrush(c)
                jitter = ((i * 7919) % 5 - 2) * 1.2
                p.drawEllipse(QPointF(x, y + jitter), 3.5, 3.5)
            if cur is not None and np.isfinite(vals[cur]):
                x = x0 + (vals[cur] - lo) / span * (x1 - x0)
                p.setBrush(Qt.NoBrush)
                p.setPen(QPen(fg, 2))
                p.drawEllipse(QPointF(x, y), 7, 7)
        p.end()


class CohortWidget(QWidget):
    """Browse a cohort's batch results and open its samples."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.results: Path | None = None
        self.manifest = None
        self.metrics: pd.DataFrame | None = None
        self.wide: pd.DataFrame | None = None
        self.keys: list[tuple[str, str]] = []
        self._worker = None
        self._opened: dict[str, str] = {}  # cohort sample id -> session sample id
        self.session = session_for(self.viewer)

        self.setMinimumWidth(380)
        self.path = QLineEdit()
        self.path.setPlaceholderText("results folder of carspatial batch")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        self.load_button = QPushButton("Load")
        top = QHBoxLayout()
        top.addWidget(self.path, 1)
        top.addWidget(browse)
        top.addWidget(self.load_button)

        self.status = QLabel("Load a results folder; double-click a sample to open it.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        # columns sized to fit the dock (:meth:`fit_columns`): no horizontal scrolling
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        # Qt elides a header as one line: the key metric's two-line header would lose its region
        self.table.horizontalHeader().setTextElideMode(Qt.ElideNone)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.table.viewport().installEventFilter(self)
        self.metric_box = QComboBox()
        self.metric_box.setToolTip("The key metric shown in the table's last column (click its header to sort)")
        self.metric_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.metric_box.setMinimumContentsLength(16)
        self.strip = _StripPlot()
        self.strip_title = QLabel("")
        self.strip_title.setWordWrap(True)
        # the strips scroll on their own: the sample table keeps its rows (>= TABLE_ROWS visible)
        self.strip_scroll = vertical_scroll(self.strip)
        self.strip_scroll.setMinimumHeight(2 * self.strip.row_height() + 8)
        strips = QWidget()
        sl = QVBoxLayout(strips)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.strip_title)
        sl.addWidget(self.strip_scroll, 1)
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(strips)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.status)
        mrow = QHBoxLayout()
        mrow.addWidget(QLabel("metric"))
        mrow.addWidget(self.metric_box, 1)
        lay.addLayout(mrow)
        lay.addWidget(self.splitter, 1)

        browse.clicked.connect(self._browse)
        self.load_button.clicked.connect(lambda: self.load(self.path.text().strip()))
        self.path.returnPressed.connect(lambda: self.load(self.path.text().strip()))
        self.table.cellDoubleClicked.connect(self._double_clicked)
        self.metric_box.currentIndexChanged.connect(lambda _i: self._fill_table() if self.manifest is not None else None)
        self.table.itemSelectionChanged.connect(self._selection_changed)

    # -------------------------------------------------------------- loading
    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a batch results folder")
        if path:
            self.path.setText(path)
            self.load(path)

    def load(self, results, manifest=None) -> None:
        """Show the samples of a results folder (``manifest`` default: the one in ``run.json``)."""
        from ..cohort.manifest import read_manifest
        from ..cohort.report import KEY_METRICS, key_metrics, wide_key_table

        try:
            results = Path(results)
            if manifest is None:
                run = results / "run.json"
                if not run.is_file():
                    raise FileNotFoundError(f"{run} not found: is {results} a carspatial batch results folder?")
                manifest = json.loads(run.read_text(encoding="utf-8"))["manifest"]
            man = read_manifest(manifest, check_files=False)
            mpath = results / "metrics.csv"
            metrics = pd.read_csv(mpath, dtype={"sample": str, "patient": str}) if mpath.is_file() else \
                pd.DataFrame(columns=["sample", "region", "metric", "value"])
        except Exception as err:  # noqa: BLE001 - shown to the user
            self._error(f"Cannot load the cohort: {err}")
            return
        self.results, self.manifest, self.metrics = results, man, metrics
        self.path.setText(str(results))
        self.keys = key_metrics(metrics, KEY_METRICS) if len(metrics) else []
        wide = wide_key_table(metrics, self.keys) if len(metrics) else pd.DataFrame()
        self.wide = wide
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        for r, m in self.keys:
            self.metric_box.addItem(short_label(r, m), (r, m))
        self.metric_box.blockSignals(False)
        self._fill_table()
        done = len(wide)
        self.status.setText(f"{len(man.samples)} samples of {man.table['patient'].nunique()} patients; "
                            f"{done} with results. Double-click a sample to open it.")
        self._update_strip()

    def _fill_table(self):
        man = self.manifest
        shown = [self.metric_box.currentData()] if self.metric_box.currentData() else []
        cols = ["sample", "patient", "timepoint", "response", "cells"] + [short_label(r, m) for r, m in shown]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        for j, (r, m) in enumerate(shown, start=5):   # the metric on two lines: the table fits the dock
            head = self.table.horizontalHeaderItem(j)
            head.setText(f"{_SHORT.get(m, m)}\n({_REGION.get(r, r)})")
            head.setToolTip(f"{short_label(r, m)}: {m} in region {r!r}; click to sort")
        self.table.setRowCount(len(man.samples))
        for i, sid in enumerate(man.samples):
            row = man.table.loc[sid]
            w = self.wide.loc[sid] if self.wide is not None and sid in self.wide.index else None
            vals = [sid, row["patient"], row["timepoint"], row["response"] or "–",
                    w["cells"] if w is not None and "cells" in w else np.nan]
            vals += [w[f"{m} [{r}]"] if w is not None and f"{m} [{r}]" in w else np.nan for r, m in shown]
            for j, v in enumerate(vals):
                item = QTableWidgetItem()
                if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool):
                    f = float(v)
                    item.setData(Qt.DisplayRole, "–" if not np.isfinite(f) else (f"{f:.3g}" if abs(f) < 100
                                                                                   else f"{f:,.0f}"))
                    item.setData(Qt.UserRole + 1, f)
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                else:
                    item.setText(str(v))
                if j == 0:
                    item.setData(Qt.UserRole, sid)
                if j == 3 and _group(row["responder"]) != "NA":
                    item.setForeground(QColor(R_COLOR if _group(row["responder"]) == "R" else NR_COLOR))
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        self.fit_columns()
        self._size_table()

    def fit_columns(self) -> None:
        """Columns as wide as their header and values; in a narrow dock the headers give way first
        (elided, the full name in their tooltip), then the values, so no column is off-screen."""
        t, h = self.table, self.table.horizontalHeader()
        n = h.count()
        if not n:
            return
        t.resizeColumnsToContents()
        full = [h.sectionSize(i) for i in range(n)]
        floor = [min(full[i], max(t.sizeHintForColumn(i) + 10, 40)) for i in range(n)]
        floor[-1] = full[-1]   # the key metric the user chose keeps its whole header
        avail = t.viewport().width()
        if avail <= 0:
            return
        total = sum(full)
        if total <= avail:
            widths = full[:-1] + [full[-1] + avail - total]
        else:
            slack = sum(f - m for f, m in zip(full, floor, strict=True))
            cut = total - avail
            if slack >= cut:
                widths = [f - int(np.ceil((f - m) * cut / slack)) for f, m in zip(full, floor, strict=True)]
            else:   # even the values do not fit: shrink all in proportion (values elided)
                widths = [max(24, int(m * avail / max(sum(floor), 1))) for m in floor]
            over = sum(widths) - avail
            if over > 0:
                widths[int(np.argmax(widths))] -= over
        for i, wd in enumerate(widths):
            h.resizeSection(i, wd)
        for i in range(n):
            item = t.horizontalHeaderItem(i)
            if item is not None and not item.toolTip():
                item.setToolTip(item.text())

    def table_height(self, rows: int) -> int:
        """Height of the sample table showing ``rows`` rows (header, frame, horizontal scroll bar)."""
        t = self.table
        t.resizeRowsToContents()
        row = max([t.rowHeight(i) for i in range(min(t.rowCount(), rows))] or [t.verticalHeader().defaultSectionSize()])
        hbar = t.horizontalScrollBar().sizeHint().height() if t.horizontalScrollBar().isVisible() else 0
        return int(rows * row + t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth() + hbar + 6)

    def _size_table(self) -> None:
        """The table keeps ``TABLE_ROWS`` rows (all of a smaller cohort) in view; the strips give way."""
        n = self.table.rowCount()
        want = self.table_height(min(max(n, 1), TABLE_ROWS))
        self.table.setMinimumHeight(want)
        total = sum(self.splitter.sizes()) or self.splitter.height()
        if total > 0:   # every row while two strips (three beside a long table) keep their room,
            # never fewer than TABLE_ROWS rows
            title = self.strip_title.heightForWidth(max(self.splitter.width(), 200))
            keep = self.strip_scroll.minimumHeight() + (self.strip.row_height() if n > 8 else 0)
            strips = keep + max(title, self.strip_title.minimumSizeHint().height()) + 8
            top = max(want, min(self.table_height(max(n, 1)), total - strips))
            self.splitter.setSizes([top, max(total - top, 1)])

    def visible_rows(self) -> int:
        """Rows of the sample table fully in view now."""
        t = self.table
        h = t.viewport().height()
        return sum(1 for i in range(t.rowCount())
                   if t.rowViewportPosition(i) >= 0 and t.rowViewportPosition(i) + t.rowHeight(i) <= h)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        from qtpy.QtCore import QEvent

        if (obj is self.table.viewport() and event.type() == QEvent.Resize and self.manifest is not None
                and event.size().width() != event.oldSize().width()):
            self.fit_columns()
        return super().eventFilter(obj, event)

    def showEvent(self, event):  # noqa: N802 - Qt API
        super().showEvent(event)
        if self.manifest is not None:   # sizes computed while hidden are not the dock's
            self.fit_columns()
            self._size_table()

    def resizeEvent(self, event):  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self.manifest is not None:
            self.fit_columns()
            self._size_table()

    def _update_strip(self):
        if not self.keys or self.wide is None or self.wide.empty:
            self.strip.set_data([], [])
            self.strip_title.setText("")
            return
        samples = list(self.wide.index)
        resp = self.manifest.table["responder"]
        groups = [_group(resp.get(s)) for s in samples]
        rows = []
        for r, m in self.keys:
            col = f"{m} [{r}]"
            rows.append((short_label(r, m), pd.to_numeric(self.wide[col], errors="coerce").to_numpy(float), groups))
        self.strip.set_data(samples, rows)
        self.strip_title.setText(f"Where the sample sits: <span style='color:{R_COLOR}'>●</span> responder, "
                                 f"<span style='color:{NR_COLOR}'>●</span> non-responder, ○ this sample; "
                                 "each strip runs from the cohort's lowest to its highest value.")

    # -------------------------------------------------------------- selection and opening
    def sample_at(self, row: int) -> str | None:
        item = self.table.item(row, 0)
        return None if item is None else item.data(Qt.UserRole)

    def select_sample(self, sid: str) -> None:
        for i in range(self.table.rowCount()):
            if self.sample_at(i) == sid:
                self.table.selectRow(i)
                self.table.scrollToItem(self.table.item(i, 0))
                break
        self.strip.set_current(sid)

    def _selection_changed(self):
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.strip.set_current(self.sample_at(rows[0].row()))

    def _double_clicked(self, row: int, _col: int):
        sid = self.sample_at(row)
        if sid:
            self.open_sample(sid)

    def open_sample(self, sid: str):
        """Read sample ``sid`` in a worker and add it to the viewer; returns the worker."""
        from napari.qt.threading import create_worker

        from ..cohort.batch import read_cohort_sample

        if self.manifest is None or sid not in self.manifest.table.index:
            self._error(f"{sid!r} is not a sample of the loaded cohort.")
            return None
        row = self.manifest.row_dict(sid)
        self.status.setText(f"Opening {sid}…")
        worker = create_worker(read_cohort_sample, row, _progress={"desc": f"Opening {sid}", "total": 0})
        worker.returned.connect(lambda s, sid=sid: self._on_loaded(sid, s))
        worker.errored.connect(lambda err, sid=sid: self._on_error(sid, err))
        self._worker = worker
        worker.start()
        return worker

    def _on_loaded(self, sid: str, sample):
        from .progressive import add_samples_progressively

        sample.metadata.update({k: v for k, v in self.manifest.row_dict(sid).items()
                                if k in ("patient", "trial", "indication", "timepoint", "response", "crs_grade",
                                         "icans_grade") and v not in (None, "")})
        add_samples_progressively(self.viewer, [sample])
        self._opened[sid] = self.session.register(sample)
        self.select_sample(sid)
        self.status.setText(f"Opened {sid} ({sample.n_cells:,} cells).")

    def _on_error(self, sid: str, err):
        from ..model import SampleError

        msg = str(err) if isinstance(err, SampleError) else f"{type(err).__name__}: {err}"
        self._error(f"Could not open {sid}: {msg}")

    def _error(self, message: str):
        self.status.setText(message)
        notify(message, "error")
