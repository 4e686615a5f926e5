"""The Analysis dock's "Results" tab: the result shown (one region, or one against another), its
plot with the theme's colours, its table, and exports (PNG / SVG / CSV)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...analysis import plotting
from ...analysis.results import STATISTICS, AnalysisResult
from ...model.atomic import atomic_write

log = logging.getLogger(__name__)


class Canvas(QWidget):
    """A matplotlib figure in the dock."""

    def __init__(self, theme: dict, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.theme = theme
        self.fig = Figure(figsize=(5.2, 3.9), dpi=100, facecolor=theme["bg"], layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.fig)
        self.canvas.setMinimumHeight(360)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)


class ResultsTab(QWidget):
    """Region (vs region), plot, table, exports, and what the result was computed with."""

    def __init__(self, dock, theme: dict):
        super().__init__()
        self.dock = dock
        self.theme = theme
        #: the result shown (None before the first)
        self.current: AnalysisResult | None = None
        rl = QVBoxLayout(self)
        top = QHBoxLayout()
        self.region_a = QComboBox()
        self.region_b = QComboBox()
        top.addWidget(QLabel("Region"))
        top.addWidget(self.region_a, 1)
        top.addWidget(QLabel("vs"))
        top.addWidget(self.region_b, 1)
        rl.addLayout(top)
        self.canvas = Canvas(theme)
        rl.addWidget(self.canvas, 3)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(120)
        rl.addWidget(self.table, 1)
        ex = QHBoxLayout()
        self.png_btn, self.svg_btn, self.csv_btn = QPushButton("PNG"), QPushButton("SVG"), QPushButton("CSV")
        ex.addWidget(QLabel("Export"))
        for b in (self.png_btn, self.svg_btn, self.csv_btn):
            ex.addWidget(b)
        rl.addLayout(ex)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        rl.addWidget(self.info)
        self.region_a.currentIndexChanged.connect(self.redraw)
        self.region_b.currentIndexChanged.connect(self.redraw)
        self.png_btn.clicked.connect(lambda: self._export_dialog("png"))
        self.svg_btn.clicked.connect(lambda: self._export_dialog("svg"))
        self.csv_btn.clicked.connect(lambda: self._export_dialog("csv"))

    def show_result(self, result: AnalysisResult | None):
        self.current = result
        for c in (self.region_a, self.region_b):
            c.blockSignals(True)
            c.clear()
        if result is not None:
            self.region_a.addItems(result.regions)
            self.region_b.addItem("—")
            self.region_b.addItems(result.regions)
        for c in (self.region_a, self.region_b):
            c.blockSignals(False)
        self.redraw()

    def compare_with(self, region_a: str, region_b: str | None) -> None:
        self.region_a.setCurrentText(region_a)
        self.region_b.setCurrentText(region_b or "—")
        self.redraw()

    def _regions(self, r: AnalysisResult) -> tuple[str, str | None]:
        a = self.region_a.currentText() or r.regions[0]
        b = self.region_b.currentText()
        return a, None if b in ("", "—") else b

    def redraw(self, *_):
        fig = self.canvas.fig
        r = self.current
        if r is None:
            fig.clear()
            self.canvas.canvas.draw_idle()
            self.table.setRowCount(0)
            self.info.setText("")
            return
        a, b = self._regions(r)
        try:
            plotting.plot_result(fig, r, a, compare=b, theme=self.theme)
        except (KeyError, ValueError, IndexError) as err:
            fig.clear()
            log.warning("cannot plot %s: %s", r.statistic, err)
        self.canvas.canvas.draw_idle()
        self._fill_table(r, a)
        g = r.params.get("graph")
        gtxt = f" · graph {g['method']}" if g else ""
        self.info.setText(f"{STATISTICS.get(r.statistic, r.statistic)} · regions {', '.join(r.regions)} · "
                          f"{r.time} · seed {r.params.get('seed')}{gtxt}")

    def _fill_table(self, r: AnalysisResult, region: str):
        name = next(iter(r.tables))
        if r.statistic == "cart":
            df = r.tables["metrics"].pivot(index="metric", columns="region", values="value")
            df = df.reindex(list(dict.fromkeys(r.tables["metrics"]["metric"])))
            df = df.reset_index()
        else:
            df = r.tables[name]
            if "region" in df and region in set(df["region"]):
                df = df[df["region"] == region]
            df = df.head(500)
        self.table.setColumnCount(df.shape[1])
        self.table.setRowCount(df.shape[0])
        self.table.setHorizontalHeaderLabels([str(c) for c in df.columns])
        for i, row in enumerate(df.itertuples(index=False)):
            for j, v in enumerate(row):
                txt = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
                self.table.setItem(i, j, QTableWidgetItem(txt))
        self.table.resizeColumnsToContents()

    def export(self, path, kind: str | None = None) -> list[Path]:
        """Write the shown figure (``png``/``svg``) or all tables (``csv``: one file per table)."""
        r = self.current
        if r is None:
            raise ValueError("no result to export")
        path = Path(path)
        kind = kind or path.suffix.lstrip(".").lower()
        if kind in ("png", "svg"):
            a, b = self._regions(r)
            plotting.save_figure(r, a, path.with_suffix(f".{kind}"), compare=b)
            return [path.with_suffix(f".{kind}")]
        out = []
        for name, df in r.tables.items():
            p = path.with_name(f"{path.stem}_{name}.csv")
            atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
            out.append(p)
        return out

    def _export_dialog(self, kind: str):
        if self.current is None:
            notify("Run or select a result first.", "error")
            return
        fn, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"{self.current.statistic}.{kind}",
                                            f"{kind.upper()} (*.{kind})")
        if fn:
            files = self.export(fn, kind)
            notify(f"Wrote {', '.join(p.name for p in files)}")
