"""The "Legend" dock: what each colour means, how many cells, and which ones to show.

Pick a sample and a column (cell type, curated type, niche, gate result, or a numeric column /
marker). For a categorical column every category gets a row: visibility checkbox, colour swatch,
name, cells in the sample (and %), cells in the current view (follows the camera, debounced) and
in the selected region (when a shape of a Shapes layer is selected). Double-click a name to show
only that category (again to show all), double-click a swatch to change its colour (saved to
``uns[f"{key}_colors"]``), right-click for the same actions. For a numeric column: colormap,
range slider and colour bar. All the work is in the session's
:class:`~napari_carspatial._napari.CellColoring` (``session.coloring(sid)``).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import camera, column_choices, guess_type_key, is_categorical, notify, session_for
from ._common import BusyNotice, refill_sample_combo

log = logging.getLogger(__name__)

#: colormaps offered for numeric columns (perceptually uniform first)
COLORMAPS = ("viridis", "magma", "inferno", "plasma", "turbo", "gray", "PiYG", "bwr")
#: debounce of camera / shape changes before the counts are recomputed, ms
DEBOUNCE_MS = 200

COL_SHOW, COL_NAME, COL_N, COL_PCT, COL_VIEW, COL_REGION = range(6)
HEADERS = ("", "category", "cells", "%", "in view", "in region")


def _swatch(hex_color: str, visible: bool = True, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    col = QColor(hex_color)
    if not visible:
        col.setAlpha(60)
    p.setBrush(col)
    p.setPen(QColor(20, 20, 20))
    p.drawRect(0, 0, size - 1, size - 1)
    p.end()
    return QIcon(pm)


def _fmt(n: int) -> str:
    return f"{int(n):,}"


class _Item(QTreeWidgetItem):
    """Sorts numerically on the count columns."""

    def __lt__(self, other):
        col = self.treeWidget().sortColumn() if self.treeWidget() else COL_N
        a, b = self.data(col, Qt.UserRole + 1), other.data(col, Qt.UserRole + 1)
        if a is not None and b is not None:
            return a < b
        return super().__lt__(other)


class LegendWidget(QWidget):
    """Legend of the cell colouring, with counts, visibility and colour editing.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.coloring = None
        self._syncing = False
        self._connected_shapes: set[int] = set()
        self.session = session_for(self.viewer)

        # -------------------------------------------------------------- choosers
        self.sample_box = QComboBox()
        self.sample_box.setToolTip("Sample whose cells are coloured")
        self.column_box = QComboBox()
        self.column_box.setToolTip("Table column to colour the cells by: categories (cell type, niche, gate) "
                                   "or a number (marker mean intensity, area, ...)")
        self.column_box.setMinimumContentsLength(14)
        self.column_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["filled", "outline"])
        self.mode_box.setToolTip("filled: whole cells; outline: each cell's border, markers stay visible")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(70)
        self.opacity.setToolTip("Opacity of the cell colours over the image")
        self.opacity_label = QLabel("70%")
        self.opacity_label.setMinimumWidth(34)
        op_row = QHBoxLayout()
        op_row.setContentsMargins(0, 0, 0, 0)
        op_row.addWidget(self.opacity, 1)
        op_row.addWidget(self.opacity_label)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("sample", self.sample_box)
        form.addRow("colour by", self.column_box)
        mode_row = QHBoxLayout()
        mode_row.setContentsMargins(0, 0, 0, 0)
        mode_row.addWidget(self.mode_box)
        mode_row.addLayout(op_row, 1)
        form.addRow("style", mode_row)

        # -------------------------------------------------------------- categorical part
        self.cat_panel = QWidget()
        self.sort_box = QComboBox()
        self.sort_box.addItems(["most cells first", "category order", "most in view first"])
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.setToolTip("Make every category visible again")
        srow = QHBoxLayout()
        srow.setContentsMargins(0, 0, 0, 0)
        srow.addWidget(QLabel("sort"))
        srow.addWidget(self.sort_box, 1)
        srow.addWidget(self.show_all_button)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(HEADERS))
        self.tree.setHeaderLabels(list(HEADERS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SingleSelection)
        self.tree.setIconSize(QSize(14, 14))
        self.tree.setContextMenuPolicy(Qt.CustomContextMenu)
        self.tree.headerItem().setToolTip(COL_SHOW, "visible")
        self.tree.headerItem().setToolTip(COL_VIEW, "cells whose centre is in the current view")
        self.tree.headerItem().setToolTip(COL_REGION, "cells inside the selected shape(s)")
        hdr = self.tree.header()
        hdr.setStretchLastSection(False)
        hdr.setSectionResizeMode(COL_NAME, QHeaderView.Stretch)
        for c in (COL_SHOW, COL_N, COL_PCT, COL_VIEW, COL_REGION):
            hdr.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        for c in (COL_N, COL_PCT, COL_VIEW, COL_REGION):
            self.tree.headerItem().setTextAlignment(c, Qt.AlignRight | Qt.AlignVCenter)
        self.hint = QLabel("double-click a name: show only it · double-click a colour: change it · right-click: more")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: gray; font-size: 10px")
        cl = QVBoxLayout(self.cat_panel)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addLayout(srow)
        cl.addWidget(self.tree, 1)
        cl.addWidget(self.hint)

        # -------------------------------------------------------------- numeric part
        from superqt import QLabeledDoubleRangeSlider

        self.num_panel = QWidget()
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(list(COLORMAPS))
        self.range_slider = QLabeledDoubleRangeSlider(Qt.Horizontal)
        self.range_slider.setToolTip("Values below / above the range get the end colours")
        self.colorbar = QLabel()
        self.colorbar.setFixedHeight(16)
        self.colorbar.setScaledContents(True)
        self.bar_lo, self.bar_hi = QLabel(), QLabel()
        self.bar_hi.setAlignment(Qt.AlignRight)
        self.num_summary = QLabel()
        self.num_summary.setWordWrap(True)
        nf = QFormLayout(self.num_panel)
        nf.setContentsMargins(0, 0, 0, 0)
        nf.addRow("colormap", self.cmap_box)
        nf.addRow("range", self.range_slider)
        bar = QVBoxLayout()
        bar.setSpacing(0)
        bar.addWidget(self.colorbar)
        ends = QHBoxLayout()
        ends.addWidget(self.bar_lo)
        ends.addStretch(1)
        ends.addWidget(self.bar_hi)
        bar.addLayout(ends)
        nf.addRow("colour bar", bar)
        nf.addRow(self.num_summary)
        self.num_panel.setVisible(False)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.empty = QLabel("Open a sample with a segmentation mask and a cell table (Samples dock) "
                            "to colour its cells.")
        self.empty.setWordWrap(True)

        self.busy_notice = BusyNotice(self.session, lambda: self.sample_box.currentData())

        self.setMinimumWidth(380)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.busy_notice)
        lay.addWidget(self.cat_panel, 1)
        lay.addWidget(self.num_panel)
        lay.addWidget(self.summary)
        lay.addWidget(self.empty)
        lay.addStretch(0)

        # -------------------------------------------------------------- wiring
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_counts)
        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.column_box.currentIndexChanged.connect(self._on_column)
        self.mode_box.currentTextChanged.connect(self._on_mode)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.sort_box.currentIndexChanged.connect(lambda _: self._fill_tree())
        self.show_all_button.clicked.connect(lambda: self.coloring and self.coloring.show_only(None))
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.cmap_box.currentTextChanged.connect(self._on_cmap)
        self.range_slider.valueChanged.connect(self._on_range)
        camera(self.viewer).events.center.connect(self._schedule)
        camera(self.viewer).events.zoom.connect(self._schedule)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._on_layers_changed()

    # ================================================================== samples and columns
    def _on_table_changed(self, event):
        """New columns (gating, niches, curation) appear in the chooser; the choice is kept."""
        if event.sid != self.sample_box.currentData() or self.coloring is None:
            return
        have = [self.column_box.itemData(i) for i in range(self.column_box.count())]
        ch = column_choices(self.coloring.table)
        want = [*ch["categorical"], *ch["numeric"], *ch["markers"]]
        if [k for k in have if k is not None] != list(dict.fromkeys(want)):
            self._fill_columns(self.coloring.table)
            self._sync_from_coloring()

    def _on_layers_changed(self, event=None):
        for layer in self.viewer.layers:
            if layer.__class__.__name__ == "Shapes" and id(layer) not in self._connected_shapes:
                self._connected_shapes.add(id(layer))
                layer.events.highlight.connect(self._schedule)
                layer.events.data.connect(self._schedule)
        changed, samples = refill_sample_combo(self.sample_box, self.session,
                                               where=lambda s: bool(s.labels) and s.table is not None)
        if changed:
            self._on_sample()
        self.empty.setVisible(not samples)
        self._schedule()

    def _on_sample(self, *_):
        sid = self.sample_box.currentData()
        if self.coloring is not None:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                self.coloring.events.changed.disconnect(self._on_coloring_changed)
        self.coloring = None
        self.busy_notice.update_state()
        if sid is None or self.session.sample(sid) is None:
            self._fill_columns(None)
            self._fill_tree()
            return
        self.coloring = self.session.coloring(sid)
        self.coloring.events.changed.connect(self._on_coloring_changed)
        self._fill_columns(self.coloring.table)
        if self.coloring.key is None:  # first time: colour by the cell type straight away
            key = guess_type_key(self.coloring.table)
            if key is not None:
                self.set_column(key)
                return
        self._sync_from_coloring()

    def _fill_columns(self, table):
        self.column_box.blockSignals(True)
        self.column_box.clear()
        if table is not None:
            ch = column_choices(table)
            for k in ch["categorical"]:
                self.column_box.addItem(k, k)
            if ch["numeric"]:
                self.column_box.insertSeparator(self.column_box.count())
                for k in ch["numeric"]:
                    self.column_box.addItem(k, k)
            if ch["markers"]:
                self.column_box.insertSeparator(self.column_box.count())
                for k in ch["markers"]:
                    if k not in ch["numeric"] and k not in ch["categorical"]:
                        self.column_box.addItem(f"{k} (marker)", k)
        self.column_box.setCurrentIndex(-1)
        self.column_box.blockSignals(False)

    def set_column(self, key: str) -> None:
        """Colour by ``key`` (selects it in the column chooser)."""
        idx = self.column_box.findData(key)
        if idx < 0:
            raise KeyError(f"{key!r} is not a column the cells can be coloured by")
        if idx == self.column_box.currentIndex():
            self._on_column()
        else:
            self.column_box.setCurrentIndex(idx)

    def _on_column(self, *_):
        key = self.column_box.currentData()
        if self._syncing or key is None or self.coloring is None:
            return
        try:
            if is_categorical(self.coloring.table, key):
                self.coloring.color_by_category(key, mode=self.mode_box.currentText(),
                                                  opacity=self.opacity.value() / 100)
            else:
                self.coloring.color_by_value(key, cmap=self.cmap_box.currentText())
        except (KeyError, ValueError) as err:
            notify(f"Cannot colour by {key!r}: {err}", "warning")

    def _on_mode(self, mode: str):
        if self._syncing or self.coloring is None or self.coloring.key is None:
            return
        self.coloring.set_mode(mode)

    def _on_opacity(self, value: int):
        self.opacity_label.setText(f"{value}%")
        if not self._syncing and self.coloring is not None:
            self.coloring.set_opacity(value / 100)

    def _on_cmap(self, name: str):
        if not self._syncing and self.coloring is not None and self.coloring.kind == "numeric":
            self.coloring.set_cmap(name)

    def _on_range(self, value):
        if not self._syncing and self.coloring is not None and self.coloring.kind == "numeric":
            self.coloring.set_clim(*value)

    # ================================================================== state -> widgets
    def _on_coloring_changed(self, event=None):
        what = getattr(event, "what", None)
        if what in ("clim", "opacity", "cmap"):
            self._update_colorbar()
            return
        if what in ("visibility", "color") and self.tree.topLevelItemCount() == len(self.coloring.categories):
            self._refresh_rows()  # in place: a row may be the sender of this very change
            return
        self._sync_from_coloring()

    def _refresh_rows(self):
        col = self.coloring
        self.tree.blockSignals(True)
        for k in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(k)
            i = it.data(COL_NAME, Qt.UserRole + 1)
            vis = bool(col.visible[i])
            it.setCheckState(COL_SHOW, Qt.Checked if vis else Qt.Unchecked)
            it.setIcon(COL_SHOW, _swatch(col.colors[i], vis))
            it.setToolTip(COL_SHOW, f"{col.colors[i]} — double-click to change")
            for c in range(1, len(HEADERS)):
                it.setForeground(c, self.tree.palette().text() if vis else QColor(128, 128, 128))
        self.tree.blockSignals(False)

    def _sync_from_coloring(self):
        col = self.coloring
        self._syncing = True
        try:
            if col is not None and col.key is not None:
                idx = self.column_box.findData(col.key)
                if idx < 0:   # a column added since (e.g. cell_type_curated by the curation dock)
                    self._fill_columns(col.table)
                    idx = self.column_box.findData(col.key)
                if idx >= 0:
                    self.column_box.setCurrentIndex(idx)
                self.mode_box.setCurrentText(col.mode)
                self.opacity.setValue(int(round(col.opacity * 100)))
                self.opacity_label.setText(f"{self.opacity.value()}%")
                if col.kind == "numeric":
                    self.cmap_box.setCurrentText(col.cmap if col.cmap in COLORMAPS else self.cmap_box.currentText())
                    lo, hi = col.value_range()
                    clo, chi = col.clim or (lo, hi)
                    lo, hi = min(lo, clo), max(hi, chi)
                    self.range_slider.setRange(lo, hi)
                    self.range_slider.setDecimals(2 if hi - lo < 100 else 0)
                    self.range_slider.setSingleStep((hi - lo) / 200 if hi > lo else 0.01)
                    self.range_slider.setValue((clo, chi))
        finally:
            self._syncing = False
        numeric = col is not None and col.kind == "numeric"
        self.cat_panel.setVisible(not numeric)
        self.num_panel.setVisible(numeric)
        self._fill_tree()
        self._update_colorbar()

    def _update_colorbar(self):
        col = self.coloring
        if col is None or col.kind != "numeric":
            return
        from napari.utils.colormaps import ensure_colormap

        cm = ensure_colormap(col.cmap)
        rgba = (cm.map(np.linspace(0, 1, 256)) * 255).astype(np.uint8)
        img = np.ascontiguousarray(np.repeat(rgba[None], 12, axis=0))
        qimg = QImage(img.data, 256, 12, 256 * 4, QImage.Format_RGBA8888).copy()
        self.colorbar.setPixmap(QPixmap.fromImage(qimg))
        lo, hi = col.clim or col.value_range()
        self.bar_lo.setText(f"{lo:.3g}")
        self.bar_hi.setText(f"{hi:.3g}")

    # ================================================================== the category table
    def _fill_tree(self):
        col = self.coloring
        self.tree.blockSignals(True)
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        if col is not None and col.kind == "categorical":
            total = max(int(col.codes.size), 1)
            counts = col.counts()
            for i, (cat, hexc) in enumerate(zip(col.categories, col.colors, strict=False)):
                it = _Item()
                vis = bool(col.visible[i])
                it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
                it.setCheckState(COL_SHOW, Qt.Checked if vis else Qt.Unchecked)
                it.setIcon(COL_SHOW, _swatch(hexc, vis))
                it.setToolTip(COL_SHOW, f"{hexc} — double-click to change")
                it.setText(COL_NAME, cat)
                it.setData(COL_NAME, Qt.UserRole, cat)
                it.setData(COL_NAME, Qt.UserRole + 1, i)
                it.setText(COL_N, _fmt(counts[i]))
                it.setData(COL_N, Qt.UserRole + 1, int(counts[i]))
                it.setText(COL_PCT, f"{100 * counts[i] / total:.1f}")
                it.setData(COL_PCT, Qt.UserRole + 1, int(counts[i]))
                for c in (COL_N, COL_PCT, COL_VIEW, COL_REGION):
                    it.setTextAlignment(c, Qt.AlignRight | Qt.AlignVCenter)
                if not vis:
                    for c in range(1, len(HEADERS)):
                        it.setForeground(c, QColor(128, 128, 128))
                self.tree.addTopLevelItem(it)
        self.tree.blockSignals(False)
        self.update_counts()

    def _apply_sort(self):
        mode = self.sort_box.currentIndex()
        self.tree.setSortingEnabled(False)
        if mode == 0:
            self.tree.sortItems(COL_N, Qt.DescendingOrder)
        elif mode == 1:
            self.tree.sortItems(COL_NAME, Qt.AscendingOrder)
        else:
            self.tree.sortItems(COL_VIEW, Qt.DescendingOrder)

    def _schedule(self, event=None):
        self._timer.start()

    def update_counts(self):
        """Recompute the "in view" and "in region" counts (also runs debounced on camera moves)."""
        col = self.coloring
        if col is None or col.key is None:
            self.summary.setText("")
            return
        try:
            view = col.in_view()
            region = col.in_selected_shapes()
        except (KeyError, ValueError):
            return
        n = col.table.n_obs
        parts = [f"{_fmt(n)} cells", f"{_fmt(view.sum())} in view"]
        if region is not None:
            parts.append(f"{_fmt(region.sum())} in selected region")
        self.summary.setText(" · ".join(parts))
        if col.kind == "numeric":
            v = col.values[view] if col.values is not None else np.empty(0)
            v = v[np.isfinite(v)]
            self.num_summary.setText(f"in view: median {np.median(v):.3g}, range {v.min():.3g}–{v.max():.3g}"
                                     if v.size else "no cells in view")
            return
        cv = col.counts(view)
        cr = col.counts(region) if region is not None else None
        self.tree.setColumnHidden(COL_REGION, cr is None)
        self.tree.blockSignals(True)
        for k in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(k)
            i = it.data(COL_NAME, Qt.UserRole + 1)
            it.setText(COL_VIEW, _fmt(cv[i]))
            it.setData(COL_VIEW, Qt.UserRole + 1, int(cv[i]))
            if cr is not None:
                it.setText(COL_REGION, _fmt(cr[i]))
                it.setData(COL_REGION, Qt.UserRole + 1, int(cr[i]))
        self.tree.blockSignals(False)
        self._apply_sort()

    # ================================================================== row actions
    def item_for(self, cat: str):
        """The table row of category ``cat`` (None when absent)."""
        for k in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(k)
            if it.data(COL_NAME, Qt.UserRole) == cat:
                return it
        return None

    def _on_item_changed(self, item, column):
        if column != COL_SHOW or self.coloring is None:
            return
        cat = item.data(COL_NAME, Qt.UserRole)
        self.coloring.set_category_visible(cat, item.checkState(COL_SHOW) == Qt.Checked)

    def _on_double_click(self, item, column):
        cat = item.data(COL_NAME, Qt.UserRole)
        if column == COL_SHOW:
            self.edit_color(cat)
        else:
            self.toggle_show_only(cat)

    def toggle_show_only(self, cat: str) -> None:
        """Show only ``cat``; when it already is the only one shown, show all again."""
        col = self.coloring
        i = col.categories.index(cat)
        only = col.visible[i] and col.visible.sum() == 1
        col.show_only(None if only else cat)

    def edit_color(self, cat: str) -> None:
        """Ask for a new colour for ``cat`` (colour dialog) and save it to ``uns``."""
        col = self.coloring
        current = QColor(col.color_of(cat))
        chosen = QColorDialog.getColor(current, self, f"Colour of {cat}")
        if chosen is not None and chosen.isValid():
            col.set_category_color(cat, chosen.name())

    def _context_menu(self, pos):
        item = self.tree.itemAt(pos)
        if item is None or self.coloring is None:
            return
        cat = item.data(COL_NAME, Qt.UserRole)
        menu = QMenu(self)
        menu.addAction(f"Show only {cat}", lambda: self.coloring.show_only(cat))
        menu.addAction("Show all", lambda: self.coloring.show_only(None))
        menu.addSeparator()
        menu.addAction(f"Change colour of {cat}…", lambda: self.edit_color(cat))
        menu.exec_(self.tree.viewport().mapToGlobal(pos))
