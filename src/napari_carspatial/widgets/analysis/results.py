"""The Analysis dock's "Results" tab: the result shown (one region, or one against another), its
figure in the legend's colours, its table in plain words with intervals, the engaged cell pairs
of a ligand-receptor result on the slide, and exports (PNG / SVG / CSV)."""

from __future__ import annotations

import logging
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...analysis import plotting
from ...analysis.results import PUBLISHED, STATISTICS, AnalysisResult
from ...model.atomic import atomic_write
from .._common import vertical_scroll

log = logging.getLogger(__name__)

#: statistics whose figure has one panel per type (the "Around" and "Types" choices apply)
PER_TYPE = ("cooccurrence", "ripley")
#: statistics drawn as type x type matrices (the "Types" choice applies)
MATRIX = ("nhood", "interactions", "nn_distances", "touching", "count_within", "nearest", "centrality")
#: smallest figure height, px: a 5-type matrix or a co-occurrence panel stays readable
FIGURE_MIN_PX = 240
#: the figure's own height, px (5.2 x 4.6 in at 100 dpi)
FIGURE_NATURAL_PX = 460
#: smallest height of the result table, px (header and ~3 rows; the tab scrolls for more)
TABLE_MIN_PX = 96


class Canvas(QWidget):
    """A matplotlib figure in the dock."""

    def __init__(self, theme: dict, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.theme = theme
        self.fig = Figure(figsize=(5.2, 4.6), dpi=100, facecolor=theme["bg"], layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.fig)
        self.canvas.setMinimumHeight(FIGURE_MIN_PX)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)


