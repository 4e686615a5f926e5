"""The curation of one sample shown in a viewer: clicks, shapes, selection and ROI layers. No Qt.

:class:`CurationView` (``session_for(viewer).curation(sid)``) ties the headless
:class:`~napari_carspatial.editing.CurationSession` (``view.core``: selection, edits, undo,
regions, audit, saving, autosave, recovery) to the viewer:

* **selection** from the slide: a click (:meth:`select_at`, shift adds), the shapes of a Shapes
  layer (lasso, polygon, rectangle, ellipse: :meth:`select_in_shapes`; vertices go world ->
  level-0 px through the labels layer's public ``world_to_data``), drawn as an outline highlight
  (``CellColoring.highlight(name="selection")``);
* **edits** are the core's; after each one the view tells the session which columns changed
  (``table_changed``: the colouring and hover follow) and redraws the ROI layer;
* **ROIs**: a Shapes layer (same scale / translate as the cells, so its data are level-0 pixels)
  shows ``sample.rois`` with their names, coloured by class; :meth:`add_roi_from_shape` turns a
  drawn shape into a named ROI;
* **blinded review**: :meth:`set_blinded` renames the sample's layers too.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..editing.curation import BLIND_ALIAS, CurationSession
from ..model import ROI
from ..model.curation import roi_contains
from ..model.palette import roi_color
from . import shapes
from .inspect import label_at
from .session import META_ROLE, META_SAMPLE

log = logging.getLogger(__name__)

ROLE_ROIS = "rois"
ROLE_SELECT_SHAPES = "selection_shapes"
SELECTION = "selection"
SELECTION_COLOR = "#ffff00"


def points_in_polygon(yx: np.ndarray, polygon_yx: np.ndarray) -> np.ndarray:
    """Vectorised centroid-in-polygon (even-odd rule); shapes' extra leading axes are dropped."""
    from ..model.geometry import points_in_polygon as _pip

    poly = np.asarray(polygon_yx, float)[:, -2:]
    if len(poly) < 3:
        return np.zeros(len(np.asarray(yx)), bool)
    return _pip(yx, poly)


