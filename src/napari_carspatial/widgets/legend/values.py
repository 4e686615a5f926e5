"""The Legend's numeric panel: colormap, range slider, colour bar and what the view holds."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QCompleter,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

#: colormaps offered for numeric columns (perceptually uniform first)
COLORMAPS = ("viridis", "magma", "inferno", "plasma", "turbo", "gray", "PiYG", "bwr")


class ValuePanel(QWidget):
    """Colormap, range and colour bar of the dock's colouring by a number."""

    def __init__(self, dock):
        super().__init__()
        from superqt import QLabeledDoubleRangeSlider

        self.dock = dock
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
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("colormap", self.cmap_box)
        form.addRow("range", self.range_slider)
        bar = QVBoxLayout()
        bar.setSpacing(0)
        bar.addWidget(self.colorbar)
        ends = QHBoxLayout()
        ends.addWidget(self.bar_lo)
        ends.addStretch(1)
        ends.addWidget(self.bar_hi)
        bar.addLayout(ends)
        form.addRow("colour bar", bar)
        form.addRow(self.num_summary)
        self.setVisible(False)
        self.cmap_box.currentTextChanged.connect(self._on_cmap)
        self.range_slider.valueChanged.connect(self._on_range)

    @property
    def coloring(self):
        return self.dock.coloring

    def _on_cmap(self, name: str):
        if not self.dock.syncing and self.coloring is not None and self.coloring.kind == "numeric":
            self.coloring.set_cmap(name)

    def _on_range(self, value):
        if not self.dock.syncing and self.coloring is not None and self.coloring.kind == "numeric":
            self.coloring.set_clim(*value)

    def sync(self) -> None:
        """Colormap and range from the colouring (the dock blocks writes back meanwhile)."""
        col = self.coloring
        self.cmap_box.setCurrentText(col.cmap if col.cmap in COLORMAPS else self.cmap_box.currentText())
        lo, hi = col.value_range()
        clo, chi = col.clim or (lo, hi)
        lo, hi = min(lo, clo), max(hi, chi)
        self.range_slider.setRange(lo, hi)
        self.range_slider.setDecimals(2 if hi - lo < 100 else 0)
        self.range_slider.setSingleStep((hi - lo) / 200 if hi > lo else 0.01)
        self.range_slider.setValue((clo, chi))

    def update_colorbar(self) -> None:
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

    def show_view(self, values) -> None:
        """Median and range of the finite ``values`` of the cells in view."""
        v = values[np.isfinite(values)]
        self.num_summary.setText(f"in view: median {np.median(v):.3g}, range {v.min():.3g}–{v.max():.3g}"
                                 if v.size else "no cells in view")


class GeneSearch(QLineEdit):
    """Type a gene of a gene panel (``var``), most abundant first, to colour the cells by it
    (omicsgui's hunk: the values come from ``analysis.genes.gene_values``, X stays sparse).

    Shown for count tables only (protein markers are in the column chooser already).
    """

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self._table_id = None
        self.genes: list[str] = []
        self.setPlaceholderText("type a gene…")
        self.setToolTip("Colour the cells by a gene's counts: type to search the panel (most abundant genes first)")
        self.setClearButtonEnabled(True)
        self.returnPressed.connect(lambda: self.choose(self.text()))
        self.setVisible(False)
        later = lambda *_: QTimer.singleShot(0, self.refill)  # noqa: E731 - after the dock's own handler
        dock.sample_box.currentIndexChanged.connect(later)
        dock.viewer.layers.events.inserted.connect(later)
        dock.viewer.layers.events.removed.connect(later)
        dock.session.events.table_changed.connect(later)
        later()   # once the dock is built (its sample chooser is filled without signals)

    def focusInEvent(self, event):  # noqa: N802 - Qt API
        self.refill()
        super().focusInEvent(event)

    def _table(self):
        col = self.dock.coloring
        return None if col is None else col.table

    def refill(self) -> None:
        """The genes of the dock's sample, most abundant first."""
        from ...analysis.genes import gene_summary, is_count_table

        try:
            t = self._table()
        except RuntimeError:   # the dock is being deleted
            return
        if id(t) == self._table_id and t is not None:
            return
        self._table_id = None if t is None else id(t)
        gene_table = t is not None and is_count_table(t)
        self.genes = [str(g) for g in gene_summary(t)["gene"]] if gene_table else []
        comp = QCompleter(self.genes, self)
        comp.setCaseSensitivity(Qt.CaseInsensitive)
        comp.setFilterMode(Qt.MatchContains)
        comp.setMaxVisibleItems(12)
        comp.activated.connect(self.choose)
        self.setCompleter(comp)
        self.setPlaceholderText(f"type one of {len(self.genes):,} genes…" if self.genes else "no gene panel")
        row = getattr(self.dock, "gene_row_label", None)
        self.setVisible(gene_table)
        if not gene_table:
            self._table_id = None
        if row is not None:
            row.setVisible(gene_table)

    def choose(self, gene: str) -> bool:
        """Colour by ``gene`` (its exact name, or the only gene containing the text)."""
        self.refill()
        g = str(gene).strip()
        if g not in self.genes:
            hits = [x for x in self.genes if g.lower() in x.lower()]
            if len(hits) != 1:
                return False
            g = hits[0]
        self.dock.set_column(g)
        return True
