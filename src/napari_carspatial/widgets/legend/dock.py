"""The Legend dock: what each colour means, how many cells, and which ones to show.

Pick a sample and a column (cell type, curated type, niche, gate result, or a numeric column /
marker). A categorical column is the :class:`~.categories.CategoryPanel` (counts follow the
camera, debounced, and the selected shape); a numeric one the :class:`~.values.ValuePanel`. All
the work is the session's :class:`~napari_carspatial._napari.CellColoring` (``session.coloring(sid)``).
"""

from __future__ import annotations

import contextlib
import logging

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..._napari import (
    FIRST_VIEW_OPACITY,
    apply_outline_fade,
    camera,
    column_choices,
    find_cell_type_key,
    first_view_style,
    is_categorical,
    notify,
    session_for,
)
from .._common import BusyNotice, StableText, refill_sample_combo
from .categories import CategoryPanel
from .values import GeneSearch, ValuePanel
from .workflow import WorkflowBar

log = logging.getLogger(__name__)

#: debounce of camera / shape changes before the counts are recomputed, ms
DEBOUNCE_MS = 200
#: opacity of the class outlines in the first view, %
FIRST_OPACITY = int(round(100 * FIRST_VIEW_OPACITY))


def _fmt(n: int) -> str:
    return f"{int(n):,}"


