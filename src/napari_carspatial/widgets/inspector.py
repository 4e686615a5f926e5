"""The "Cell inspector" dock: click a cell to pin its details; jump to ids; step through a type."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .._napari import (
    NEIGHBOR_RADIUS_UM,
    STRUCTURE,
    CellIndex,
    categorical_columns,
    cell_info,
    cell_zoom,
    center_on,
    find_cell_type_key,
    intensity_unit,
    label_at,
    notify,
    ring_marker_layer,
    session_for,
    status_line,
)
from ._common import BusyNotice, refill_sample_combo

log = logging.getLogger(__name__)

#: genes listed for a cell of a gene panel (the inspector's "top genes")
TOP_GENES = 12
#: height of a marker row (px): compact, still one line of the default font
ROW_PX = 18
#: cache dependency of the marker 99th percentiles: no ``obs`` column (an edit of named columns,
#: e.g. a curation, keeps them); any change that may touch ``X`` (``columns=None``, rows) drops them
X_DEP = "<X>"
#: tables of at least this many cells get their marker 99th percentiles in a worker when the
#: sample is chosen (smaller ones take milliseconds on the first pin)
PREFETCH_MIN_CELLS = 50_000


class Section(QWidget):
    """A titled part of the dock that folds away (a click on its title)."""

    def __init__(self, title: str, body: QWidget, *, expanded: bool = True, parent=None):
        super().__init__(parent)
        self.body = body
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.setToolTip(f"Show or hide {title.lower()}")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title_row = QHBoxLayout()
        self.title_row.setContentsMargins(0, 0, 0, 0)
        self.title_row.addWidget(self.toggle)
        self.title_row.addStretch(1)
        lay.addLayout(self.title_row)
        lay.addWidget(body)
        self.toggle.toggled.connect(self.set_expanded)
        self.set_expanded(expanded)

    def set_expanded(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        if self.toggle.isChecked() != on:
            self.toggle.setChecked(on)
        self.body.setVisible(on)

    def expanded(self) -> bool:
        return self.toggle.isChecked()


class _BarChart(QWidget):
    """Horizontal bar chart of one cell's marker means (matplotlib)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 2.0), dpi=90, facecolor="#262930")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.stale = False    # drawn into while hidden: rendered when next shown

    def _render(self) -> None:
        """Render the figure, now when the chart is on screen, else when it is next shown: the
        chart is a tab beside the marker table, and matplotlib renders a hidden canvas anyway
        (~75 ms of every pin on the GUI thread at 10^6 cells, for a chart nobody saw)."""
        if self.isVisible():
            self.stale = False
            self.canvas.draw_idle()
        else:
            self.stale = True

    def showEvent(self, event):  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self.stale:
            self.stale = False
            self.canvas.draw_idle()

    def plot(self, names, values, reference=None):
        """Draw one cell's bars. The axes are laid out once per marker panel: the next cell of the
        same panel only moves the bars' ends (and the x range), which looks the same as drawing
        it afresh (``tests/gui/test_interact_inspector_gui.py`` compares the two)."""
        names = [str(n) for n in names]
        values = np.asarray(values, dtype=float)
        if reference is not None:
            # the cell's mean relative to the 99th percentile of that marker in the sample
            rel = np.divide(values, reference, out=np.zeros_like(values, dtype=float), where=reference > 0)
            widths = np.clip(rel, 0, 1.5)
        else:
            widths = values
        layout = (tuple(names), reference is not None)
        bars = getattr(self, "_bars", None)
        if bars is not None and getattr(self, "_layout", None) == layout:
            for rect, w in zip(bars, widths, strict=True):
                rect.set_width(float(w))
            if reference is None:
                self.ax.relim()
                self.ax.autoscale_view()
            self._render()
            return
        ax = self.ax
        ax.clear()
        ax.set_facecolor("#262930")
        y = np.arange(len(names))
        if reference is not None:
            self._bars = ax.barh(y, widths, color="#6fb3ff")
            ax.set_xlim(0, 1.5)
            ax.set_xlabel("mean / sample 99th pct", color="#ddd", fontsize=8)
        else:
            self._bars = ax.barh(y, widths, color="#6fb3ff")
        self._layout = layout
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=7, color="#ddd")
        ax.invert_yaxis()
        ax.tick_params(axis="x", colors="#ddd", labelsize=7)
        for s in ax.spines.values():
            s.set_color("#888")
        self.figure.tight_layout()
        self._render()


