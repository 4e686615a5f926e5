"""The Segmentation dock's "Edit region" section: load part of the mask at full resolution into an
editable labels layer placed exactly over the slide, the helper layers, closing the region."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QGridLayout, QGroupBox, QLabel, QPushButton

from ..._napari import META_ROLE, META_SAMPLE, find_cell_type_key, notify, visible_world_rect
from ...editing import RegionEdit
from ...model import SampleError

#: ``layer.metadata`` roles of the layers the dock adds
ROLE_EDIT = "seg-edit"
ROLE_EDIT_SELECTION = "seg-edit-selection"
ROLE_EDIT_TOOL = "seg-edit-tool"


def region_features(sample, ids, rows=None):
    """Hover features (``index`` = cell id and the cell-type column, as the slide's labels layer
    has) of the cells ``ids`` of an edit region only: looked up by row, never the table's 10^6
    rows. ``rows`` gives the table rows of ``ids`` (default: looked up here)."""
    import pandas as pd

    t = sample.table
    if t is None:
        return None
    ids = np.asarray(ids, dtype=np.int64).ravel()
    ids = ids[ids > 0]
    if rows is None:
        from ...model import instance_ids

        rows = pd.Index(instance_ids(t)).get_indexer(ids)
    rows = np.asarray(rows)
    ok = rows >= 0
    ids, rows = ids[ok], rows[ok]
    feats = {"index": ids}
    key = find_cell_type_key(t)
    for col in [c for c in (key, "acquisition") if c is not None and c in t.obs]:
        if col in feats:
            continue
        vals = t.obs[col].iloc[rows]
        feats[col] = vals.array.copy() if isinstance(vals.dtype, pd.CategoricalDtype) else vals.astype(str).to_numpy()
    return pd.DataFrame(feats)


class RegionView(QGroupBox):
    """Sample, "Edit view", "Edit rectangle…", "Close region"."""

    #: longest side (pixels) of an edit region; larger views are cut around their centre
    MAX_REGION = 4096

    def __init__(self, dock):
        super().__init__("Edit region")
        self.dock = dock
        self.viewer = dock.viewer
        self.sample_box = QComboBox()
        self.view_button = QPushButton("Edit view")
        self.view_button.setToolTip("Load the part of the mask shown on screen at full resolution for editing")
        self.rect_button = QPushButton("Edit rectangle…")
        self.rect_button.setToolTip("Draw a rectangle on the slide; it is loaded at full resolution for editing")
        self.close_button = QPushButton("Close region")
        self.close_button.setToolTip("Commit pending edits and remove the editing layers")
        self.region_label = QLabel("No region loaded")
        self.region_label.setWordWrap(True)
        # two lines always fit ("Editing 80 x 80 µm at x …, 42 cells" wraps in a narrow dock and
        # the scroll area's layout does not grow a wrapped label's row by itself)
        self.region_label.setMinimumHeight(2 * self.region_label.fontMetrics().lineSpacing() + 4)
        #: why the sample's segmentation may not be edited here (a review project's slide)
        self.read_only_label = QLabel()
        self.read_only_label.setWordWrap(True)
        self.read_only_label.setStyleSheet("color: #e0a000; font-weight: bold")
        self.read_only_label.hide()
        rl = QGridLayout(self)
        rl.addWidget(QLabel("Sample"), 0, 0)
        rl.addWidget(self.sample_box, 0, 1, 1, 2)
        rl.addWidget(self.view_button, 1, 0)
        rl.addWidget(self.rect_button, 1, 1)
        rl.addWidget(self.close_button, 1, 2)
        rl.addWidget(self.region_label, 2, 0, 1, 3)
        rl.addWidget(self.read_only_label, 3, 0, 1, 3)
        self.view_button.clicked.connect(lambda: self.edit_view())
        self.rect_button.clicked.connect(self.start_rectangle)
        self.close_button.clicked.connect(lambda: self.close_region())

    # ------------------------------------------------------------------ loading a region
    def edit_view(self):
        """Load the part of the mask shown on screen (cut to :attr:`MAX_REGION` around its centre)."""
        d = self.dock
        if d.sample is None:
            notify("Open a sample with a cell mask first.", "warning")
            return None
        (sy, sx), (ty, tx), _ = d.session.geometry(d.sid)
        wy0, wx0, wy1, wx1 = visible_world_rect(self.viewer)
        return self.edit_rect((wy0 - ty) / sy, (wx0 - tx) / sx, (wy1 - ty) / sy, (wx1 - tx) / sx)

    def edit_rect(self, y0: float, x0: float, y1: float, x1: float, *, wait: bool = False):
        """Load the level-0 pixel box (y0, x0, y1, x1) of the current sample for editing.

        The crop is read in a worker unless ``wait`` (the first region of a sample also opens its
        copy-on-write working copy: no pass over the mask). Returns the region when it was
        loaded here, else None (``dock.region`` is set when the worker is done). Refused, with
        the reason in the dock, on a sample whose segmentation may not be edited here (a review
        project's slide)."""
        d = self.dock
        ed = d.editor
        if ed is None:
            notify("Open a sample with a cell mask first.", "warning")
            return None
        if d.show_read_only():
            notify(d.region_view.read_only_label.text(), "warning")
            return None
        if d.is_busy:
            notify(f"{d.session.busy(d.sid) or 'A commit is running'}; try again in a moment.", "warning")
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
        if d.edit is not None:
            if d.edit.dirty:   # commit the open region first (in its worker), then load this one
                d.commit_view.commit(then=lambda: (self.drop_region(), self.edit_rect(y0, x0, y1, x1)))
                return None
            self.drop_region()
        if cut:
            notify(f"Edit regions are at most {self._size_text(self.MAX_REGION, self.MAX_REGION, short=True)} "
                   "wide: zoom in to edit another part.", "warning")
        sample = d.sample

        def load():
            from ...model.mask_ids import scan_ids

            region = ed.region(y0, y1, x0, x1)
            ids = scan_ids(region.data)   # a presence bitmap: ~10x faster than np.unique of the crop
            ids = ids[ids > 0]
            return region, ids, region_features(sample, ids, ed.row_positions(ids))

        if not wait:
            # a worker (the crop read and its cells: ~0.3 s for a 4096-px region of a 10^6-cell
            # mask); the sample's table is not written, so other docks are not made to wait
            self.region_label.setText("Loading the region at full resolution…")
            d.commit_view.run_worker(load, "Loading the region…", self._loaded, self._load_failed, session_busy=False)
            return None
        try:
            out = load()
        except (ValueError, SampleError, OSError) as err:
            self._load_failed(err)
            return None
        self._loaded(out)
        return out[0]

    def _load_failed(self, err):
        self.region_label.setText("No region loaded")
        notify(f"Cannot load the region: {err}", "error")

    def _loaded(self, loaded):
        """GUI thread: the region becomes the open edit with its layers."""
        region, ids, feats = loaded
        d = self.dock
        d.edit = RegionEdit(d.editor, region)
        d.edit.present = ids
        self._add_edit_layer(feats)
        r = d.region
        self.region_label.setText(f"Editing {self._size_text(r.data.shape[0], r.data.shape[1])} "
                                  f"at {self._where_text(r.y0, r.x0)}, {d.edit.n_cells():,} cells")
        d.update_state()
        d.editor.warm_up()

    def _size_text(self, h: int, w: int, *, short: bool = False) -> str:
        """Width x height in µm (pixels when the pixel size is unknown)."""
        px = self.dock.sample.pixel_size_um if self.dock.sample is not None else None
        if px:
            return f"{w * px:,.0f} µm" if short else f"{w * px:,.0f} × {h * px:,.0f} µm"
        return f"{w:,} px" if short else f"{w:,} × {h:,} px"

    def _where_text(self, y0: int, x0: int) -> str:
        px = self.dock.sample.pixel_size_um if self.dock.sample is not None else None
        if px:
            return f"x {x0 * px:,.0f} µm, y {y0 * px:,.0f} µm"
        return f"x {x0:,}, y {y0:,} px"

    def layer_kwargs(self) -> dict:
        """``scale``, ``translate`` and ``units`` of a layer whose data are the region's pixels."""
        d = self.dock
        (sy, sx), (ty, tx), units = d.session.geometry(d.sid)
        r = d.region
        return {"scale": (sy, sx), "translate": (ty + r.y0 * sy, tx + r.x0 * sx), "units": units}

    def _own_layer(self, role: str, tool: str | None = None):
        """This sample's helper layer of ``role`` (and ``tool``) kept from an earlier region."""
        d = self.dock
        for lyr in self.viewer.layers:
            md = lyr.metadata
            if md.get(META_SAMPLE) == d.sid and md.get(META_ROLE) == role and (tool is None or md.get("tool") == tool):
                return lyr
        return None

    def _add_edit_layer(self, feats=None):
        """The frame and the editable labels layer over the region. Layers of an earlier region of
        the sample are reused (hidden when it closed): napari runs a full garbage collection for
        every layer removed, seconds with a 10^6-cell table in memory."""
        d = self.dock
        s = d.sample
        kw = self.layer_kwargs()
        # a frame shows where the editable region is
        sy = kw["scale"][0]
        h, w_ = d.region.data.shape
        rect = [np.array([[-0.5, -0.5], [h - 0.5, w_ - 0.5]])]
        frame = self._own_layer(ROLE_EDIT_TOOL, "frame")
        if frame is None:
            frame = self.viewer.add_shapes(rect, shape_type="rectangle", name=f"{s.name} edit region",
                                           edge_color="white", face_color="transparent", edge_width=2.5 * sy,
                                           opacity=0.8, metadata={META_SAMPLE: d.sid, META_ROLE: ROLE_EDIT_TOOL,
                                                                  "tool": "frame"}, **kw)
        else:
            self.unpark(frame)
            frame.translate = kw["translate"]
            # the shape type with the data: an emptied Shapes layer would take the vertices as a
            # polygon (a diagonal line across the view)
            frame.data = [(rect[0], "rectangle")]
            frame.visible = True
        frame.editable = False
        lyr = self._own_layer(ROLE_EDIT)
        if lyr is None:
            # outlines in per-cell colours: the markers underneath stay readable (napari's contour = 0 fills)
            # added hidden, shown once it draws outlines: napari slices a visible layer at once and
            # again, with the contour pass (~0.15 s for a region at 10^6 cells), when contour is set
            lyr = self.viewer.add_labels(d.region.data, name=f"{s.name} edit", opacity=0.9, blending="translucent",
                                         metadata={META_SAMPLE: d.sid, META_ROLE: ROLE_EDIT}, visible=False, **kw)
            lyr.contour = 1
            lyr.visible = True
            lyr.brush_size = 6
            lyr.mouse_drag_callbacks.append(d.tools.on_click)
            # each napari paint / fill / erase stroke becomes one step of the region's own undo stack
            lyr.events.paint.connect(self._on_paint)
            for key, fn in (("Control-Z", lambda _l: d.ops.undo()), ("Control-Shift-Z", lambda _l: d.ops.redo())):
                lyr.bind_key(key, fn, overwrite=True)
        else:
            self.unpark(lyr)
            lyr.translate = kw["translate"]
            lyr.data = d.region.data
            lyr.visible = True
        lyr.editable = True
        if feats is not None:
            lyr.features = feats
        d.edit_layer = lyr
        d.tools.refresh_selection()
        d.activate(lyr)

    def _on_paint(self, event=None):
        """A napari paint stroke ended: it becomes one undo step. napari emits ``paint`` before it
        writes a single (non-drag) paint's pixels, so the step is taken on the next event-loop turn."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self._record_paint)

    def _record_paint(self):
        try:
            if self.dock.edit is not None and self.dock.edit.record_paint():
                self.dock.update_state()
        except RuntimeError:   # the dock is gone
            return

    def start_rectangle(self):
        """Activate a rectangle tool; the first rectangle drawn is loaded as the edit region."""
        d = self.dock
        if d.sample is None:
            notify("Open a sample with a cell mask first.", "warning")
            return None
        if d.show_read_only():
            notify(d.region_view.read_only_label.text(), "warning")
            return None
        scale, translate, units = d.session.geometry(d.sid)
        lyr = self._tool_layer("region", "shapes", scale=scale, translate=translate, units=units,
                               edge_color="yellow", face_color="transparent", edge_width=2)
        lyr.mode = "add_rectangle"
        d.activate(lyr)
        d.set_status("Draw a rectangle on the slide: it opens at full resolution.")

        def _done(event=None):
            if getattr(event, "action", "added") not in ("added", None) or not len(lyr.data):
                return
            p = np.asarray(lyr.data[-1])[:, -2:]
            lyr.events.data.disconnect(_done)
            if lyr in self.viewer.layers:   # hidden, not removed (see _add_edit_layer)
                lyr.mode = "pan_zoom"
                lyr.data = []
                lyr.visible = False
            self.edit_rect(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())

        lyr.events.data.connect(_done)
        return lyr

    # ------------------------------------------------------------------ parking closed layers
    #: suffix of a closed region's layer name in the layer list (kept, hidden, for the next region)
    PARKED = " (closed region: kept for the next one)"

    def park(self, lyr) -> None:
        """A closed region's layer: hidden, named as such and moved to the bottom of the layer
        list, out of the way of the slide's layers (removing it would cost napari's full garbage
        collection, seconds with a 10^6-cell table in memory; see :meth:`_add_edit_layer`)."""
        md = lyr.metadata
        if not md.get("parked"):
            md["parked"] = True
            md["name"] = lyr.name
            lyr.name = f"{lyr.name}{self.PARKED}"
        layers = self.viewer.layers
        i = layers.index(lyr)
        if i != 0:
            layers.move(i, 0)

    def unpark(self, lyr) -> None:
        """A parked layer back in use: its own name, on top of the layer list."""
        md = lyr.metadata
        if not md.pop("parked", False):
            return
        lyr.name = md.pop("name", lyr.name.removesuffix(self.PARKED))
        layers = self.viewer.layers
        i = layers.index(lyr)
        if i != len(layers) - 1:
            layers.move(i, len(layers))

    # ------------------------------------------------------------------ helper layers
    def _tool_layer(self, what: str, kind: str, **kw):
        """The helper layer ``what`` (line, seeds, polygon, region) of this sample, created on demand
        (one kept hidden from an earlier region is shown again, moved over this one)."""
        d = self.dock
        lyr = self._own_layer(ROLE_EDIT_TOOL, what)
        if not kw:
            kw = self.layer_kwargs()
        if lyr is not None:
            self.unpark(lyr)
            if not np.allclose(np.asarray(lyr.translate)[-2:], kw["translate"]):
                lyr.translate = kw["translate"]
            if not lyr.visible:
                lyr.visible = True
            return lyr
        name = f"{d.sample.name} {what}"
        meta = {META_SAMPLE: d.sid, META_ROLE: ROLE_EDIT_TOOL, "tool": what}
        if kind == "shapes":
            kw.setdefault("edge_color", "cyan")
            kw.setdefault("face_color", "transparent")
            kw.setdefault("edge_width", 2.5)
            return self.viewer.add_shapes(name=name, metadata=meta, ndim=2, **kw)
        return self.viewer.add_points(name=name, metadata=meta, ndim=2, face_color="magenta", size=6 * kw["scale"][0],
                                      border_color="white", **kw)

    def tool_layer(self, what: str):
        """The helper layer for ``"line"``, ``"seeds"`` or ``"polygon"`` (created over the region)."""
        if self.dock.edit is None:
            raise RuntimeError("no edit region")
        return self._tool_layer(what, "points" if what == "seeds" else "shapes")

    # ------------------------------------------------------------------ closing
    def close_region(self, *, commit: bool = True, wait: bool = False):
        """Commit pending edits (in a worker unless ``wait``) and remove the editing layers."""
        d = self.dock
        if d.edit is not None and commit and d.edit.dirty:
            if wait:
                d.commit_view.commit(wait=True)
            else:
                d.commit_view.commit(then=self.drop_region)
                return
        self.drop_region()

    def drop_region(self):
        """The region is closed: its layers are emptied and hidden (reused by the next region; see
        :meth:`_add_edit_layer`), then removed for good by :meth:`remove_layers`."""
        d = self.dock
        d.edit_layer = None
        d.edit = None
        for lyr in list(self.viewer.layers):
            md = lyr.metadata
            if md.get(META_SAMPLE) != d.sid or md.get(META_ROLE) not in (ROLE_EDIT, ROLE_EDIT_SELECTION, ROLE_EDIT_TOOL):
                continue
            if md.get(META_ROLE) in (ROLE_EDIT, ROLE_EDIT_SELECTION):
                lyr.editable = False
                lyr.data = np.zeros((1, 1), dtype=lyr.data.dtype)
            elif len(lyr.data):
                lyr.data = [] if hasattr(lyr, "shape_type") else np.zeros((0, 2))
            lyr.visible = False
            self.park(lyr)
        if d.sid is not None:
            # the slide's hover features after rows were appended: once per region, not per commit
            d.session.refresh_hover(d.sid)
        slide = d.session.labels_layer(d.sid) if d.sid is not None else None
        if slide is not None and self.viewer.layers.selection.active is not slide:
            d.activate(slide)   # not a hidden editing layer with napari's paint tools
        d.tools.pick_button.setChecked(False)
        self.region_label.setText("No region loaded")
        d.tools.update_selection_label()
        d.update_state()

    def remove_orphans(self) -> None:
        """Remove hidden editing layers of samples that have no other layer left (the user removed
        the slide): they must not keep the sample open."""
        if getattr(self, "_removing", False):
            return
        mine = (ROLE_EDIT, ROLE_EDIT_SELECTION, ROLE_EDIT_TOOL)
        sids = {lyr.metadata.get(META_SAMPLE) for lyr in self.viewer.layers if lyr.metadata.get(META_ROLE) in mine}
        for sid in sids:
            layers = [lyr for lyr in self.viewer.layers if lyr.metadata.get(META_SAMPLE) == sid]
            if layers and all(lyr.metadata.get(META_ROLE) in mine and not lyr.visible for lyr in layers):
                self._removing = True
                try:
                    for lyr in layers:
                        if lyr in self.viewer.layers:
                            self.viewer.layers.remove(lyr)
                finally:
                    self._removing = False
