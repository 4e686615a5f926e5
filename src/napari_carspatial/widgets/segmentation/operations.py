"""The Segmentation dock's "Operations" section: merge, split by a line or by seeds, delete, new
cell, grow / shrink, undo / redo. Each is one step of the region's own undo stack
(:class:`~napari_carspatial.editing.RegionEdit`); lines, seeds and polygons are drawn on helper
layers over the region (the first press activates the tool, the second applies)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
)

from ..._napari import notify

SHORTCUTS = {
    "merge": "Shift-M",
    "split_line": "Shift-K",
    "split_seeds": "Shift-W",
    "delete": "Shift-D",
    "draw": "Shift-N",
    "grow": "Shift-G",
    "shrink": "Shift-H",
    "undo": "Control-Z",
    "redo": "Control-Shift-Z",
    "commit": "Shift-Enter",
}
#: names of nuclear channels (first match wins) for the seeded watershed
NUCLEAR_NAMES = ("dapi", "hoechst", "dna", "dna1", "nuclear", "nucleus", "h3", "histone")


def _outcome(name: str, affected) -> str:
    """One line saying what an operation did (replaces the tool's hint in the status)."""
    ids = ", ".join(str(i) for i in list(affected)[:6]) + (" …" if len(affected) > 6 else "")
    what = {"split_cell_by_line": "Split by line", "split_cell_by_seeds": "Split by seeds", "merge_cells": "Merged",
            "delete_cells": "Deleted", "draw_cell": "New cell", "grow_cell": "Grown", "shrink_cell": "Shrunk"}
    return f"{what.get(name, name.replace('_', ' '))}: cells {ids}. Undo: {key_label(SHORTCUTS['undo'])}."


def key_label(key: str) -> str:
    return key.replace("Control", "Ctrl").replace("-", "+")


def nuclear_index(names) -> int:
    """The first nuclear channel of ``names`` (0 when there is none)."""
    low = [str(n).lower() for n in names]
    for want in NUCLEAR_NAMES:
        for i, n in enumerate(low):
            if n == want or n.startswith(want):
                return i
    return 0


class OperationsView(QGroupBox):
    """The operation buttons, N (px), "Overwrite neighbours" (for a new cell), the nuclear channel."""

    def __init__(self, dock):
        super().__init__("Operations")
        self.dock = dock

        def op_button(text, key, tip):
            b = QPushButton(f"{text} ({key_label(SHORTCUTS[key])})")
            b.setToolTip(tip)
            return b

        self.merge_button = op_button("Merge", "merge", "Merge the selected cells into one (the largest id stays)")
        self.line_button = op_button("Split by line", "split_line",
                                     "Draw a line across the cell, then press again: the cell is cut along it")
        self.seeds_button = op_button("Split by seeds", "split_seeds",
                                      "Click one seed per nucleus, then press again: watershed on the nuclear channel")
        self.delete_button = op_button("Delete", "delete", "Delete the selected cells (debris, artefacts)")
        self.draw_button = op_button("New cell", "draw",
                                     "Draw a polygon around a missed cell, then press again: it becomes a new id")
        self.grow_button = op_button("Grow", "grow", "Grow the selected cells by N px into the background")
        self.shrink_button = op_button("Shrink", "shrink", "Shrink the selected cells by N px")
        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 50)
        self.n_spin.setValue(2)
        self.n_spin.setSuffix(" px")
        self.overwrite_box = QCheckBox("Overwrite neighbours")
        self.overwrite_box.setToolTip("A new cell drawn over its neighbours takes their pixels (off: only background)")
        self.nuclear_box = QComboBox()
        self.nuclear_box.setToolTip("Channel used by the seeded watershed")
        ol = QGridLayout(self)
        ol.addWidget(self.merge_button, 0, 0)
        ol.addWidget(self.delete_button, 0, 1)
        ol.addWidget(self.line_button, 1, 0)
        ol.addWidget(self.seeds_button, 1, 1)
        ol.addWidget(self.draw_button, 2, 0)
        ol.addWidget(self.overwrite_box, 2, 1)
        ol.addWidget(self.grow_button, 3, 0)
        ol.addWidget(self.shrink_button, 3, 1)
        ol.addWidget(QLabel("N"), 4, 0, Qt.AlignRight)
        ol.addWidget(self.n_spin, 4, 1)
        ol.addWidget(QLabel("Nuclear channel"), 5, 0, Qt.AlignRight)
        ol.addWidget(self.nuclear_box, 5, 1)
        self.merge_button.clicked.connect(lambda: self.merge())
        self.delete_button.clicked.connect(lambda: self.delete())
        self.line_button.clicked.connect(lambda: self.split_by_line())
        self.seeds_button.clicked.connect(lambda: self.split_by_seeds())
        self.draw_button.clicked.connect(lambda: self.draw_cell())
        self.grow_button.clicked.connect(lambda: self.grow())
        self.shrink_button.clicked.connect(lambda: self.shrink())

    def buttons(self):
        return (self.merge_button, self.delete_button, self.line_button, self.seeds_button, self.draw_button,
                self.grow_button, self.shrink_button)

    def set_channels(self, sample) -> None:
        self.nuclear_box.clear()
        if sample is not None and sample.image:
            self.nuclear_box.addItems(list(sample.channel_names))
            self.nuclear_box.setCurrentIndex(nuclear_index(sample.channel_names))

    # ------------------------------------------------------------------ plumbing
    def _cells(self, at_least: int = 1) -> list[int] | None:
        """The selection, or the edit layer's picked label when nothing is selected."""
        d = self.dock
        ids = list(d.selection)
        if not ids and d.edit_layer is not None and d.edit_layer.selected_label:
            sel = int(d.edit_layer.selected_label)
            if (d.region.data == sel).any():
                ids = [sel]
        if len(ids) < at_least:
            notify(f"Select {'at least ' + str(at_least) + ' cells' if at_least > 1 else 'a cell'} first "
                   "(Pick cells, or Alt+click).", "warning")
            return None
        return ids

    def _ready(self) -> bool:
        d = self.dock
        if d.region is None:
            notify("Load an edit region first (Edit view / Edit rectangle).", "warning")
            return False
        if d.is_busy:
            notify(f"{d.session.busy(d.sid) or 'A commit is running'}; try again in a moment.", "warning")
            return False
        return True

    def _run(self, name: str, op, *args, **kw):
        """Run a :class:`RegionEdit` operation (one undo step); commit when auto-commit is on."""
        try:
            affected = op(*args, **kw)
        except (ValueError, IndexError) as err:
            notify(f"{name.replace('_', ' ')}: {err}", "warning" if isinstance(err, ValueError) else "error")
            return None
        if not affected:
            notify(f"{name.replace('_', ' ')}: nothing changed", "warning")
            return None
        d = self.dock
        self.after_pixels()
        # the tool's hint is done with: say what happened, back to the edit layer
        d.set_status(_outcome(name, affected))
        if d.edit_layer is not None and d.edit_layer in d.viewer.layers:
            d.activate(d.edit_layer)
            d.edit_layer.mode = "pan_zoom"
        if d.commit_view.auto_box.isChecked():
            d.commit_view.commit()
        return affected

    def after_pixels(self):
        d = self.dock
        if d.edit_layer is not None:
            self.show_change()
        d.tools.refresh_selection()
        d.update_state()

    def show_change(self) -> None:
        """Redraw only the box the last operation / undo / redo changed: its pixels go through
        napari's public ``Labels.data_setitem`` (a partial refresh: outlines recomputed for that
        box only; a full ``refresh()`` of a 4096-px region costs ~0.5 s)."""
        d = self.dock
        lyr, ch = d.edit_layer, d.edit.last_change if d.edit is not None else None
        if d.edit is not None:
            d.edit.last_change = None
        if ch is None or lyr.data is not d.region.data:
            lyr.refresh()
            return
        y0, y1, x0, x1, old, new = ch
        diff = old != new
        if not diff.any():
            return
        yy, xx = np.nonzero(diff)
        d.region.data[y0:y1, x0:x1][diff] = old[diff]   # napari writes the new pixels itself
        lyr.data_setitem((yy + y0, xx + x0), new[diff])

    def _start_tool(self, what: str, mode: str, msg: str):
        d = self.dock
        lyr = d.region_view.tool_layer(what)
        d.activate(lyr)
        lyr.mode = mode
        d.tools.pick_button.setChecked(False)
        d.set_status(msg)
        notify(msg)

    # ------------------------------------------------------------------ operations
    def merge(self, ids=None):
        """Merge the selected cells (or ``ids``) into one."""
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(2)
        if not ids or len(ids) < 2:
            return None
        return self._run("merge_cells", self.dock.edit.merge, ids)

    def delete(self, ids=None):
        """Delete the selected cells (or ``ids``)."""
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(1)
        if not ids:
            return None
        return self._run("delete_cells", self.dock.edit.delete, ids)

    def _resize(self, which: str, ids, n):
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(1)
        if not ids:
            return None
        op = getattr(self.dock.edit, which)
        return self._run(f"{which}_cell", op, ids, int(n if n is not None else self.n_spin.value()))

    def grow(self, ids=None, n=None):
        """Grow the selected cells (or ``ids``) by ``n`` px (default: N)."""
        return self._resize("grow", ids, n)

    def shrink(self, ids=None, n=None):
        """Shrink the selected cells (or ``ids``) by ``n`` px (default: N)."""
        return self._resize("shrink", ids, n)

    def split_by_line(self, line_yx=None, cell: int | None = None):
        """Cut a cell along the last line drawn on the line layer (crop (y, x) pixels). Without a
        line the line tool is activated. The cell is ``cell``, the single selected cell, or the
        cell the line crosses most."""
        if not self._ready():
            return None
        if line_yx is None:
            lyr = self.dock.region_view.tool_layer("line")
            if not len(lyr.data):
                return self._start_tool("line", "add_path", "Draw a line across the cell (double-click ends it), "
                                        f"then press Split by line ({key_label(SHORTCUTS['split_line'])}) again.")
            line_yx = np.asarray(lyr.data[-1])[:, -2:]
            lyr.data = []
        return self._run("split_cell_by_line", self.dock.edit.split_by_line, line_yx, cell)

    def _nuclear_crop(self) -> np.ndarray | None:
        s = self.dock.sample
        if not s.image or self.nuclear_box.currentIndex() < 0:
            return None
        y0, x0, y1, x1 = self.dock.region.bbox
        return np.asarray(s.image[0][self.nuclear_box.currentIndex(), y0:y1, x0:x1])

    def split_by_seeds(self, seeds_yx=None, cell: int | None = None):
        """Split a cell by a watershed on the nuclear channel from the seeds of the seeds layer."""
        if not self._ready():
            return None
        if seeds_yx is None:
            lyr = self.dock.region_view.tool_layer("seeds")
            if len(lyr.data) < 2:
                return self._start_tool("seeds", "add", "Click one seed per nucleus (at least 2) in the cell, then "
                                        f"press Split by seeds ({key_label(SHORTCUTS['split_seeds'])}) again.")
            seeds_yx = np.asarray(lyr.data)[:, -2:]
            lyr.data = np.zeros((0, 2))
        return self._run("split_cell_by_seeds", self.dock.edit.split_by_seeds, np.asarray(seeds_yx, float), cell,
                         intensity=self._nuclear_crop())

    def draw_cell(self, polygons=None):
        """Turn the polygons of the polygon layer (crop (y, x) vertices) into new cells."""
        d = self.dock
        if not self._ready():
            return None
        if polygons is None:
            lyr = d.region_view.tool_layer("polygon")
            if not len(lyr.data):
                return self._start_tool("polygon", "add_polygon", "Draw a polygon around the missed cell "
                                        f"(double-click closes it), then press New cell "
                                        f"({key_label(SHORTCUTS['draw'])}) again.")
            polygons = [np.asarray(p)[:, -2:] for p in lyr.data]
            lyr.data = []
        out = self._run("draw_cell", d.edit.draw, polygons, overwrite=self.overwrite_box.isChecked())
        if out and d.edit_layer is not None:
            d.activate(d.edit_layer)
        return out

    # ------------------------------------------------------------------ undo (the region's own stack)
    def undo(self):
        """Undo the last step (a paint stroke or an operation); commit if auto-commit."""
        d = self.dock
        if d.edit is None or d.is_busy:
            return
        name = d.edit.undo()
        if name is None:
            d.set_status("Nothing to undo")
            return
        self.after_pixels()
        d.set_status(f"Undone: {name}")
        if d.commit_view.auto_box.isChecked():
            d.commit_view.commit(action="segmentation.undo")

    def redo(self):
        """Redo the last undone step; commit if auto-commit."""
        d = self.dock
        if d.edit is None or d.is_busy:
            return
        name = d.edit.redo()
        if name is None:
            d.set_status("Nothing to redo")
            return
        self.after_pixels()
        d.set_status(f"Redone: {name}")
        if d.commit_view.auto_box.isChecked():
            d.commit_view.commit(action="segmentation.redo")