class LegendWidget(QWidget):
    """Legend of the cell colouring, with counts, visibility and colour editing.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    coloring
        The colouring of the chosen sample (None without one).
    categories, values
        The categorical and numeric panels.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(self.viewer)
        self.coloring = None
        self._syncing = False
        self._connected_shapes: set[int] = set()

        self.sample_box = QComboBox()
        self.sample_box.setToolTip("Sample whose cells are coloured")
        self.column_box = QComboBox()
        self.column_box.setToolTip("Table column to colour the cells by: categories (cell type, niche, gate) "
                                   "or a number (marker mean intensity, area, ...)")
        self.column_box.setMinimumContentsLength(14)
        self.column_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["outline", "filled"])
        self.mode_box.setToolTip("outline: each cell's border in its class colour, the stain stays visible "
                                 "(the first view); filled: whole cells")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(FIRST_OPACITY)
        self.opacity.setToolTip("Opacity of the cell colours over the image")
        self.opacity_label = QLabel(f"{FIRST_OPACITY}%")
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
        self.gene_search = GeneSearch(self)    # gene panels: colour by a gene (omicsgui)
        self.gene_row_label = QLabel("gene")
        self.gene_row_label.setVisible(False)
        form.addRow(self.gene_row_label, self.gene_search)

        self.categories = CategoryPanel(self)
        self.values = ValuePanel(self)
        self.summary = StableText(lines=2)   # rewritten on every pan: re-lays nothing (_common)
        self.empty = QLabel("Open a sample with a segmentation mask and a cell table (Samples dock) "
                            "to colour its cells. A sample with a mask and no table: Samples dock > "
                            "Measure cells.")
        self.empty.setWordWrap(True)
        self.no_types = QLabel()
        self.no_types.setWordWrap(True)
        self.no_types.setStyleSheet("color: #e0a000")
        self.no_types.hide()
        self.column_box.setPlaceholderText("choose a column…")
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_box.currentData())

        self.workflow = WorkflowBar(self)
        self.setMinimumWidth(360)
        # the class list fills the dock (napari puts a stretch under widgets that do not expand,
        # which left the rows in a scrolled strip above empty space)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)
        lay = QVBoxLayout(self)
        lay.addWidget(self.workflow)
        lay.addLayout(form)
        lay.addWidget(self.no_types)
        lay.addWidget(self.busy_notice)
        lay.addWidget(self.categories, 1)
        lay.addWidget(self.values)
        lay.addWidget(self.summary)
        lay.addWidget(self.empty)
        lay.addStretch(0)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_counts)
        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.column_box.currentIndexChanged.connect(self._on_column)
        self.mode_box.currentTextChanged.connect(self._on_mode)
        self.opacity.valueChanged.connect(self._on_opacity)
        camera(self.viewer).events.center.connect(self._schedule)
        camera(self.viewer).events.zoom.connect(self._schedule)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._on_layers_changed()

    def showEvent(self, event):  # noqa: N802 - Qt API
        self.workflow.sync()
        super().showEvent(event)

    @property
    def syncing(self) -> bool:
        """The colouring is being shown in the choosers (their signals must not write it back)."""
        return self._syncing

    # ================================================================== samples and columns
    def _on_table_changed(self, event):
        """New columns (gating, niches, curation) appear in the chooser; the choice is kept."""
        if event.structure and self.sample_box.findData(event.sid) < 0:
            self._on_layers_changed()      # a sample just got its table (Measure cells)
        if event.sid != self.sample_box.currentData() or self.coloring is None:
            return
        have = [self.column_box.itemData(i) for i in range(self.column_box.count())]
        ch = column_choices(self.coloring.table)
        want = [*ch["categorical"], *ch["numeric"], *ch["markers"]]
        if [k for k in have if k is not None] != list(dict.fromkeys(want)):
            self._fill_columns(self.coloring.table)
            self._sync_from_coloring()
        if self.coloring.key is None:   # nothing coloured yet: a type column made since (gating) is shown
            key = self.new_type_column(event, before=have)
            if key is not None and self.column_box.findData(key) >= 0:
                self.show_no_types_hint(False)
                self.set_column(key)

    def new_type_column(self, event, before=()) -> str | None:
        """The column to colour by after ``table_changed``: the table's cell-type column by the
        project's rule (:func:`~napari_carspatial.model.cell_types.find_cell_type_key`), else a
        categorical column the change made (a gating result named by the user, a clustering),
        never an identifier-like one (``fov``, ``acquisition``)."""
        from ...model.cell_types import is_id_like

        table = self.coloring.table if self.coloring is not None else None
        if table is None:
            return None
        key = find_cell_type_key(table)
        if key is not None:
            return key
        cats = column_choices(table)["categorical"]
        named = [str(c) for c in (event.columns or ())] if event is not None else []
        made = [c for c in cats if c in named] or [c for c in cats if c not in set(before)]
        made = [c for c in made if not is_id_like(c)]
        return made[0] if made else None

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
            self.categories.fill()
            return
        self.coloring = self.session.coloring(sid)
        self.coloring.events.changed.connect(self._on_coloring_changed)
        self._fill_columns(self.coloring.table)
        if self.coloring.key is None:  # first time: the cell types as thin outlines over the stain
            key = find_cell_type_key(self.coloring.table)
            self.show_no_types_hint(key is None)
            if key is not None:
                self.mode_box.blockSignals(True)
                self.mode_box.setCurrentText(first_view_style(self.coloring)["mode"])
                self.mode_box.blockSignals(False)
                self.set_column(key)
                return
        self._sync_from_coloring()

    def show_no_types_hint(self, show: bool) -> None:
        """Say why "colour by" is empty and what to do, when the table has no cell-type column."""
        if show and self.coloring is not None:
            n_markers = len(column_choices(self.coloring.table)["markers"])
            self.no_types.setText(
                "No cell-type column in this table (it holds measurements only), so nothing is coloured "
                f"yet. Colour by a marker or a measurement above ({n_markers} markers), or make cell types "
                "first: gate them (workflow Analyse → Gating dock, \"Apply rules\") or cluster them "
                "(e.g. scanpy leiden into obs['leiden']); the new column appears here.")
        self.no_types.setVisible(bool(show))
        self.categories.setVisible(not show)   # an empty class table would squeeze the hint

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
                from ...analysis.genes import is_count_table

                kind = "gene" if is_count_table(table) else "marker"   # omicsgui: a gene panel says so
                self.column_box.insertSeparator(self.column_box.count())
                for k in ch["markers"]:
                    if k not in ch["numeric"] and k not in ch["categorical"]:
                        self.column_box.addItem(f"{k} ({kind})", k)
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
                self.coloring.color_by_value(key, cmap=self.values.cmap_box.currentText())
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

    # ================================================================== state -> widgets
    def preferred_height(self, max_rows: int = 14) -> int:
        """Height that shows every category row (up to ``max_rows``) without scrolling."""
        if self.categories.isHidden():   # the no-cell-type hint instead of the class table: all of its lines
            lay = self.layout()
            w = max(self.width(), self.minimumWidth())
            return max(self.sizeHint().height(), lay.totalHeightForWidth(w) if lay.hasHeightForWidth() else 0)
        tree = self.categories.tree
        n = tree.topLevelItemCount() or (len(self.coloring.categories) if self.coloring is not None else 6)
        row = tree.sizeHintForRow(0) if tree.topLevelItemCount() else 18
        rows_h = min(max(n, 4), max_rows) * max(row, 16) + tree.header().sizeHint().height() + 2 * tree.frameWidth()
        if self.isVisible() and tree.isVisible() and tree.height() > 0:
            # laid out: everything but the rows keeps its height (exact; the size hints of the
            # other rows and of napari's dock stretch are not)
            return self.height() - tree.height() + rows_h
        return self.sizeHint().height() - tree.sizeHint().height() + rows_h

    def _fade(self) -> None:
        sid = self.sample_box.currentData()
        if sid is not None and self.session.sample(sid) is not None:
            with contextlib.suppress(KeyError, ValueError, RuntimeError):
                apply_outline_fade(self.viewer, sid)

    def _on_coloring_changed(self, event=None):
        self._fade()   # outlines stay faded at slide zoom after a recolour
        what = getattr(event, "what", None)
        if what in ("clim", "opacity", "cmap"):
            self.values.update_colorbar()
            return
        if what in ("visibility", "color") and self.categories.tree.topLevelItemCount() == len(self.coloring.categories):
            self.categories.refresh_rows()  # in place: a row may be the sender of this very change
            return
        if what == "values" and self.categories.update_counts_in_place():
            return   # an edit of the shown column: the same rows, new counts (no rebuild)
        self._sync_from_coloring()

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
                    self.values.sync()
        finally:
            self._syncing = False
        numeric = col is not None and col.kind == "numeric"
        if col is not None and col.key is not None:
            self.no_types.hide()
        self.categories.setVisible(not numeric and self.no_types.isHidden())
        self.values.setVisible(numeric)
        self.categories.fill()
        self.values.update_colorbar()

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
        parts = [f"{_fmt(col.table.n_obs)} cells", f"{_fmt(view.sum())} in view"]
        if region is not None:
            parts.append(f"{_fmt(region.sum())} in selected region")
        self.summary.setText(" · ".join(parts))
        if col.kind == "numeric":
            if col.values is not None:
                self.values.show_view(col.values[view])
            return
        self.categories.show_counts(col.counts(view), col.counts(region) if region is not None else None)