class InspectorWidget(QWidget):
    """Pin a cell by clicking it; show its id, types, area, centroid, markers and neighbours."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._current: tuple[str, int] | None = None
        self._prefetching: dict = {}   # (sid, id(X)) -> the worker computing its marker p99

        self.sample_combo = QComboBox()
        self.hint = QLabel("Click a cell on the slide to pin it here.")
        self.hint.setWordWrap(True)

        # compact: the marker table gets the height (>= 10 rows at 1600 x 1000 in Review, issue 14);
        # "Find cells" and the cell's details fold away, the bar chart is a tab beside the table
        self.id_edit = QLineEdit()
        self.id_edit.setPlaceholderText("cell id")
        self.go_button = QPushButton("Go")
        self.go_button.setToolTip("Centre the slide on this cell and pin it")
        self.type_key = QComboBox()
        self.type_key.setToolTip("The column to step through (a cell type, a region, …)")
        self.category = QComboBox()
        self.category.setToolTip("Step through the cells of this category")
        for combo in (self.type_key, self.category):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
        self.prev_button = QPushButton("◀")
        self.prev_button.setToolTip("Previous cell of this category")
        self.next_button = QPushButton("▶")
        self.next_button.setToolTip("Next cell of this category")
        for b in (self.prev_button, self.next_button):
            b.setStyleSheet("QPushButton { padding-left: 6px; padding-right: 6px; }")
        self.step_label = QLabel("")
        self.step_label.setToolTip("Position of the pinned cell among the cells of this category")
        nav = QWidget()
        nl = QFormLayout(nav)
        nl.setContentsMargins(0, 0, 0, 0)
        nl.setVerticalSpacing(4)
        r1 = QHBoxLayout()
        r1.addWidget(self.id_edit, 1)
        r1.addWidget(self.go_button)
        nl.addRow("Jump to", r1)
        r2 = QHBoxLayout()
        r2.setSpacing(4)
        r2.addWidget(self.type_key, 1)
        r2.addWidget(self.category, 1)
        r2.addWidget(self.prev_button)
        r2.addWidget(self.next_button)
        nl.addRow("Step", r2)
        self.nav_section = Section("Find cells", nav)
        self.nav_section.title_row.addWidget(self.step_label)

        self.header = QLabel("")
        self.header.setTextFormat(Qt.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.neighbors = QLabel("")
        self.neighbors.setWordWrap(True)
        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.setSpacing(2)
        dl.addWidget(self.header)
        dl.addWidget(self.neighbors)
        self.details_section = Section("Cell", details)
        self.details_section.setVisible(False)   # shown once a cell is pinned
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["marker", "mean", "% of p99"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setMinimumSectionSize(ROW_PX)
        self.table.verticalHeader().setDefaultSectionSize(ROW_PX)     # compact rows
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        for c in (1, 2):
            self.table.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.table.horizontalHeaderItem(2).setToolTip("the cell's mean relative to the 99th percentile of that "
                                                      "marker over the sample's cells")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(6 * ROW_PX)
        self.chart = _BarChart()
        self.values_tabs = QTabWidget()
        self.values_tabs.addTab(self.table, "Markers")
        self.values_tabs.addTab(self.chart, "Chart")
        self.values_tabs.setTabToolTip(1, "The cell's marker means as bars, relative to the sample's 99th percentile")
        self.values_tabs.setVisible(False)   # shown once a cell is pinned

        self.busy_notice = BusyNotice(self.session, self._sid)
        lay = QVBoxLayout(self)
        lay.setSpacing(4)
        top = QHBoxLayout()
        top.addWidget(QLabel("Sample"))
        top.addWidget(self.sample_combo, 1)
        lay.addLayout(top)
        lay.addWidget(self.busy_notice)
        lay.addWidget(self.nav_section)
        lay.addWidget(self.hint)
        lay.addWidget(self.details_section)
        lay.addWidget(self.values_tabs, 1)
        lay.addStretch(0)

        self.go_button.clicked.connect(self._jump)
        self.id_edit.returnPressed.connect(self._jump)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.sample_combo.currentIndexChanged.connect(self._sample_changed)
        self.type_key.currentTextChanged.connect(self._fill_categories)
        self.session.events.sample_added.connect(self._refresh_samples)
        self.session.events.sample_removed.connect(self._refresh_samples)
        self.session.events.table_changed.connect(self._on_table_changed)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self._refresh_samples()

    # ------------------------------------------------------------------ samples
    def _refresh_samples(self, event=None):
        changed, _ = refill_sample_combo(self.sample_combo, self.session, where=lambda s: s.table is not None)
        if changed:   # other layers coming and going: keep the reviewer's choices
            self._sample_changed()

    def _on_table_changed(self, event):
        if event.structure and self.sample_combo.findData(event.sid) < 0:
            self._refresh_samples()        # a sample just got its table (Measure cells)
        if event.sid != self._sid():
            return
        if event.structure or event.columns is None or self.type_key.currentText() in event.columns:
            self._fill_categories()   # the counts per category follow
        if event.structure or event.columns is None:
            self._prefetch_reference(event.sid)   # X may have changed: its percentiles were dropped

    def _sid(self) -> str | None:
        return self.sample_combo.currentData()

    def _labels_layer(self, sid):
        return self.session.labels_layer(sid)

    def index(self, sid: str) -> CellIndex:
        """The sample's cell index (cached in the session until its rows change)."""
        return self.session.cached(sid, ("table", STRUCTURE, "cell_index"), lambda: CellIndex(self.session.sample(sid)))

    def _sample_changed(self, *_):
        sid = self._sid()
        self.busy_notice.update_state()
        self._prefetch_reference(sid)
        self.type_key.blockSignals(True)
        self.type_key.clear()
        if sid and self.session.sample(sid) is not None:
            t = self.session.sample(sid).table
            cols = categorical_columns(t)
            self.type_key.addItems(cols)
            guess = find_cell_type_key(t)
            if guess in cols:
                self.type_key.setCurrentText(guess)
        self.type_key.blockSignals(False)
        self._fill_categories()

    def _fill_categories(self, *_):
        """The categories of the chosen column with their counts; after an edit of the column
        (the same categories) only the counts change, in place, and the choice stays."""
        keep = self.category.currentData()
        sid, key = self._sid(), self.type_key.currentText()
        if not sid or not key or self.session.sample(sid) is None or key not in self.session.sample(sid).table.obs:
            self.category.clear()
            return
        col = self.session.sample(sid).table.obs[key]
        if hasattr(col, "cat"):   # counts on the codes (no strings of 10^6 cells)
            cats = [str(c) for c in col.cat.categories]
            codes = col.cat.codes.to_numpy()
            n = np.bincount(codes[codes >= 0].astype(np.intp), minlength=len(cats))
            counts = dict(zip(cats, (int(v) for v in n), strict=True))
        else:
            text = col.astype(str)
            cats = sorted(text.unique())
            counts = {str(k): int(v) for k, v in text.value_counts().items()}
        labels = [f"{c} ({counts.get(c, 0):,})" for c in cats]
        if [self.category.itemData(i) for i in range(self.category.count())] == cats:
            for i, text in enumerate(labels):
                if self.category.itemText(i) != text:
                    self.category.setItemText(i, text)
            return
        self.category.blockSignals(True)
        self.category.clear()
        for c, text in zip(cats, labels, strict=True):
            self.category.addItem(text, c)
        self.category.blockSignals(False)
        idx = self.category.findData(keep)
        self.category.setCurrentIndex(idx if idx >= 0 else 0 if cats else -1)

    # ------------------------------------------------------------------ actions
    def _on_click(self, viewer, event):
        """Pin the clicked cell; a drag (pan) does not count as a click."""
        if "Shift" in [str(m) for m in getattr(event, "modifiers", [])]:
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if dragged:
            return
        sid = self._sid()
        if not sid:
            return
        lyr = self._labels_layer(sid)
        if lyr is None or not lyr.visible:
            return
        cid = label_at(lyr, event.position)
        if cid is not None:
            self.show_cell(cid, center=False)

    def _jump(self):
        text = self.id_edit.text().strip()
        try:
            cid = int(text)
        except ValueError:
            self._error(f"'{text}' is not a cell id (a whole number).")
            return
        self.show_cell(cid, center=True)

    def step(self, direction: int) -> int | None:
        sid, key = self._sid(), self.type_key.currentText()
        cat = self.category.currentData()
        if not sid or not key or cat is None:
            return None
        idx = self.index(sid)
        cur = self._current[1] if self._current and self._current[0] == sid else None
        found = idx.step_position(key, cat, cur, direction)
        if found is None:
            self._error(f"No cells of type {cat!r} in {self.session.sample(sid).name}.")
            return None
        cid, pos, total = found
        self.step_label.setText(f"{pos:,} / {total:,}")
        self.show_cell(cid, center=True)
        return cid

    def show_cell(self, cell_id: int, *, center: bool = False) -> bool:
        sid = self._sid()
        if not sid:
            return False
        sample = self.session.sample(sid)
        genes = self._gene_table(sid)     # a gene panel: top genes from the sparse row, no dense row
        info = cell_info(self.index(sid), cell_id, type_key=self.type_key.currentText() or None,
                         markers=not genes)
        if info is None:
            self._error(f"Cell {cell_id} is not in the table of {sample.name}.")
            return False
        self._current = (sid, cell_id)
        lyr = self._labels_layer(sid)
        if center and lyr is not None:
            center_on(self.viewer, lyr, info.centroid_px, zoom=cell_zoom(sample))
        if lyr is not None:
            self._mark(sid, lyr, info)
        key = self.type_key.currentText() or None
        shown = ([key] if key in info.types else []) + [k for k in info.types if k != key]
        types = "".join(f" · <b>{k}</b>: {info.types[k]}" for k in shown)   # wrapped lines, not one per field
        where = (f"{info.centroid_um[0]:.1f}, {info.centroid_um[1]:.1f} µm" if info.centroid_um
                 else f"{info.centroid_px[0]:.1f}, {info.centroid_px[1]:.1f} px")
        area = (f"{info.area_um2:.1f} µm²" if info.area_um2 is not None
                else (f"{info.area_px:.0f} px" if info.area_px is not None else "—"))
        self.header.setText(f"<b>Cell {info.cell_id}</b>{types}<br><b>area</b>: {area}"
                            f" · <b>centroid (x, y)</b>: {where}")
        nb = ", ".join(f"{k} ×{v}" for k, v in info.neighbor_types.items())
        self.neighbors.setText(f"<b>Neighbours</b> ({len(info.neighbor_ids)} nearest within "
                               f"{NEIGHBOR_RADIUS_UM:g} µm): {nb or 'none'}")
        values, reference = info.markers, None
        if genes:   # the cell's top genes (its sparse row only, X stays sparse)
            from ..analysis.genes import top_genes

            t = sample.table
            top = top_genes(t, info.row, n=TOP_GENES, layer="counts" if "counts" in t.layers else None)
            values = pd.Series(top["value"].to_numpy(), index=top["gene"].astype(str).to_numpy())
            self.table.setHorizontalHeaderLabels([f"top {TOP_GENES} genes", "counts", ""])
        else:
            reference = self._reference(sid)
            self.table.setHorizontalHeaderLabels(["marker", f"mean ({intensity_unit(sample)})", "% of p99"])
        self.table.setRowCount(len(values))
        for i, (name, val) in enumerate(values.items()):
            self.table.setItem(i, 0, QTableWidgetItem(str(name)))
            item = QTableWidgetItem(f"{val:,.0f}" if abs(val) >= 1000 else f"{val:.3g}")
            item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            self.table.setItem(i, 1, item)
            r = float(reference[i]) if reference is not None and i < len(reference) else 0.0
            rel = QTableWidgetItem(f"{100 * val / r:.0f}" if r > 0 else ("–" if reference is not None else ""))
            rel.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            self.table.setItem(i, 2, rel)
        self.values_tabs.setVisible(True)
        self.details_section.setVisible(True)
        self.hint.setVisible(False)
        self.chart.plot(list(values.index), values.to_numpy(dtype=float), reference)
        self.viewer.status = status_line(info, type_key=key)
        return True

    def _mark(self, sid: str, labels_layer, info) -> None:
        """A yellow ring around the pinned cell, so the reviewer sees which cell the panel shows."""
        self._marker = ring_marker_layer(self.viewer, labels_layer, sid, info)

    def _reference(self, sid) -> np.ndarray:
        """99th percentile of every marker over the sample's cells (cached until ``X`` may have
        changed: a curation edit keeps it); a sparse X is never densified (omicsgui: a 1M x 5,000
        table was 20 GB here). Usually made ahead in a worker (:meth:`_prefetch_reference`)."""
        def make():
            from ..analysis.genes import column_percentile

            return column_percentile(self.session.sample(sid).table.X, 99)

        return self.session.cached(sid, ("table", X_DEP, "marker_p99"), make)

    def _prefetch_reference(self, sid) -> None:
        """Compute the marker 99th percentiles of ``sid`` in a thread worker (at 10^6 cells ~2 s
        that the first pin would otherwise spend on the GUI thread). The worker only reads
        ``X``; its result is kept only if the table still holds that ``X`` and nothing cached one
        meanwhile. A pin before it is done computes the same value itself."""
        sample = self.session.sample(sid) if sid else None
        if (sample is None or sample.table is None or sample.table.n_obs < PREFETCH_MIN_CELLS
                or ("table", X_DEP, "marker_p99") in self.session.cache(sid)):
            return
        if self._gene_table(sid):
            return
        if (sid, id(sample.table.X)) in self._prefetching:
            return
        from napari.qt.threading import create_worker

        from ..analysis.genes import column_percentile

        X = sample.table.X
        key = (sid, id(X))
        worker = create_worker(column_percentile, X, 99, _ignore_errors=True)

        def done(ref):
            s = self.session.sample(sid)
            if s is not None and s.table is not None and s.table.X is X:
                self.session.cache(sid).setdefault(("table", X_DEP, "marker_p99"), ref)

        worker.returned.connect(done)
        worker.finished.connect(lambda: self._prefetching.pop(key, None))
        self._prefetching[key] = worker
        worker.start()

    def _gene_table(self, sid) -> bool:
        """The table holds gene counts (show the top genes of a cell, not every marker)."""
        from ..analysis.genes import is_count_table

        return self.session.cached(sid, ("table", STRUCTURE, "is_gene_table"),
                                   lambda: is_count_table(self.session.sample(sid).table))

    def _error(self, message: str):
        self.hint.setText(message)
        self.hint.setVisible(True)
        notify(message, "warning")

    def closeEvent(self, event):  # noqa: N802 - Qt API
        with contextlib.suppress(ValueError):
            self.viewer.mouse_drag_callbacks.remove(self._on_click)
        super().closeEvent(event)
