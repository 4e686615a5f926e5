"""The Legend's categorical panel: one row per category (visibility, colour swatch, name, cells
in the sample and %, in the current view, in the selected region), sorting, show-only, colours."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QIcon, QPainter, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

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


def _set(item, column: int, text: str, value: int) -> None:
    """A count cell's text and sort value, only when they changed (each set repaints its row:
    ~0.25 ms, and an edit or a pan changes the counts of a few classes only)."""
    if item.text(column) != text:
        item.setText(column, text)
    if item.data(column, Qt.UserRole + 1) != value:
        item.setData(column, Qt.UserRole + 1, value)


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


class CategoryPanel(QWidget):
    """The category table of the dock's colouring (``dock.coloring``)."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
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
        hdr.setSectionResizeMode(COL_SHOW, QHeaderView.ResizeToContents)
        # the count columns are as wide as the largest count they can show (set by fill): sized
        # to their contents, every pan or edit that changed a count's width re-laid the header
        # and repainted the table once more, a window flush of its own (~20 ms under Xvfb)
        for c in (COL_N, COL_PCT, COL_VIEW, COL_REGION):
            hdr.setSectionResizeMode(c, QHeaderView.Fixed)
        for c in (COL_N, COL_PCT, COL_VIEW, COL_REGION):
            self.tree.headerItem().setTextAlignment(c, Qt.AlignRight | Qt.AlignVCenter)
        self.hint = QLabel("double-click a name: show only it · double-click a colour: change it · right-click: more")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: gray; font-size: 10px")
        self.hint.hide()      # the rows get the room; the same help is the table's tooltip
        self.tree.setToolTip(self.hint.text())
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(srow)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.hint)

        self.sort_box.currentIndexChanged.connect(lambda _: self.fill())
        self.show_all_button.clicked.connect(lambda: self.coloring and self.coloring.show_only(None))
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.itemDoubleClicked.connect(self.on_double_click)
        self.tree.customContextMenuRequested.connect(self._context_menu)

    @property
    def coloring(self):
        return self.dock.coloring

    # ------------------------------------------------------------------ rows
    def fill(self) -> None:
        """One row per category of the current column (empty for a numeric one)."""
        col = self.coloring
        self.tree.blockSignals(True)
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        if col is not None and col.kind == "categorical":
            total = max(int(col.codes.size), 1)
            self._fit_count_columns(total)
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
        self.dock.update_counts()

    def update_counts_in_place(self) -> bool:
        """New counts in the rows shown (an edit of the shown column changed some cells' types);
        False, changing nothing, when the rows are not exactly the coloring's categories."""
        col = self.coloring
        if col is None or col.kind != "categorical" or self.tree.topLevelItemCount() != len(col.categories):
            return False
        items = [self.tree.topLevelItem(k) for k in range(self.tree.topLevelItemCount())]
        index = [it.data(COL_NAME, Qt.UserRole + 1) for it in items]
        if sorted(index) != list(range(len(items))) or any(
                it.data(COL_NAME, Qt.UserRole) != col.categories[i] for it, i in zip(items, index, strict=True)):
            return False
        total = max(int(col.codes.size), 1)
        counts = col.counts()
        self.tree.blockSignals(True)
        for it, i in zip(items, index, strict=True):   # (colours and visibility: unchanged by an edit)
            _set(it, COL_N, _fmt(counts[i]), int(counts[i]))
            _set(it, COL_PCT, f"{100 * counts[i] / total:.1f}", int(counts[i]))
        self.tree.blockSignals(False)
        self.dock.update_counts()   # in view / in region, then the sort
        return True

    def refresh_rows(self) -> None:
        """Visibility and colours in place (a row may be the sender of this very change)."""
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

    def _fit_count_columns(self, n_max: int) -> None:
        """Fixed widths for the count columns: the widest of the header and the largest value a
        column can hold (``n_max`` cells, "100.0" %), so no count change resizes a column."""
        fm = self.tree.fontMetrics()
        head = self.tree.header()
        pad = 16       # the cell's margins and the header's sort arrow
        for c, widest in ((COL_N, _fmt(n_max)), (COL_PCT, "100.0"), (COL_VIEW, _fmt(n_max)),
                          (COL_REGION, _fmt(n_max))):
            want = max(fm.horizontalAdvance(widest), head.fontMetrics().horizontalAdvance(HEADERS[c])) + pad
            if head.sectionSize(c) != want:
                head.resizeSection(c, want)

    def show_counts(self, in_view, in_region) -> None:
        """The "in view" and "in region" columns (region hidden without a selected shape)."""
        if self.tree.isColumnHidden(COL_REGION) != (in_region is None):
            self.tree.setColumnHidden(COL_REGION, in_region is None)
        self.tree.blockSignals(True)
        for k in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(k)
            i = it.data(COL_NAME, Qt.UserRole + 1)
            _set(it, COL_VIEW, _fmt(in_view[i]), int(in_view[i]))
            if in_region is not None:
                _set(it, COL_REGION, _fmt(in_region[i]), int(in_region[i]))
        self.tree.blockSignals(False)
        self._apply_sort()

    def _apply_sort(self):
        """Rows in the sort box's order; nothing is done when they already are (a sort re-lays
        the whole table and its header: one more repaint and window flush per pan or edit)."""
        mode = self.sort_box.currentIndex()
        column, order = ((COL_N, Qt.DescendingOrder), (COL_NAME, Qt.AscendingOrder),
                         (COL_VIEW, Qt.DescendingOrder))[min(max(mode, 0), 2)]
        head = self.tree.header()     # the last sort applied is the header's sort indicator
        if (head.sortIndicatorSection() == column and head.sortIndicatorOrder() == order
                and self._in_order(column, order)):
            return
        self.tree.setSortingEnabled(False)
        self.tree.sortItems(column, order)

    def _in_order(self, column: int, order) -> bool:
        """The rows are sorted by ``column`` (their sort values) in ``order``: a stable sort
        would leave them as they are."""
        keys = [self.tree.topLevelItem(k).data(column, Qt.UserRole + 1) for k in range(self.tree.topLevelItemCount())]
        if any(k is None for k in keys):
            return False
        if order == Qt.DescendingOrder:
            return all(a >= b for a, b in zip(keys, keys[1:], strict=False))
        return all(a <= b for a, b in zip(keys, keys[1:], strict=False))

    # ------------------------------------------------------------------ row actions
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
        self.coloring.set_category_visible(item.data(COL_NAME, Qt.UserRole), item.checkState(COL_SHOW) == Qt.Checked)

    def on_double_click(self, item, column):
        """A swatch: change its colour; a name: show only it (again: show all)."""
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
        chosen = QColorDialog.getColor(QColor(col.color_of(cat)), self, f"Colour of {cat}")
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