class CurationView:
    """The curation of one sample in one viewer (see the module docstring).

    Parameters
    ----------
    session
        The viewer's :class:`~._napari.session.ViewerSession`.
    sid
        Id of the sample.
    reviewer
        Name for the audit trail (default: the session's reviewer).
    type_key
        Original cell-type column (default: guessed / stored).
    """

    def __init__(self, session, sid: str, *, reviewer: str | None = None, type_key: str | None = None):
        from napari.utils.events import EmitterGroup

        self.session = session
        self.viewer = session.viewer
        self.sid = sid
        sample = session.sample(sid)
        if sample is None or sample.table is None:
            raise KeyError(f"no sample with a cell table registered under {sid!r}")
        self.sample = sample
        self.core = CurationSession(sample, reviewer=reviewer or session.reviewer, type_key=type_key)
        self.events = EmitterGroup(source=self, selection=None, edited=None, blinded=None)
        self._layer_names: dict[int, str] = {}
        self.core.on_edit.append(self._on_edit)
        self.core.on_selection.append(self._on_selection)
        self.coloring = session.coloring(sid)
        if sample.labels and self.coloring.key in (None, self.core.type_key):
            from .layers import (
                first_view_style,  # outlines over the stain unless the user chose otherwise
            )

            self.coloring.color_by_category(self.core.curated_key, **first_view_style(self.coloring))
        if sample.labels:
            self._make_selection_layer()

    def _make_selection_layer(self) -> None:
        """The (hidden, empty) selection layer, made with the view: adding a napari layer costs
        ~0.5 s at 10^6 cells (its controls, the layer list), which the first lasso would
        otherwise wait for; a selection is then a new lut and a refresh."""
        if self.coloring.highlight_layer(SELECTION) is not None:
            return
        active = self.viewer.layers.selection.active
        layer = self.coloring.highlight(np.zeros(self.core.table.n_obs, bool), name=SELECTION,
                                        color=SELECTION_COLOR, mode="outline", opacity=1.0)
        layer.visible = False
        self._rename_if_blinded(layer)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active

    def detach(self) -> None:
        """Stop following the core (the session made a new view)."""
        for lst, cb in ((self.core.on_edit, self._on_edit), (self.core.on_selection, self._on_selection)):
            if cb in lst:
                lst.remove(cb)

    # ------------------------------------------------------------------ the core's state
    @property
    def curation(self):
        """The model :class:`~napari_carspatial.model.curation.Curation` (columns, undo, ROIs)."""
        return self.core.curation

    @property
    def selected(self) -> np.ndarray:
        return self.core.selected

    @property
    def blinded(self) -> bool:
        return self.core.blinded

    @property
    def real_name(self) -> str:
        return self.core.real_name

    # ------------------------------------------------------------------ geometry
    @property
    def labels_layer(self):
        return self.session.labels_layer(self.sid)

    def cell_yx(self) -> np.ndarray:
        """Cell centroids, (y, x) level-0 px."""
        return self.core.cell_yx()

    def world_to_px(self, world_yx) -> np.ndarray:
        """World (y, x) points -> level-0 pixel (y, x) (µm -> px)."""
        return shapes.world_to_px(self.session, self.sid, world_yx)

    def px_to_world(self, yx_px) -> np.ndarray:
        return shapes.px_to_world(self.session, self.sid, yx_px)

    def shape_polygon_px(self, shapes_layer, i: int) -> np.ndarray | None:
        """Shape ``i`` of any Shapes layer as a level-0 pixel (y, x) polygon (None for lines)."""
        return shapes.shape_polygon_px(self.session, self.sid, shapes_layer, i)

    # ------------------------------------------------------------------ selection
    def select(self, mask_or_rows, *, add: bool = False, cell_type: str | None = None) -> int:
        """Set (or, with ``add``, extend) the selection; returns the number of selected cells."""
        return self.core.select(mask_or_rows, add=add, cell_type=cell_type)

    def select_at(self, world_position, *, add: bool = False, toggle: bool = True) -> int | None:
        """Select the cell under a world position (shift-click: ``add``; clicking a selected cell
        with ``add`` removes it). Returns the cell id, or None on background."""
        lab = self.labels_layer
        cid = label_at(lab, world_position) if lab is not None else None
        if cid is None:
            if not add:
                self.clear_selection()
            return None
        if self.curation.rows_of_ids([cid]).size == 0:
            return None
        self.core.select_ids([cid], add=add, toggle=toggle)
        return cid

    def polygon_mask(self, polygon_px: np.ndarray) -> np.ndarray:
        return points_in_polygon(self.cell_yx(), polygon_px)

    def select_in_shapes(self, shapes_layer, indices=None, *, add: bool = False,
                         cell_type: str | None = None) -> int:
        """Select cells whose centroid is inside shapes ``indices`` (default: the selected shapes,
        else all) of ``shapes_layer``; optionally only cells of ``cell_type``."""
        if indices is None:
            indices = sorted(shapes_layer.selected_data) or range(len(shapes_layer.data))
        m = np.zeros(self.core.table.n_obs, bool)
        for i in indices:
            poly = self.shape_polygon_px(shapes_layer, int(i))
            if poly is not None:
                m |= self.polygon_mask(poly)
        return self.select(m, add=add, cell_type=cell_type)

    def select_in_roi(self, roi_id: str, *, add: bool = False, cell_type: str | None = None) -> int:
        """Select the cells of a ROI (optionally only one cell type)."""
        return self.core.select_in_roi(roi_id, add=add, cell_type=cell_type)

    def clear_selection(self) -> None:
        self.core.clear_selection()

    @property
    def n_selected(self) -> int:
        return self.core.n_selected

    def selection_summary(self) -> dict[str, int]:
        """Selected cells per curated type, most first."""
        return self.core.selection_summary()

    def _on_selection(self, n: int) -> None:
        self.show_selection()

    def show_selection(self) -> None:
        """Draw the selection (yellow outlines) without stealing the active layer."""
        if self.sample.labels:
            active = self.viewer.layers.selection.active
            if self.selected.any() or self.coloring.highlight_layer(SELECTION) is not None:
                layer = self.coloring.highlight(self.selected, name=SELECTION, color=SELECTION_COLOR,
                                                 mode="outline", opacity=1.0)
                layer.visible = bool(self.selected.any())
                self._rename_if_blinded(layer)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        self.events.selection(n=self.n_selected)
        self.session.events.selection_changed(sid=self.sid, n=self.n_selected)

    # ------------------------------------------------------------------ editing
    def assign(self, cell_type: str, *, note: str = ""):
        return self.core.assign(cell_type, note=note)

    def exclude(self, reason: str, *, note: str = ""):
        return self.core.exclude(reason, note=note)

    def include(self, *, note: str = ""):
        return self.core.include(note=note)

    def confirm(self, *, note: str = ""):
        return self.core.confirm(note=note)

    def undo(self):
        return self.core.undo()

    def redo(self):
        return self.core.redo()

    def _on_edit(self, cmd, what: str) -> None:
        if cmd is not None and cmd.roi_before is not None:
            self.sync_roi_layer()
        rows = None if cmd is None else cmd.rows
        self.session.table_changed(self.sid, columns=self.core.changed_columns(cmd) or None, rows=rows,
                                   reason=f"curation {what}: {cmd.description if cmd else ''}")
        if self.sample.labels and self.coloring.key is not None:
            self._rename_if_blinded(self.coloring.category_layer)
        self.events.edited(command=cmd, what=what)

    # ------------------------------------------------------------------ ROIs
    @property
    def roi_layer(self):
        found = self.session.layers_of(self.sid, ROLE_ROIS)
        return found[0] if found else None

    def layer_geometry(self) -> dict[str, Any]:
        """``scale``, ``translate`` and ``units`` for a layer whose data are level-0 pixels."""
        scale, translate, units = self.session.geometry(self.sid)
        return {"scale": scale, "translate": translate, "units": units}

    def sync_roi_layer(self, *, create: bool = True):
        """Show ``sample.rois`` in the ROI Shapes layer (data in level-0 px), names as text."""
        import pandas as pd

        rois = self.curation.rois
        layer = self.roi_layer
        if layer is None and not (create and rois):
            return layer
        data = [np.asarray(r.polygon_yx, float) for r in rois]
        colors = [roi_color(r.cls) for r in rois]
        feats = pd.DataFrame({"name": [r.name for r in rois], "cls": [r.cls for r in rois],
                              "roi_id": [r.id for r in rois]})
        if layer is None:
            active = self.viewer.layers.selection.active
            from .layers import ROI_EDGE_PX, keep_edge_on_screen, roi_text, screen_edge_width

            geom = self.layer_geometry()
            layer = self.viewer.add_shapes(
                data, shape_type="polygon", edge_color=colors or "white", face_color="transparent",
                edge_width=screen_edge_width(self.viewer, geom["scale"], ROI_EDGE_PX), features=feats,
                text=roi_text(), name=f"{self.sample.name}: ROIs",
                metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_ROIS}, **geom)
            keep_edge_on_screen(self.viewer, layer, ROI_EDGE_PX)   # a thin border at any zoom (ux)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            from .layers import apply_screen_edge

            layer.selected_data = set()
            layer.data = []
            if data:
                layer.add(data, shape_type="polygon", edge_color=colors, face_color="transparent")
            apply_screen_edge(self.viewer, layer)
            layer.features = feats
            layer.refresh_text() if hasattr(layer, "refresh_text") else None
        return layer

    def add_roi_from_shape(self, shapes_layer, i: int, *, name: str, cls: str, note: str = ""):
        """Turn shape ``i`` of any Shapes layer into a named ROI (undoable)."""
        poly = self.shape_polygon_px(shapes_layer, i)
        if poly is None:
            raise ValueError("lines and paths cannot be regions: draw a polygon, rectangle or ellipse")
        return self.core.add_roi(poly, name=name, cls=cls, note=note)

    def add_roi_from_polygon_px(self, polygon_yx, *, name: str, cls: str, note: str = ""):
        return self.core.add_roi(polygon_yx, name=name, cls=cls, note=note)

    # ------------------------------------------------------------------ blinded review
    def _rename_if_blinded(self, layer) -> None:
        if not self.blinded or layer is None:
            return
        alias = getattr(self, "_alias", BLIND_ALIAS)
        if self.real_name != alias and self.real_name in layer.name:
            self._layer_names.setdefault(hash(layer), layer.name)
            layer.name = layer.name.replace(self.real_name, alias)

    def set_blinded(self, blinded: bool, alias: str = BLIND_ALIAS) -> None:
        """Hide (or show again) the sample name in layer names; ``sample.name`` becomes ``alias``.

        Clinical metadata is hidden through :meth:`public_metadata`.
        """
        real = self.sample.name
        if not self.core.set_blinded(blinded, alias):
            return
        self._alias = alias   # layers made later (colours, selection) get the same alias
        layers = self.session.layers_of(self.sid)
        if self.blinded:
            for lyr in layers:
                if real in lyr.name:
                    self._layer_names.setdefault(hash(lyr), lyr.name)
                    lyr.name = lyr.name.replace(real, alias)
        else:
            for lyr in layers:
                if hash(lyr) in self._layer_names:
                    lyr.name = self._layer_names[hash(lyr)]
                elif alias in lyr.name:
                    lyr.name = lyr.name.replace(alias, self.real_name)
            self._layer_names.clear()
        self.events.blinded(value=self.blinded)

    def public_metadata(self) -> dict:
        """Metadata to show: clinical keys (and the sample name) hidden when blinded."""
        return self.core.public_metadata()


def in_roi_mask(view: CurationView, roi: ROI) -> np.ndarray:
    return roi_contains(roi, view.cell_yx())
