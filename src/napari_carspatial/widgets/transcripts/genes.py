"""The Transcripts dock's gene list: search, tick the genes to show, see their colours and counts."""

from __future__ import annotations

from qtpy.QtCore import QSortFilterProxyModel, Qt
from qtpy.QtGui import QColor, QStandardItem, QStandardItemModel
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QVBoxLayout,
)


class GeneListView(QGroupBox):
    """Every gene of the transcripts, most frequent first, with a search; ticked genes are shown
    in their colours (none ticked: all genes, one colour)."""

    def __init__(self, dock):
        super().__init__("Genes")
        self.dock = dock
        self.sid: str | None = None
        self.search = QLineEdit()
        self.search.setPlaceholderText("search genes…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Type part of a gene name; tick genes to show only them, each in its own colour")
        self.model = QStandardItemModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
        self.list = QListView()
        self.list.setModel(self.proxy)
        self.list.setUniformItemSizes(True)
        self.list.setMinimumHeight(160)
        self.summary = QLabel("all genes")
        self.summary.setWordWrap(True)
        self.clear_button = QPushButton("Show all genes")
        self.clear_button.setToolTip("Untick every gene: all transcripts, one colour")
        lay = QVBoxLayout(self)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.clear_button)
        lay.addLayout(row)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.model.itemChanged.connect(self._on_item)
        self.clear_button.clicked.connect(self.clear)
        self._filling = False

    def fill(self, sid: str | None, view) -> None:
        """The genes of ``view``'s transcripts with their counts (no row is read)."""
        self.sid = sid
        self._filling = True
        try:
            self.model.clear()
            if view is None:
                self.setEnabled(False)
                self.summary.setText("no transcripts")
                return
            self.setEnabled(True)
            counts = view.points.gene_counts()
            chosen = set(view.flt.genes or ())
            for g in sorted(counts, key=lambda k: (-counts[k], k)):
                it = QStandardItem(f"{g}   {counts[g]:,}")
                it.setData(g, Qt.UserRole)
                it.setCheckable(True)
                it.setEditable(False)
                it.setCheckState(Qt.Checked if g in chosen else Qt.Unchecked)
                it.setToolTip(f"{g}: {counts[g]:,} transcripts")
                self.model.appendRow(it)
        finally:
            self._filling = False
        self.show_colors(view)

    def checked(self) -> list[str]:
        out = []
        for r in range(self.model.rowCount()):
            it = self.model.item(r)
            if it.checkState() == Qt.Checked:
                out.append(it.data(Qt.UserRole))
        return out

    def set_checked(self, genes) -> None:
        """Tick exactly ``genes`` (as a user would), then show them."""
        want = set(genes or ())
        self._filling = True
        try:
            for r in range(self.model.rowCount()):
                it = self.model.item(r)
                it.setCheckState(Qt.Checked if it.data(Qt.UserRole) in want else Qt.Unchecked)
        finally:
            self._filling = False
        self.dock.set_genes(sorted(want))

    def clear(self) -> None:
        self.set_checked([])

    def _on_item(self, item) -> None:
        if not self._filling:
            self.dock.set_genes(self.checked())

    def show_colors(self, view) -> None:
        """Colour swatches of the ticked genes; the summary line."""
        if view is None:
            return
        chosen = set(view.flt.genes or ())
        self._filling = True
        try:
            for r in range(self.model.rowCount()):
                it = self.model.item(r)
                g = it.data(Qt.UserRole)
                it.setData(QColor(view.colors[g]) if g in chosen and g in view.colors else None, Qt.DecorationRole)
        finally:
            self._filling = False
        n = self.model.rowCount()
        self.summary.setText(f"{len(chosen)} of {n:,} genes shown, each in its colour" if chosen
                             else f"all {n:,} genes, one colour")
