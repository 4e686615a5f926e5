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
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..._napari import camera, column_choices, guess_type_key, is_categorical, notify, session_for
from .._common import BusyNotice, refill_sample_combo
from .categories import CategoryPanel
from .values import ValuePanel

log = logging.getLogger(__name__)

#: debounce of camera / shape changes before the counts are recomputed, ms
DEBOUNCE_MS = 200


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

        self.categories = CategoryPanel(self)
        self.values = ValuePanel(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.empty = QLabel("Open a sample with a segmentation mask and a cell table (Samples dock) "
                            "to colour its cells. A sample with a mask and no table: Samples dock > "
                            "Measure cells.")
        self.empty.setWordWrap(True)
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_box.currentData())

        self.setMinimumWidth(380)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
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
    def _on_coloring_changed(self, event=None):
        what = getattr(event, "what", None)
        if what in ("clim", "opacity", "cmap"):
            self.values.update_colorbar()
            return
        if what in ("visibility", "color") and self.categories.tree.topLevelItemCount() == len(self.coloring.categories):
            self.categories.refresh_rows()  # in place: a row may be the sender of this very change
            return
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
        self.categories.setVisible(not numeric)
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