class ResultsTab(QWidget):
    """Region (vs region), figure choices, figure, table, engaged pairs, exports, provenance."""

    def __init__(self, dock, theme: dict):
        super().__init__()
        self.dock = dock
        self.theme = theme
        #: the result shown (None before the first)
        self.current: AnalysisResult | None = None
        #: the types shown (None: all, the most informative first)
        self.types: list[str] | None = None
        # the tab scrolls when the dock is short (the Analyse workflow at 1000 px of height shares
        # the column with the Legend): the dock never forces the window taller than the screen
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        body = QWidget()
        self.scroll = vertical_scroll(body)
        outer.addWidget(self.scroll)
        rl = QVBoxLayout(body)
        rl.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.region_a = QComboBox()
        self.region_b = QComboBox()
        self.region_b.setToolTip("compare with another region: differences with 95% intervals")
        top.addWidget(QLabel("Region"))
        top.addWidget(self.region_a, 1)
        top.addWidget(QLabel("vs"))
        top.addWidget(self.region_b, 1)
        rl.addLayout(top)
        opts = QHBoxLayout()
        self.view_label = QLabel("View")
        self.view_combo = QComboBox()
        self.focus_label = QLabel("Around")
        self.focus_combo = QComboBox()
        self.focus_combo.setToolTip("the cell type the co-occurrence (Ripley) panels are centred on")
        self.types_btn = QToolButton()
        self.types_btn.setText("Types: all")
        self.types_btn.setPopupMode(QToolButton.InstantPopup)
        self.test_label = QLabel("Test")
        self.test_combo = QComboBox()
        for w in (self.view_label, self.view_combo, self.focus_label, self.focus_combo, self.test_label,
                  self.test_combo):
            opts.addWidget(w)
        opts.addWidget(self.types_btn)
        opts.addStretch(1)
        rl.addLayout(opts)
        self.canvas = Canvas(theme)
        rl.addWidget(self.canvas, 4)
        # the figure fills what the tab shows below the choices (whole, axes included, without
        # scrolling); the table, exports and provenance follow below it
        self.scroll.viewport().installEventFilter(self)

        lr = QHBoxLayout()
        self.pair_combo = QComboBox()
        self.combo_combo = QComboBox()
        self.show_btn = QPushButton("Show on slide")
        self.show_btn.setToolTip("draw the engaged sender → receiver cells (neighbours expressing the ligand and "
                                 "the receptor) as arrows between their centres")
        lr.addWidget(self.pair_combo, 1)
        lr.addWidget(self.combo_combo, 1)
        lr.addWidget(self.show_btn)
        self.ligrec_row = QWidget()
        self.ligrec_row.setLayout(lr)
        lr.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.ligrec_row)
        self.engaged_info = QLabel("")
        self.engaged_info.setWordWrap(True)
        rl.addWidget(self.engaged_info)

        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(TABLE_MIN_PX)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(False)
        rl.addWidget(self.table, 2)
        ex = QHBoxLayout()
        self.png_btn, self.svg_btn, self.csv_btn = QPushButton("PNG"), QPushButton("SVG"), QPushButton("CSV")
        ex.addWidget(QLabel("Export"))
        for b in (self.png_btn, self.svg_btn, self.csv_btn):
            ex.addWidget(b)
        rl.addLayout(ex)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #9aa1a9")
        rl.addWidget(self.info)
        for c in (self.region_a, self.region_b, self.view_combo, self.focus_combo, self.test_combo):
            c.currentIndexChanged.connect(self.redraw)
        self.region_a.currentIndexChanged.connect(self._fill_pairs)
        self.pair_combo.currentIndexChanged.connect(self._fill_combos)
        self.pair_combo.currentIndexChanged.connect(self.redraw)
        self.show_btn.clicked.connect(lambda: self.dock.show_engaged())
        self.png_btn.clicked.connect(lambda: self._export_dialog("png"))
        self.svg_btn.clicked.connect(lambda: self._export_dialog("svg"))
        self.csv_btn.clicked.connect(lambda: self._export_dialog("csv"))
        self._controls(None)

    # ------------------------------------------------------------------ what is shown
    def show_result(self, result: AnalysisResult | None):
        self.current = result
        combos = (self.region_a, self.region_b, self.focus_combo, self.test_combo, self.view_combo)
        for c in combos:
            c.blockSignals(True)
            c.clear()
        if result is not None:
            regions = list(result.regions)
            self.region_a.addItems(regions)
            self.region_b.addItem("—")
            self.region_b.addItems(regions)
            cats = self._categories(result)
            self.focus_combo.addItems(cats)
            focus = plotting.default_focus(result)
            if focus in cats:
                self.focus_combo.setCurrentText(focus)
            for t in ("spatial", "cluster"):
                if t in result.tables:
                    self.test_combo.addItem({"spatial": "neighbours", "cluster": "cell types"}[t], t)
            views = {"cart": plotting.CART_VIEWS, "ligrec": plotting.LIGREC_VIEWS}.get(result.statistic, {})
            for k, t in views.items():
                self.view_combo.addItem(t, k)
            if result.statistic == "ligrec":
                t = result.tables.get("spatial", result.tables.get("cluster"))
                n = 0 if t is None else len(set(zip(t["ligand"], t["receptor"], strict=True)))
                self.view_combo.setCurrentIndex(self.view_combo.findData("pair" if n <= 2 else "dots"))
        for c in combos:
            c.blockSignals(False)
        self.types = None
        self._controls(result)
        self._fill_pairs()
        self.redraw()

    @staticmethod
    def _categories(result) -> list[str]:
        cols = list((result.params or {}).get("colors") or {})
        if cols:
            return cols
        for name, c in (("cooccurrence", "cell_type"), ("ripley", "cell_type"), ("log2_oe", "row")):
            if name in result.tables:
                return [str(x) for x in dict.fromkeys(result.tables[name][c])]
        return []

    def _controls(self, r) -> None:
        st = r.statistic if r is not None else None
        for w in (self.view_label, self.view_combo):
            w.setVisible(st in ("cart", "ligrec"))
        for w in (self.focus_label, self.focus_combo):
            w.setVisible(st in PER_TYPE)
        for w in (self.test_label, self.test_combo):
            w.setVisible(st == "ligrec" and self.test_combo.count() > 1)
        self.types_btn.setVisible(st in PER_TYPE or st in MATRIX)
        self.ligrec_row.setVisible(st == "ligrec")
        self.engaged_info.setVisible(st == "ligrec")
        if st in PER_TYPE or st in MATRIX:
            self._types_menu(r)

    def _types_menu(self, r) -> None:
        menu = QMenu(self)
        cats = self._categories(r)
        allact = menu.addAction("All types")
        allact.triggered.connect(lambda: self.set_types(None))
        menu.addSeparator()
        for c in cats:
            a = menu.addAction(c)
            a.setCheckable(True)
            a.setChecked(self.types is not None and c in self.types)
            a.toggled.connect(lambda on, c=c: self._toggle_type(c, on))
        self.types_btn.setMenu(menu)
        self.types_btn.setText("Types: all" if not self.types else f"Types: {len(self.types)}")

    def set_types(self, types: list[str] | None) -> None:
        """Show only these types (``None``: all, the most informative first)."""
        self.types = list(types) if types else None
        if self.current is not None:
            self._types_menu(self.current)
        self.redraw()

    def _toggle_type(self, c: str, on: bool) -> None:
        t = list(self.types or [])
        if on and c not in t:
            t.append(c)
        if not on and c in t:
            t.remove(c)
        self.set_types(t)

    def compare_with(self, region_a: str, region_b: str | None) -> None:
        """Show ``region_a`` (against ``region_b``; ``None``: alone), one redraw."""
        for c, v in ((self.region_a, region_a), (self.region_b, region_b or "—")):
            c.blockSignals(True)
            c.setCurrentText(v)
            c.blockSignals(False)
        self._fill_pairs()
        self.redraw()

    def _regions(self, r: AnalysisResult) -> tuple[str, str | None]:
        a = self.region_a.currentText() or r.regions[0]
        b = self.region_b.currentText()
        return a, None if b in ("", "—") else b

    def plot_options(self) -> dict:
        """The figure's options as the dock's controls set them (``plot_result`` keywords)."""
        r = self.current
        if r is None:
            return {}
        opts = {"colors": self.dock.legend_colors(), "types": self.types}
        if r.statistic in PER_TYPE:
            opts["focus"] = self.focus_combo.currentText() or None
        if r.statistic == "cart":
            opts["view"] = self.view_combo.currentData() or "all"
        if r.statistic == "ligrec":
            if self.test_combo.count():
                opts["test"] = self.test_combo.currentData()
            opts["view"] = self.view_combo.currentData()
            opts["pair"] = self.pair_combo.currentData()
        return opts

    def replot(self) -> None:
        """Draw the figure of the shown result again (the table is left as it is)."""
        fig, r = self.canvas.fig, self.current
        if r is None:
            return
        a, b = self._regions(r)
        try:
            plotting.plot_result(fig, r, a, compare=b, theme=self.theme, **self.plot_options())
        except (KeyError, ValueError, IndexError) as err:
            fig.clear()
            log.warning("cannot plot %s: %s", r.statistic, err)
            fig.text(0.5, 0.5, f"cannot draw this result: {err}", ha="center", va="center", color=self.theme["text"],
                     wrap=True)
        self.canvas.canvas.draw_idle()

    def showEvent(self, event):  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self.fit_figure)   # positions are only right once the tab is laid out

    def redraw(self, *_):
        QTimer.singleShot(0, self.fit_figure)   # the choices above the figure change with the statistic
        fig = self.canvas.fig
        r = self.current
        if r is None:
            fig.clear()
            self.canvas.canvas.draw_idle()
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            self.info.setText("")
            return
        a, b = self._regions(r)
        self.replot()
        self._fill_table(r, a, b)
        g = r.params.get("graph")
        gtxt = ""
        if g:
            gtxt = f" · graph {g['method']}" + (f" ({g.get('contact')})" if g.get("method") == "contact" else "")
        px = r.params.get("pixel_size_um")
        ivtxt = ""
        for name in ("intervals", "log2_oe"):
            if name in r.tables and "method" in r.tables[name]:
                methods = sorted({str(m).split(" (")[0] for m in r.tables[name]["method"] if str(m)})
                ivtxt = f" · 95% intervals: {', '.join(methods)}" if methods else ""
        self.info.setText(f"{STATISTICS.get(r.statistic, PUBLISHED.get(r.statistic, r.statistic))} · cell types {r.params.get('cluster_key')} · "
                          f"regions {', '.join(r.regions)} · pixel {px if px else 'unknown'} µm · {r.time[:16]} UTC"
                          f" · seed {r.params.get('seed')}{gtxt}{ivtxt}")

    def _fill_table(self, r: AnalysisResult, region: str, compare: str | None):
        opts = self.plot_options()
        try:
            df = plotting.display_table(r, region, compare, focus=opts.get("focus"), test=opts.get("test"),
                                        compact=True)
        except (KeyError, ValueError) as err:
            log.warning("no table for %s: %s", r.statistic, err)
            df = None
        self.table.clear()
        if df is None:
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            return
        self.table.setColumnCount(df.shape[1])
        self.table.setRowCount(df.shape[0])
        self.table.setHorizontalHeaderLabels([str(c) for c in df.columns])
        note_col = list(df.columns).index("Note") if "Note" in df.columns else None
        if note_col is not None:   # the notes speak the command line; here the Roles tab maps roles
            df = df.assign(Note=df["Note"].astype(str).str.replace(
                "(see roles.json; map with roles= / --roles)", "(map it in the Roles tab)", regex=False))
        for i, row in enumerate(df.itertuples(index=False)):
            note = str(row[note_col]) if note_col is not None else ""
            for j, v in enumerate(row):
                it = QTableWidgetItem(str(v))
                if note and j != note_col:
                    it.setToolTip(note)
                if j > 0:
                    it.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter) if j != note_col else
                                        int(Qt.AlignLeft | Qt.AlignVCenter))
                self.table.setItem(i, j, it)
        self.table.resizeColumnsToContents()
        first = self.table.columnWidth(0)
        if df.shape[1] > 1 and first > 190:   # long plain labels wrap instead of pushing the values out of view
            self.table.setColumnWidth(0, 190)
        if note_col is not None:
            self.table.setColumnWidth(note_col, min(self.table.columnWidth(note_col), 260))
        self.table.resizeRowsToContents()

    # ------------------------------------------------------------------ ligand-receptor
    def _ligrec_rows(self):
        r = self.current
        if r is None or r.statistic != "ligrec" or "spatial" not in r.tables:
            return None
        a, _ = self._regions(r)
        t = plotting.ligrec_table(r, a, "spatial")
        return t[t["pvalue"].notna()].sort_values("pvalue", kind="stable")

    def _fill_pairs(self, *_) -> None:
        self.pair_combo.blockSignals(True)
        self.pair_combo.clear()
        t = self._ligrec_rows()
        if t is not None:
            for lig, rec in dict.fromkeys(zip(t["ligand"].astype(str), t["receptor"].astype(str), strict=True)):
                self.pair_combo.addItem(f"{lig} → {rec}", (lig, rec))
        self.pair_combo.blockSignals(False)
        self._fill_combos()
        self.ligrec_row.setVisible(self.current is not None and self.current.statistic == "ligrec"
                                   and self.pair_combo.count() > 0)

    def _fill_combos(self, *_):
        self.combo_combo.clear()
        t = self._ligrec_rows()
        pair = self.pair_combo.currentData()
        if t is None or pair is None:
            self.show_btn.setEnabled(False)
            return
        d = t[(t["ligand"].astype(str) == pair[0]) & (t["receptor"].astype(str) == pair[1])]
        for s, rcv, p in zip(d["sender"].astype(str), d["receiver"].astype(str), d["pvalue"], strict=True):
            self.combo_combo.addItem(f"{s} → {rcv}  (p {p:.2g})", (s, rcv))
        self.show_btn.setEnabled(self.combo_combo.count() > 0)

    def engaged_choice(self) -> dict | None:
        """The ligand, receptor, sender, receiver and region chosen for "Show on slide"."""
        pair, combo = self.pair_combo.currentData(), self.combo_combo.currentData()
        if self.current is None or pair is None or combo is None:
            return None
        a, _ = self._regions(self.current)
        return {"ligand": pair[0], "receptor": pair[1], "sender": combo[0], "receiver": combo[1], "region": a}

    def choose_engaged(self, ligand: str, receptor: str, sender: str, receiver: str) -> bool:
        """Select this pair and sender → receiver in the combos (False when it was not tested)."""
        i = next((k for k in range(self.pair_combo.count()) if self.pair_combo.itemData(k) == (ligand, receptor)), -1)
        if i < 0:
            return False
        self.pair_combo.setCurrentIndex(i)
        j = next((k for k in range(self.combo_combo.count()) if self.combo_combo.itemData(k) == (sender, receiver)), -1)
        if j < 0:
            return False
        self.combo_combo.setCurrentIndex(j)
        return True

    # ------------------------------------------------------------------ exports
    def export(self, path, kind: str | None = None) -> list[Path]:
        """Write the shown figure (``png``/``svg``) or all tables (``csv``: one file per table)."""
        r = self.current
        if r is None:
            raise ValueError("no result to export")
        path = Path(path)
        kind = kind or path.suffix.lstrip(".").lower()
        if kind in ("png", "svg"):
            a, b = self._regions(r)
            opts = self.plot_options()
            plotting.save_figure(r, a, path.with_suffix(f".{kind}"), compare=b, colors=opts.get("colors"))
            return [path.with_suffix(f".{kind}")]
        out = []
        for name, df in r.tables.items():
            p = path.with_name(f"{path.stem}_{name}.csv")
            atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
            out.append(p)
        return out

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        from qtpy.QtCore import QEvent

        if obj is self.scroll.viewport() and event.type() == QEvent.Resize:
            self.fit_figure()
        return super().eventFilter(obj, event)

    def fit_figure(self) -> None:
        """The figure as tall as the visible part of the tab below the choices (at least
        :data:`FIGURE_MIN_PX`): the whole figure is in view when the tab is scrolled to the top."""
        try:
            body = self.scroll.widget()
        except RuntimeError:   # the dock is closing
            return
        if not self.isVisible():
            return
        c = self.canvas
        top = c.mapTo(body, c.rect().topLeft()).y()
        view = self.scroll.viewport().height()
        rest = body.layout().minimumSize().height() - c.minimumHeight()   # choices, table, exports
        if view >= rest + FIGURE_NATURAL_PX:   # a tall tab: no scrolling, the figure takes the room
            lo, hi = FIGURE_MIN_PX, 16777215
        else:   # a short tab scrolls: the figure exactly fills what is in view below the choices
            lo = hi = max(FIGURE_MIN_PX, min(view - top - 6, FIGURE_NATURAL_PX))
        if (c.minimumHeight(), c.maximumHeight()) != (lo, hi):
            c.setMinimumHeight(lo)
            c.setMaximumHeight(hi)

    def _export_dialog(self, kind: str):
        if self.current is None:
            notify("Run or select a result first.", "error")
            return
        fn, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"{self.current.statistic}.{kind}",
                                            f"{kind.upper()} (*.{kind})")
        if fn:
            files = self.export(fn, kind)
            notify(f"Wrote {', '.join(p.name for p in files)}")
