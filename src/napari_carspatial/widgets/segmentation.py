"""The "Segmentation" dock: correct a sample's cell mask region by region, re-measure what changed.

Workflow (all the work is in :mod:`napari_carspatial._napari.seg_edit`, no Qt there):

1. **Edit region**: "Edit current view" or "Edit rectangle…" loads that part of the mask at full
   resolution into an editable labels layer ``"<sample> edit"`` placed exactly over the slide
   (same scale and units, translate = sample translate + region origin). napari's paint, erase,
   fill and picker work on it (buttons or napari's own keys 1-6 when it is selected).
2. **Cells**: "Pick cells" (or Alt+click in any mode) adds / removes the cell under the cursor to
   the selection shown in the dock (outlined in yellow); without a selection the layer's
   selected label is used.
3. **Operations** (shortcuts on the viewer while the dock is open):

   ============================ ============
   Merge selected cells          Shift+M
   Split by a drawn line         Shift+K
   Split by seeds (watershed)    Shift+W
   Delete selected cells         Shift+D
   New cell from a polygon       Shift+N
   Grow / shrink by N px         Shift+G / Shift+H
   Undo / redo                   Ctrl+Z / Ctrl+Shift+Z
   Commit                        Shift+Enter
   ============================ ============

   Lines, seeds and polygons are drawn on helper layers placed over the region (the dock
   activates the right one in the right mode); pressing the operation again applies it.
4. **Commit** writes the changed pixels back to the mask store (the working copy next to the
   mask, never the original), updates the displayed pyramid for that region, re-measures only
   the affected cells and updates the table (new cells "unassigned", merged cells keep the type
   covering most of their area, reported). Large commits run in a worker thread.
5. **Save corrected mask…** writes ``<stem>.corrected.zarr`` next to the original mask and the
   table (``io.write_table``) under a name you choose.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._napari import (
    META_ROLE,
    META_SAMPLE,
    hover_features,
    notify,
    session_for,
    visible_world_rect,
)
from .._napari import seg_edit as se
from ..model import SampleError
from ._common import BusyNotice, refill_sample_combo

log = logging.getLogger(__name__)

#: ``layer.metadata`` roles of the layers this dock adds
ROLE_EDIT = "seg-edit"
ROLE_EDIT_SELECTION = "seg-edit-selection"
ROLE_EDIT_TOOL = "seg-edit-tool"
#: names of nuclear channels (first match wins) for the seeded watershed
NUCLEAR_NAMES = ("dapi", "hoechst", "dna", "dna1", "nuclear", "nucleus", "h3", "histone")
#: undo steps kept per region
MAX_UNDO = 50

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


def _notify(msg: str, level: str = "info") -> None:
    notify(msg, level)


def _key_label(key: str) -> str:
    return key.replace("Control", "Ctrl").replace("-", "+")


class SegmentationWidget(QWidget):
    """Segmentation-correction dock (see the module docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    """

    #: longest side (pixels) of an edit region; larger views are cut around their centre
    MAX_REGION = 4096
    #: commits whose region has more pixels than this run in a worker thread
    THREAD_MIN_PIXELS = 1536 * 1536

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.sid: str | None = None
        self.region: se.EditRegion | None = None
        self.edit_layer = None
        self.selection: list[int] = []
        self.last_result: se.CommitResult | None = None
        self.last_saved: tuple[Path, Path] | None = None
        self.busy = False
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []
        self._shadow: np.ndarray | None = None
        self._pending_ops: list[str] = []
        self._bound: dict[str, tuple] = {}
        self._geom = ((1.0, 1.0), (0.0, 0.0), ("pixel", "pixel"))

        # ------------------------------------------------------------ sample and region
        self.sample_box = QComboBox()
        self.view_button = QPushButton("Edit current view")
        self.view_button.setToolTip("Load the part of the mask shown on screen at full resolution for editing")
        self.rect_button = QPushButton("Edit rectangle…")
        self.rect_button.setToolTip("Draw a rectangle on the slide; it is loaded at full resolution for editing")
        self.close_button = QPushButton("Close region")
        self.close_button.setToolTip("Commit pending edits and remove the editing layers")
        self.region_label = QLabel("No region loaded")
        self.region_label.setWordWrap(True)
        reg = QGroupBox("Edit region")
        rl = QGridLayout(reg)
        rl.addWidget(QLabel("Sample"), 0, 0)
        rl.addWidget(self.sample_box, 0, 1, 1, 2)
        rl.addWidget(self.view_button, 1, 0)
        rl.addWidget(self.rect_button, 1, 1)
        rl.addWidget(self.close_button, 1, 2)
        rl.addWidget(self.region_label, 2, 0, 1, 3)

        # ------------------------------------------------------------ napari tools + selection
        self.paint_button = QPushButton("Paint")
        self.erase_button = QPushButton("Erase")
        self.fill_button = QPushButton("Fill")
        self.pan_button = QPushButton("Pan")
        for b, tip in ((self.paint_button, "napari paint (2 / P) with the selected label"),
                       (self.erase_button, "napari erase (1 / E)"), (self.fill_button, "napari fill (4 / F)"),
                       (self.pan_button, "pan / zoom (6 / Z)")):
            b.setToolTip(tip)
        self.new_label_button = QPushButton("New id")
        self.new_label_button.setToolTip("Paint with a fresh cell id (max id ever used + 1)")
        self.pick_button = QPushButton("Pick cells")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click cells to add / remove them from the selection, shown under a white veil (Alt+click works in any mode)")
        self.clear_button = QPushButton("Clear")
        self.selection_label = QLabel("No cells selected")
        self.selection_label.setWordWrap(True)
        tools = QGroupBox("Paint and select")
        tl = QGridLayout(tools)
        for i, b in enumerate((self.paint_button, self.erase_button, self.fill_button, self.pan_button,
                               self.new_label_button)):
            tl.addWidget(b, 0, i)
        tl.addWidget(self.pick_button, 1, 0, 1, 2)
        tl.addWidget(self.clear_button, 1, 2)
        tl.addWidget(self.selection_label, 2, 0, 1, 5)

        # ------------------------------------------------------------ operations
        def op_button(text, key, tip):
            b = QPushButton(f"{text}  ({_key_label(SHORTCUTS[key])})")
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
        self.overwrite_box = QCheckBox("New cell overwrites neighbours")
        self.nuclear_box = QComboBox()
        self.nuclear_box.setToolTip("Channel used by the seeded watershed")
        ops = QGroupBox("Operations")
        ol = QGridLayout(ops)
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

        # ------------------------------------------------------------ commit and save
        self.undo_button = QPushButton(f"Undo ({_key_label(SHORTCUTS['undo'])})")
        self.redo_button = QPushButton(f"Redo ({_key_label(SHORTCUTS['redo'])})")
        self.commit_button = QPushButton(f"Commit ({_key_label(SHORTCUTS['commit'])})")
        self.commit_button.setToolTip("Write the edits to the mask and re-measure the affected cells")
        self.auto_box = QCheckBox("Commit after each operation")
        self.auto_box.setChecked(True)
        self.auto_box.setToolTip("The table follows every operation at once; painting is committed with Commit")
        self.save_button = QPushButton("Save corrected mask…")
        self.save_button.setToolTip("Write <mask>.corrected.zarr next to the original mask and the table under a new name")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray")
        cl = QHBoxLayout()
        cl.addWidget(self.undo_button)
        cl.addWidget(self.redo_button)
        cl.addWidget(self.commit_button)

        self.busy_notice = BusyNotice(self.session, lambda: self.sid, on_change=lambda _b: self._update_state())
        lay = QVBoxLayout(self)
        lay.addWidget(self.busy_notice)
        lay.addWidget(reg)
        lay.addWidget(tools)
        lay.addWidget(ops)
        lay.addLayout(cl)
        lay.addWidget(self.auto_box)
        lay.addWidget(self.save_button)
        lay.addWidget(self.result_label)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.setMinimumWidth(380)

        # ------------------------------------------------------------ wiring
        self.sample_box.currentIndexChanged.connect(self._on_sample)
        self.view_button.clicked.connect(lambda: self.edit_view())
        self.rect_button.clicked.connect(self.start_rectangle)
        self.close_button.clicked.connect(lambda: self.close_region())
        self.paint_button.clicked.connect(lambda: self.set_mode("paint"))
        self.erase_button.clicked.connect(lambda: self.set_mode("erase"))
        self.fill_button.clicked.connect(lambda: self.set_mode("fill"))
        self.pan_button.clicked.connect(lambda: self.set_mode("pan_zoom"))
        self.new_label_button.clicked.connect(self.new_label)
        self.pick_button.toggled.connect(self._on_pick)
        self.clear_button.clicked.connect(self.clear_selection)
        self.merge_button.clicked.connect(lambda: self.merge())
        self.delete_button.clicked.connect(lambda: self.delete())
        self.line_button.clicked.connect(lambda: self.split_by_line())
        self.seeds_button.clicked.connect(lambda: self.split_by_seeds())
        self.draw_button.clicked.connect(lambda: self.draw_cell())
        self.grow_button.clicked.connect(lambda: self.grow())
        self.shrink_button.clicked.connect(lambda: self.shrink())
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.commit_button.clicked.connect(lambda: self.commit())
        self.save_button.clicked.connect(self.save_dialog)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.session.events.sample_added.connect(self._on_layers_changed)
        self.session.events.sample_removed.connect(self._on_layers_changed)
        self._bind_keys()
        self._on_layers_changed()
        self._update_state()

    # ================================================================== sample
    @property
    def sample(self):
        return self.session.sample(self.sid)

    @property
    def editor(self) -> se.SegmentationEditor | None:
        """The sample's segmentation editor (kept in the session with the sample)."""
        s = self.sample
        if s is None:
            return None
        return self.session.cached(self.sid, ("segmentation_editor",),
                                   lambda: se.SegmentationEditor(s, reviewer=self.session.reviewer))

    @property
    def is_busy(self) -> bool:
        """A commit or save of this dock runs, or another worker writes the sample's table."""
        return self.busy or bool(self.session.busy(self.sid))

    def _on_layers_changed(self, event=None):
        changed, _ = refill_sample_combo(self.sample_box, self.session, where=lambda s: bool(s.labels))
        if changed:
            self._on_sample()
        if self.edit_layer is not None and self.edit_layer not in self.viewer.layers:
            self._drop_region()

    def _on_sample(self, *_):
        sid = self.sample_box.currentData()
        if sid == self.sid:
            return
        if self.region is not None:
            self.close_region()
        self.sid = sid
        self.nuclear_box.clear()
        s = self.sample
        if s is not None and s.image:
            self.nuclear_box.addItems(list(s.channel_names))
            self.nuclear_box.setCurrentIndex(self._nuclear_index(s.channel_names))
        self._update_state()

    @staticmethod
    def _nuclear_index(names) -> int:
        low = [str(n).lower() for n in names]
        for want in NUCLEAR_NAMES:
            for i, n in enumerate(low):
                if n == want or n.startswith(want):
                    return i
        return 0

    def _slide_geometry(self):
        """(scale, translate, units) of the sample's labels layer (world = px * scale + translate)."""
        return self.session.geometry(self.sid)

    # ================================================================== regions
    def edit_view(self):
        """Load the part of the mask shown on screen (cut to :attr:`MAX_REGION` around its centre)."""
        if self.sample is None:
            _notify("Open a sample with a cell mask first.", "warning")
            return None
        (sy, sx), (ty, tx), _ = self._slide_geometry()
        wy0, wx0, wy1, wx1 = visible_world_rect(self.viewer)
        return self.edit_rect((wy0 - ty) / sy, (wx0 - tx) / sx, (wy1 - ty) / sy, (wx1 - tx) / sx)

    def edit_rect(self, y0: float, x0: float, y1: float, x1: float):
        """Load the level-0 pixel box (y0, x0, y1, x1) of the current sample for editing."""
        ed = self.editor
        if ed is None:
            _notify("Open a sample with a cell mask first.", "warning")
            return None
        y0, x0, y1, x1 = int(np.floor(y0)), int(np.floor(x0)), int(np.ceil(y1)), int(np.ceil(x1))
        cut = False
        for a, b in ((0, 2), (1, 3)):
            box = [y0, x0, y1, x1]
            if box[b] - box[a] > self.MAX_REGION:
                c = (box[a] + box[b]) // 2
                box[a], box[b] = c - self.MAX_REGION // 2, c + self.MAX_REGION // 2
                y0, x0, y1, x1 = box
                cut = True
        if self.region is not None:
            self.close_region()
        try:
            self.region = ed.region(y0, y1, x0, x1)
        except (ValueError, SampleError, OSError) as err:
            _notify(f"Cannot load the region: {err}", "error")
            return None
        if cut:
            _notify(f"Edit regions are at most {self.MAX_REGION} px wide: zoom in to edit another part.", "warning")
        self._undo.clear()
        self._redo.clear()
        self._pending_ops.clear()
        self._shadow = self.region.data.copy()
        self._add_edit_layer()
        r = self.region
        self.region_label.setText(f"Editing rows {r.y0}–{r.bbox[2]}, columns {r.x0}–{r.bbox[3]} "
                                  f"({r.data.shape[1]} × {r.data.shape[0]} px, "
                                  f"{len(np.unique(r.data)) - (1 if (r.data == 0).any() else 0)} cells)")
        self._update_state()
        return self.region

    def _layer_kwargs(self) -> dict:
        (sy, sx), (ty, tx), units = self._slide_geometry()
        r = self.region
        return {"scale": (sy, sx), "translate": (ty + r.y0 * sy, tx + r.x0 * sx), "units": units}

    def _add_edit_layer(self):
        s = self.sample
        kw = self._layer_kwargs()
        # a frame shows where the editable region is
        (sy, sx), _, _ = self._slide_geometry()
        h, w_ = self.region.data.shape
        frame = self.viewer.add_shapes([np.array([[-0.5, -0.5], [h - 0.5, w_ - 0.5]])], shape_type="rectangle",
                                       name=f"{s.name} edit region", edge_color="white", face_color="transparent",
                                       edge_width=2.5 * sy, opacity=0.8,
                                       metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_EDIT_TOOL,
                                                 "tool": "frame"}, **kw)
        frame.editable = False
        # outlines in per-cell colours: the markers underneath stay readable (napari's contour = 0 fills)
        lyr = self.viewer.add_labels(self.region.data, name=f"{s.name} edit", opacity=0.9, blending="translucent",
                                     metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_EDIT}, **kw)
        lyr.contour = 1
        feats = hover_features(s)
        if feats is not None:
            lyr.features = feats
        lyr.brush_size = 6
        lyr.mouse_drag_callbacks.append(self._on_click)
        for key, fn in (("Control-Z", lambda _l: self.undo()), ("Control-Shift-Z", lambda _l: self.redo())):
            lyr.bind_key(key, fn, overwrite=True)
        self.edit_layer = lyr
        self._refresh_selection()
        self._activate(lyr)

    def _activate(self, lyr):
        self.viewer.layers.selection.active = lyr

    def start_rectangle(self):
        """Activate a rectangle tool; the first rectangle drawn is loaded as the edit region."""
        if self.sample is None:
            _notify("Open a sample with a cell mask first.", "warning")
            return None
        (sy, sx), (ty, tx), units = self._slide_geometry()
        lyr = self._tool_layer("region", "shapes", scale=(sy, sx), translate=(ty, tx), units=units,
                               edge_color="yellow", face_color="transparent", edge_width=2)
        lyr.mode = "add_rectangle"
        self._activate(lyr)
        self.status.setText("Draw a rectangle on the slide: it opens at full resolution.")

        def _done(event=None):
            if getattr(event, "action", "added") not in ("added", None) or not len(lyr.data):
                return
            p = np.asarray(lyr.data[-1])[:, -2:]
            lyr.events.data.disconnect(_done)
            if lyr in self.viewer.layers:
                self.viewer.layers.remove(lyr)
            self.edit_rect(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())

        lyr.events.data.connect(_done)
        return lyr

    def _tool_layer(self, what: str, kind: str, **kw):
        """The helper layer ``what`` (line, seeds, polygon, region) of this sample, created on demand."""
        name = f"{self.sample.name} {what}"
        for lyr in self.viewer.layers:
            if lyr.name == name and lyr.metadata.get(META_ROLE) == ROLE_EDIT_TOOL:
                return lyr
        meta = {META_SAMPLE: self.sid, META_ROLE: ROLE_EDIT_TOOL, "tool": what}
        if not kw:
            kw = self._layer_kwargs()
        if kind == "shapes":
            kw.setdefault("edge_color", "cyan")
            kw.setdefault("face_color", "transparent")
            kw.setdefault("edge_width", 2.5)
            lyr = self.viewer.add_shapes(name=name, metadata=meta, ndim=2, **kw)
        else:
            lyr = self.viewer.add_points(name=name, metadata=meta, ndim=2, face_color="magenta", size=6 * kw["scale"][0],
                                         border_color="white", **kw)
        return lyr

    def tool_layer(self, what: str):
        """The helper layer for ``"line"``, ``"seeds"`` or ``"polygon"`` (created over the region)."""
        if self.region is None:
            raise RuntimeError("no edit region")
        return self._tool_layer(what, "points" if what == "seeds" else "shapes")

    def close_region(self, *, commit: bool = True):
        """Commit pending edits (synchronously) and remove the editing layers."""
        if self.region is not None and commit and self._dirty():
            self.commit(wait=True)
        self._drop_region()

    def _drop_region(self):
        self.edit_layer = None
        self.region = None
        for lyr in list(self.viewer.layers):
            if (lyr.metadata.get(META_SAMPLE) == self.sid
                    and lyr.metadata.get(META_ROLE) in (ROLE_EDIT, ROLE_EDIT_SELECTION, ROLE_EDIT_TOOL)
                    and lyr in self.viewer.layers):
                self.viewer.layers.remove(lyr)
        self.selection = []
        self._shadow = None
        self._undo.clear()
        self._redo.clear()
        self.pick_button.setChecked(False)
        self.region_label.setText("No region loaded")
        self._update_selection_label()
        self._update_state()

    # ================================================================== napari modes and selection
    def set_mode(self, mode: str):
        """Select the edit layer and set its napari mode (``paint``, ``erase``, ``fill``, ``pan_zoom``...)."""
        if self.edit_layer is None:
            return
        if mode != "pan_zoom":
            self.pick_button.setChecked(False)
        self._activate(self.edit_layer)
        self.edit_layer.mode = mode

    def new_label(self) -> int | None:
        """Paint with a new unique id."""
        ed = self.editor
        if ed is None or self.edit_layer is None:
            return None
        nid = ed.new_id()
        self.edit_layer.selected_label = nid
        self.set_mode("paint")
        self.status.setText(f"Painting new cell {nid}")
        return nid

    def _on_pick(self, on: bool):
        if on and self.edit_layer is not None:
            self._activate(self.edit_layer)
            self.edit_layer.mode = "pan_zoom"
            self.status.setText("Click cells to add or remove them from the selection.")

    def _on_click(self, layer, event):
        if not (self.pick_button.isChecked() or "Alt" in {str(m) for m in event.modifiers}):
            return
        if layer.mode not in ("pan_zoom", "paint", "erase", "fill", "picker") and not self.pick_button.isChecked():
            return
        data_pos = layer.world_to_data(event.position)
        y, x = (round(float(v)) for v in data_pos[-2:])
        d = self.region.data
        if 0 <= y < d.shape[0] and 0 <= x < d.shape[1] and d[y, x]:
            self.toggle_cell(int(d[y, x]))

    def toggle_cell(self, cell: int):
        """Add ``cell`` to the selection, or remove it when it is selected."""
        if cell in self.selection:
            self.selection.remove(cell)
        else:
            self.selection.append(cell)
        self._refresh_selection()

    def select_cells(self, ids):
        """Replace the selection by ``ids``."""
        self.selection = [int(i) for i in ids if int(i) > 0]
        self._refresh_selection()

    def clear_selection(self):
        self.selection = []
        self._refresh_selection()

    def _refresh_selection(self):
        if self.region is not None:
            self.selection = [c for c in self.selection if (self.region.data == c).any()]
        self._update_selection_label()
        if self.region is None:
            return
        lyr = next(iter(self.session.layers_of(self.sid, ROLE_EDIT_SELECTION)), None)
        if not self.selection:
            if lyr is not None:
                lyr.data = np.zeros((1, 1), np.uint8)
                lyr.visible = False
            return
        mask = np.isin(self.region.data, self.selection).astype(np.uint8)
        if lyr is None:
            from napari.utils.colormaps import DirectLabelColormap

            # a white veil over the selected cells: distinct from every outline colour of the edit layer
            cmap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: (1.0, 1.0, 1.0, 0.45)})
            active = self.viewer.layers.selection.active
            lyr = self.viewer.add_labels(mask, name=f"{self.sample.name} selected cells", colormap=cmap, opacity=1.0,
                                         metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_EDIT_SELECTION},
                                         **self._layer_kwargs())
            lyr.editable = False
            if active is not None:
                self._activate(active)
        else:
            lyr.data = mask
            lyr.translate = self._layer_kwargs()["translate"]
            lyr.visible = True

    def _update_selection_label(self):
        if not self.selection:
            hint = " (picked label used)" if self.edit_layer is not None else ""
            self.selection_label.setText("No cells selected" + hint)
            return
        types = self._types(self.selection)
        txt = ", ".join(f"{c}" + (f" ({types[c]})" if types.get(c) else "") for c in self.selection[:8])
        more = f" … +{len(self.selection) - 8}" if len(self.selection) > 8 else ""
        self.selection_label.setText(f"{len(self.selection)} selected: {txt}{more}")

    def _types(self, ids) -> dict[int, str]:
        from .._napari import guess_type_key
        from ..model import instance_ids

        t = self.sample.table if self.sample is not None else None
        if t is None:
            return {}
        key = guess_type_key(t)
        if key is None:
            return {}
        tid = instance_ids(t)
        pos = {int(i): k for k, i in enumerate(tid)}
        col = t.obs[key]
        return {int(c): str(col.iloc[pos[int(c)]]) for c in ids if int(c) in pos}

    def _cells(self, at_least: int = 1) -> list[int] | None:
        ids = list(self.selection)
        if not ids and self.edit_layer is not None and self.edit_layer.selected_label:
            sel = int(self.edit_layer.selected_label)
            if (self.region.data == sel).any():
                ids = [sel]
        if len(ids) < at_least:
            _notify(f"Select {'at least ' + str(at_least) + ' cells' if at_least > 1 else 'a cell'} first "
                    "(Pick cells, or Alt+click).", "warning")
            return None
        return ids

    # ================================================================== operations
    def _ready(self) -> bool:
        if self.region is None:
            _notify("Load an edit region first (Edit current view / Edit rectangle).", "warning")
            return False
        if self.is_busy:
            _notify(f"{self.session.busy(self.sid) or 'A commit is running'}; try again in a moment.", "warning")
            return False
        return True

    def _run(self, name: str, fn, *args, **kw):
        """Run an operation on the region; record it for undo; commit when auto-commit is on."""
        self._record_paint()
        try:
            affected = fn(self.region.data, *args, **kw)
        except (ValueError, IndexError) as err:
            _notify(f"{name}: {err}", "error")
            return None
        if not affected or not self._push_step(name):
            _notify(f"{name.replace('_', ' ')}: nothing changed", "warning")
            return None
        self._after_pixels()
        if self.auto_box.isChecked():
            self.commit()
        return sorted(int(a) for a in affected)

    def merge(self, ids=None):
        """Merge the selected cells (or ``ids``) into one."""
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(2)
        if not ids or len(ids) < 2:
            return None
        out = self._run("merge_cells", se.merge_cells, ids)
        self.clear_selection()
        return out

    def delete(self, ids=None):
        """Delete the selected cells (or ``ids``)."""
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(1)
        if not ids:
            return None
        out = self._run("delete_cells", se.delete_cells, ids)
        self.clear_selection()
        return out

    def _resize(self, fn, name, ids, n):
        if not self._ready():
            return None
        ids = list(ids) if ids is not None else self._cells(1)
        if not ids:
            return None
        n = int(n if n is not None else self.n_spin.value())

        def many(lab, cells, k):
            out = set()
            for c in cells:
                out |= fn(lab, int(c), k)
            return out

        return self._run(name, many, ids, n)

    def grow(self, ids=None, n=None):
        """Grow the selected cells (or ``ids``) by ``n`` px (default: the dock's N)."""
        return self._resize(se.grow_cell, "grow_cell", ids, n)

    def shrink(self, ids=None, n=None):
        """Shrink the selected cells (or ``ids``) by ``n`` px (default: the dock's N)."""
        return self._resize(se.shrink_cell, "shrink_cell", ids, n)

    def _cell_under(self, yx: np.ndarray) -> int | None:
        d = self.region.data
        yx = np.round(np.asarray(yx, float)).astype(int)
        ok = (yx[:, 0] >= 0) & (yx[:, 0] < d.shape[0]) & (yx[:, 1] >= 0) & (yx[:, 1] < d.shape[1])
        v = d[yx[ok, 0], yx[ok, 1]]
        v = v[v > 0]
        if not v.size:
            return None
        vals, counts = np.unique(v, return_counts=True)
        return int(vals[np.argmax(counts)])

    def _start_tool(self, what: str, mode: str, msg: str):
        lyr = self.tool_layer(what)
        self._activate(lyr)
        lyr.mode = mode
        self.pick_button.setChecked(False)
        self.status.setText(msg)
        _notify(msg)

    def split_by_line(self, line_yx=None, cell: int | None = None):
        """Cut a cell along the last line drawn on the line layer (crop (y, x) pixels).

        Without a line the line tool is activated. The cell is ``cell``, the single selected
        cell, or the cell the line crosses most.
        """
        from skimage.draw import line as draw_line

        if not self._ready():
            return None
        if line_yx is None:
            lyr = self.tool_layer("line")
            if not len(lyr.data):
                return self._start_tool("line", "add_path", "Draw a line across the cell (double-click ends it), "
                                        f"then press Split by line ({_key_label(SHORTCUTS['split_line'])}) again.")
            line_yx = np.asarray(lyr.data[-1])[:, -2:]
            lyr.data = []
        p = np.round(np.asarray(line_yx, float)).astype(int)
        if cell is None and len(self.selection) == 1:
            cell = self.selection[0]
        if cell is None:
            pts = [np.stack(draw_line(*a, *b), axis=1) for a, b in itertools.pairwise(p)]
            cell = self._cell_under(np.concatenate(pts)) if pts else None
        if cell is None:
            _notify("The line crosses no cell.", "warning")
            return None
        ed = self.editor
        out = self._run("split_cell_by_line", se.split_cell_by_line, int(cell), line_yx, ed.new_id)
        self.clear_selection()
        return out

    def _nuclear_crop(self) -> np.ndarray | None:
        s = self.sample
        if not s.image or self.nuclear_box.currentIndex() < 0:
            return None
        y0, x0, y1, x1 = self.region.bbox
        return np.asarray(s.image[0][self.nuclear_box.currentIndex(), y0:y1, x0:x1])

    def split_by_seeds(self, seeds_yx=None, cell: int | None = None):
        """Split a cell by a watershed on the nuclear channel from the seeds of the seeds layer."""
        if not self._ready():
            return None
        if seeds_yx is None:
            lyr = self.tool_layer("seeds")
            if len(lyr.data) < 2:
                return self._start_tool("seeds", "add", "Click one seed per nucleus (at least 2) in the cell, then "
                                        f"press Split by seeds ({_key_label(SHORTCUTS['split_seeds'])}) again.")
            seeds_yx = np.asarray(lyr.data)[:, -2:]
            lyr.data = np.zeros((0, 2))
        seeds_yx = np.asarray(seeds_yx, float)
        if cell is None:
            cell = self.selection[0] if len(self.selection) == 1 else self._cell_under(seeds_yx)
        if cell is None:
            _notify("The seeds are not in a cell.", "warning")
            return None
        out = self._run("split_cell_by_seeds", se.split_cell_by_seeds, int(cell), seeds_yx, self.editor.new_id,
                        intensity=self._nuclear_crop())
        self.clear_selection()
        return out

    def draw_cell(self, polygons=None):
        """Turn the polygons of the polygon layer (crop (y, x) vertices) into new cells."""
        if not self._ready():
            return None
        if polygons is None:
            lyr = self.tool_layer("polygon")
            if not len(lyr.data):
                return self._start_tool("polygon", "add_polygon", "Draw a polygon around the missed cell "
                                        f"(double-click closes it), then press New cell "
                                        f"({_key_label(SHORTCUTS['draw'])}) again.")
            polygons = [np.asarray(d)[:, -2:] for d in lyr.data]
            lyr.data = []
        ed = self.editor
        over = self.overwrite_box.isChecked()

        def draw_many(lab, polys):
            out = set()
            for poly in polys:
                out |= se.draw_cell(lab, poly, ed.new_id(), overwrite=over)
            return out

        out = self._run("draw_cell", draw_many, [np.asarray(p, float) for p in polygons])
        if out and self.edit_layer is not None:
            self._activate(self.edit_layer)
        return out

    # ================================================================== undo (diff steps)
    def _dirty(self) -> bool:
        return self.region is not None and bool((self.region.data != self.region.base).any())

    def _record_paint(self):
        """Pixels painted with napari since the last step become one undo step."""
        if self.region is not None and self._shadow is not None and self._push_step("paint"):
            self._clear_native_history()

    def _push_step(self, name: str) -> bool:
        d, s = self.region.data, self._shadow
        diff = d != s
        if not diff.any():
            return False
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        step = (name, y0, y1, x0, x1, s[y0:y1, x0:x1].copy(), d[y0:y1, x0:x1].copy())
        s[y0:y1, x0:x1] = d[y0:y1, x0:x1]
        self._undo.append(step)
        del self._undo[:-MAX_UNDO]
        self._redo.clear()
        self._pending_ops.append(name)
        self._update_state()
        return True

    def _native_history(self, which: str):
        lyr = getattr(self.edit_layer, "__wrapped__", self.edit_layer)  # napari's public proxy in tests
        return getattr(lyr, f"_{which}_history", None) if lyr is not None else None

    def _clear_native_history(self):
        for which in ("undo", "redo"):
            h = self._native_history(which)
            if h is not None:
                h.clear()

    def undo(self):
        """Undo the last paint stroke (napari's own undo) or the last operation; commit if auto-commit."""
        if self.region is None or self.is_busy:
            return
        if (self.region.data != self._shadow).any() and self._native_history("undo"):
            self.edit_layer.undo()
            return
        self._record_paint()
        if not self._undo:
            self.status.setText("Nothing to undo")
            return
        step = self._undo.pop()
        self._restore(step, before=True)
        self._redo.append(step)
        self._pending_ops.append(f"undo {step[0]}")
        self._after_pixels()
        self.status.setText(f"Undone: {step[0]}")
        if self.auto_box.isChecked():
            self.commit(action="segmentation.undo")

    def redo(self):
        """Redo the last undone step; commit if auto-commit."""
        if self.region is None or self.is_busy:
            return
        if self._native_history("redo"):
            self.edit_layer.redo()
            return
        if not self._redo:
            self.status.setText("Nothing to redo")
            return
        step = self._redo.pop()
        self._restore(step, before=False)
        self._undo.append(step)
        self._pending_ops.append(f"redo {step[0]}")
        self._after_pixels()
        self.status.setText(f"Redone: {step[0]}")
        if self.auto_box.isChecked():
            self.commit(action="segmentation.redo")

    def _restore(self, step, *, before: bool):
        _name, y0, y1, x0, x1, old, new = step
        block = old if before else new
        self.region.data[y0:y1, x0:x1] = block
        self._shadow[y0:y1, x0:x1] = block

    def _after_pixels(self):
        self._clear_native_history()
        if self.edit_layer is not None:
            self.edit_layer.refresh()
        self._refresh_selection()
        self._update_state()

    # ================================================================== commit
    def commit(self, *, action: str | None = None, wait: bool = False):
        """Write the region's edits back, re-measure the affected cells and refresh the display.

        Regions larger than :attr:`THREAD_MIN_PIXELS` are committed in a worker thread (the dock
        is disabled meanwhile) unless ``wait``. Returns the :class:`CommitResult` when run here.
        """
        if self.region is None or self.is_busy:
            return None
        self._record_paint()
        if not self._dirty():
            self.status.setText("Nothing to commit")
            return None
        ops = list(self._pending_ops)
        self._pending_ops = []
        if action is None:
            plain = [o for o in ops if " " not in o]
            action = f"segmentation.{plain[0]}" if len(set(plain)) == 1 and len(plain) == len(ops) else "segmentation.edit"
        note = "operations: " + ", ".join(ops) if ops else ""
        ed, region = self.editor, self.region
        if wait or region.data.size <= self.THREAD_MIN_PIXELS:
            try:
                res = ed.commit(region, action=action, note=note)
            except (SampleError, ValueError, OSError, KeyError) as err:
                self._commit_failed(err)
                return None
            self._committed(res)
            return res
        from napari.qt.threading import create_worker

        self._set_busy(True, "Committing: re-measuring the edited cells…")
        worker = create_worker(ed.commit, region, action=action, note=note)
        worker.returned.connect(self._committed)
        worker.errored.connect(self._commit_failed)
        worker.finished.connect(lambda: self._set_busy(False))
        worker.start()
        self._worker = worker
        return None

    def _set_busy(self, on: bool, msg: str = ""):
        self.busy = on
        self.session.set_busy(self.sid, (msg.rstrip("…").rstrip(".") or "working") if on else None)
        for w in (self.findChildren(QPushButton)):
            w.setEnabled(not on)
        if self.edit_layer is not None:
            self.edit_layer.editable = not on
        if msg:
            self.status.setText(msg)
        if not on:
            self._update_state()

    def _commit_failed(self, err):
        log.exception("commit failed", exc_info=err)
        _notify(f"Commit failed, the edits stay in the edit layer: {err}", "error")

    def _committed(self, res: se.CommitResult):
        """Main thread: the session shows the new mask and tells every dock the table changed
        (hover features, colouring, gating values follow); report."""
        self.last_result = res
        s = self.sample
        if s is None:
            return
        self.session.labels_changed(self.sid, res.bbox)
        self.session.table_changed(self.sid, structure=bool(res.added or res.removed),
                                   reason=f"segmentation: {res.message()}")
        feats = hover_features(s)
        if self.edit_layer is not None and feats is not None:
            self.edit_layer.features = feats
        msg = res.message()
        ms = 1000 * res.seconds.get("total", 0.0)
        self.result_label.setText(f"Last commit: {msg} ({ms:.0f} ms). Table: {s.table.n_obs:,} cells."
                                  if s.table is not None else f"Last commit: {msg}")
        self.status.setText("Committed")
        _notify(f"{s.name}: {msg}")
        self._update_state()

    # ================================================================== saving
    def save(self, table_path, mask_path=None, *, wait: bool = False):
        """Save the corrected mask (next to the original unless ``mask_path``) and the table.

        Pending edits are committed first. Runs in a worker thread unless ``wait``; sets
        :attr:`last_saved` = (mask folder, table file) when done.
        """
        ed = self.editor
        if ed is None:
            return None
        if self.is_busy:
            _notify(f"{self.session.busy(self.sid) or 'A commit is running'}; save again in a moment.", "warning")
            return None
        if self._dirty():
            self.commit(wait=True)
        s = self.sample
        src_table = s.paths.get("table")
        if src_table and os.path.abspath(table_path) == os.path.abspath(src_table):
            _notify(f"{table_path} is the source table; choose a new name.", "warning")
            return None

        def work():
            from ..io import write_table
            from ..io.mask_store import save_corrected_mask

            mask_src = s.paths.get("mask")
            out = save_corrected_mask(ed.store, mask_path, source=mask_src, pixel_size_um=s.pixel_size_um,
                                      note=f"napari-carspatial segmentation correction of {s.name}")
            paths = {k: v for k, v in s.paths.items() if k in ("image", "table")}
            paths["mask"] = out
            tab = write_table(s.table, table_path, overwrite=True, paths=paths)
            return out, tab

        def done(result):
            self.last_saved = result
            self.status.setText(f"Saved {result[0].name} and {result[1].name}")
            _notify(f"Corrected mask saved to {result[0]}; table to {result[1]}")

        def failed(err):
            _notify(f"Saving failed: {err}", "error")

        if wait:
            try:
                done(work())
            except (SampleError, ValueError, OSError) as err:
                failed(err)
            return self.last_saved
        from napari.qt.threading import create_worker

        self._set_busy(True, "Saving the corrected mask…")
        worker = create_worker(work)
        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: self._set_busy(False))
        worker.start()
        self._save_worker = worker
        return None

    def save_dialog(self):
        from ..io import proposed_name

        s = self.sample
        if s is None:
            return
        if s.paths.get("mask") is None:
            mask_dir = QFileDialog.getSaveFileName(self, "Save corrected mask as", f"{s.name}.corrected.zarr",
                                                   "OME-Zarr (*.zarr)")[0]
            if not mask_dir:
                return
        else:
            mask_dir = None
        src = s.paths.get("table") or s.paths.get("image") or os.path.join(os.path.expanduser("~"), f"{s.name}.h5ad")
        prop = proposed_name(src)
        path, _ = QFileDialog.getSaveFileName(self, "Save corrected table as", os.fspath(Path(prop).with_suffix(".h5ad")),
                                              "AnnData (*.h5ad);;AnnData zarr (*.zarr)")
        if path:
            self.save(path, mask_dir)

    # ================================================================== state and keys
    def _update_state(self):
        has = self.region is not None
        idle = not self.is_busy
        for b in (self.paint_button, self.erase_button, self.fill_button, self.pan_button, self.new_label_button,
                  self.pick_button, self.clear_button, self.merge_button, self.delete_button, self.line_button,
                  self.seeds_button, self.draw_button, self.grow_button, self.shrink_button, self.close_button,
                  self.undo_button, self.commit_button):
            b.setEnabled(has and idle)
        self.redo_button.setEnabled(has and bool(self._redo) and idle)
        for b in (self.view_button, self.rect_button, self.save_button):
            b.setEnabled(self.sid is not None and idle)
        if self._undo:
            self.undo_button.setToolTip(f"Undo: {self._undo[-1][0]}")
        if self._redo:
            self.redo_button.setToolTip(f"Redo: {self._redo[-1][0]}")

    def _bind_keys(self):
        """The dock's shortcuts (:data:`SHORTCUTS`), through the viewer's
        :class:`~._keys.KeyDispatcher`: the Curation dock's Ctrl+Z / Ctrl+Shift+Z and ours no
        longer replace each other; the dock on screen used last gets the press.
        """
        from ._keys import get_dispatcher

        acts = {"merge": lambda v: self.merge(), "split_line": lambda v: self.split_by_line(),
                "split_seeds": lambda v: self.split_by_seeds(), "delete": lambda v: self.delete(),
                "draw": lambda v: self.draw_cell(), "grow": lambda v: self.grow(), "shrink": lambda v: self.shrink(),
                "undo": lambda v: self.undo(), "redo": lambda v: self.redo(), "commit": lambda v: self.commit()}
        keys = {SHORTCUTS[name]: fn for name, fn in acts.items()}
        get_dispatcher(self.viewer).register(self, keys)
        self._bound = {key: (fn, None) for key, fn in keys.items()}

    def unbind_keys(self):
        """Remove this dock's key handlers (other docks' handlers stay)."""
        if self._bound:
            from ._keys import get_dispatcher

            with contextlib.suppress(ValueError, TypeError, RuntimeError):
                get_dispatcher(self.viewer).unregister(self)
        self._bound.clear()

    def cleanup(self):
        """Unbind keys (called when the dock closes); the edit layers stay until closed."""
        self.unbind_keys()

    def closeEvent(self, event):
        self.cleanup()
        super().closeEvent(event)

    def deleteLater(self):
        self.cleanup()
        super().deleteLater()
