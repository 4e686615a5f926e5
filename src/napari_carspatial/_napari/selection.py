"""Cell selection and curation in a viewer: clicks, shapes, ROIs, blinded review. No Qt.

:class:`CurationSession` ties one sample's :class:`~napari_carspatial.model.curation.Curation`
to a viewer:

* **selection**: a boolean per table row; set by a click (:meth:`select_at`, shift adds), by the
  shapes of a Shapes layer (lasso, polygon, rectangle, ellipse: :meth:`select_in_shapes`), by a
  ROI, optionally restricted to one cell type ("all CAR T cells in this region"). Membership is
  centroid-in-polygon, vectorised with :class:`matplotlib.path.Path` on ``obsm["spatial"]``
  (level-0 px): shape vertices go world -> level-0 px through the labels layer's
  ``world_to_data``. The selection is drawn with ``CellColouring.highlight(name="selection")``.
* **editing**: :meth:`assign`, :meth:`exclude`, :meth:`confirm`, :meth:`undo`, :meth:`redo` act on
  the selection and refresh the legend's colouring at once.
* **ROIs**: a Shapes layer (same scale/translate as the cells, so its data are level-0 pixels)
  shows ``sample.rois`` with their names, coloured by class; :meth:`add_roi_from_shape` turns a
  drawn shape into a named ROI.
* **blinded review**: :meth:`set_blinded` renames the sample's layers (and ``sample.name``) to a
  neutral alias and restores them afterwards.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np

from ..model import ROI, spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from ..model.curation import ROI_CLASS_COLORS, Curation, roi_contains
from . import store
from .coloring import get_coloring
from .inspect import label_at
from .layers import hover_features

log = logging.getLogger(__name__)

ROLE_ROIS = "rois"
ROLE_SELECT_SHAPES = "selection_shapes"
SELECTION = "selection"
SELECTION_COLOR = "#ffff00"
BLIND_ALIAS = "Sample A"


def points_in_polygon(yx: np.ndarray, polygon_yx: np.ndarray) -> np.ndarray:
    """Vectorised centroid-in-polygon (even-odd rule); shapes' extra leading axes are dropped."""
    from ..model.geometry import points_in_polygon as _pip

    poly = np.asarray(polygon_yx, float)[:, -2:]
    if len(poly) < 3:
        return np.zeros(len(np.asarray(yx)), bool)
    return _pip(yx, poly)


def shape_vertices(shapes_layer, i: int, *, n_ellipse: int = 64) -> np.ndarray | None:
    """Vertices (data coords, last two axes) of shape ``i`` as a polygon; None for lines/paths."""
    kind = shapes_layer.shape_type[i]
    verts = np.asarray(shapes_layer.data[i], float)
    if kind in ("line", "path", "polyline"):
        return None
    if kind == "ellipse":
        c = verts[:, -2:].mean(0)
        r = (verts[:, -2:].max(0) - verts[:, -2:].min(0)) / 2
        t = np.linspace(0, 2 * np.pi, n_ellipse, endpoint=False)
        ell = np.stack([c[0] + r[0] * np.sin(t), c[1] + r[1] * np.cos(t)], 1)
        if verts.shape[1] > 2:
            ell = np.hstack([np.repeat(verts[:1, :-2], n_ellipse, 0), ell])
        verts = ell
    return verts if len(verts) >= 3 else None


class CurationSession:
    """Curation of one sample in one viewer (see the module docstring).

    Parameters
    ----------
    viewer
        napari viewer.
    sid
        Registry id of the sample.
    reviewer
        Name for the audit trail (default: the OS user).
    type_key
        Original cell-type column (default: guessed / stored).
    """

    def __init__(self, viewer, sid: str, *, reviewer: str | None = None, type_key: str | None = None):
        from napari.utils.events import EmitterGroup

        self.viewer = viewer
        self.sid = sid
        sample = store.get(sid)
        if sample is None or sample.table is None:
            raise KeyError(f"no sample with a cell table registered under {sid!r}")
        self.sample = sample
        self.curation = Curation(sample.table, rois=sample.rois, reviewer=reviewer, type_key=type_key)
        self.selected = np.zeros(sample.table.n_obs, bool)
        self.events = EmitterGroup(source=self, selection=None, edited=None, blinded=None)
        self.blinded = False
        self._real_name = sample.name
        self._layer_names: dict[int, str] = {}
        self.curation.listeners.append(self._on_edit)
        self.coloring = get_coloring(viewer, sid)
        if sample.labels and self.coloring.key in (None, self.curation.type_key):
            self.coloring.color_by_category(self.curation.curated_key)

    # ------------------------------------------------------------------ geometry
    @property
    def labels_layer(self):
        found = store.layers_of(self.viewer, self.sid, "labels")
        return found[0] if found else None

    def cell_yx(self) -> np.ndarray:
        """Cell centroids, (y, x) level-0 px."""
        return spatial_to_yx(np.asarray(self.sample.table.obsm[SPATIAL_KEY], float))

    def world_to_px(self, world_yx) -> np.ndarray:
        """World (y, x) points -> level-0 pixel (y, x) through the labels layer (µm -> px)."""
        pts = np.atleast_2d(np.asarray(world_yx, float))
        lab = self.labels_layer
        if lab is not None:
            return np.asarray([np.asarray(lab.world_to_data(p))[-2:] for p in pts], float)
        px = self.sample.pixel_size_um or 1.0
        return pts[:, -2:] / px

    def px_to_world(self, yx_px) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(yx_px, float))
        lab = self.labels_layer
        if lab is not None:
            return np.asarray([np.asarray(lab.data_to_world(p))[-2:] for p in pts], float)
        return pts * (self.sample.pixel_size_um or 1.0)

    def shape_polygon_px(self, shapes_layer, i: int) -> np.ndarray | None:
        """Shape ``i`` of any Shapes layer as a level-0 pixel (y, x) polygon (None for lines)."""
        verts = shape_vertices(shapes_layer, i)
        if verts is None:
            return None
        world = np.asarray([np.asarray(shapes_layer.data_to_world(v))[-2:] for v in verts])
        return self.world_to_px(world)

    # ------------------------------------------------------------------ selection
    def _type_mask(self, cell_type: str | None) -> np.ndarray | None:
        if cell_type is None:
            return None
        return self.sample.table.obs[self.curation.curated_key].astype(str).to_numpy() == str(cell_type)

    def select(self, mask_or_rows, *, add: bool = False, cell_type: str | None = None) -> int:
        """Set (or, with ``add``, extend) the selection; returns the number of selected cells."""
        m = np.asarray(mask_or_rows)
        if m.dtype != bool:
            mm = np.zeros(self.sample.table.n_obs, bool)
            mm[m.astype(np.int64)] = True
            m = mm
        tm = self._type_mask(cell_type)
        if tm is not None:
            m = m & tm
        self.selected = (self.selected | m) if add else m.copy()
        self.show_selection()
        return int(self.selected.sum())

    def select_at(self, world_position, *, add: bool = False, toggle: bool = True) -> int | None:
        """Select the cell under a world position (shift-click: ``add``; clicking a selected cell
        with ``add`` removes it). Returns the cell id, or None on background."""
        lab = self.labels_layer
        cid = label_at(lab, world_position) if lab is not None else None
        if cid is None:
            if not add:
                self.clear_selection()
            return None
        rows = self.curation.rows_of_ids([cid])
        if rows.size == 0:
            return None
        if add and toggle and self.selected[rows[0]]:
            self.selected[rows[0]] = False
            self.show_selection()
            return cid
        m = np.zeros_like(self.selected)
        m[rows] = True
        self.select(m, add=add)
        return cid

    def polygon_mask(self, polygon_px: np.ndarray) -> np.ndarray:
        return points_in_polygon(self.cell_yx(), polygon_px)

    def select_in_shapes(self, shapes_layer, indices=None, *, add: bool = False,
                         cell_type: str | None = None) -> int:
        """Select cells whose centroid is inside shapes ``indices`` (default: the selected shapes,
        else all) of ``shapes_layer``; optionally only cells of ``cell_type``."""
        if indices is None:
            indices = sorted(shapes_layer.selected_data) or range(len(shapes_layer.data))
        m = np.zeros(self.sample.table.n_obs, bool)
        for i in indices:
            poly = self.shape_polygon_px(shapes_layer, int(i))
            if poly is not None:
                m |= self.polygon_mask(poly)
        return self.select(m, add=add, cell_type=cell_type)

    def select_in_roi(self, roi_id: str, *, add: bool = False, cell_type: str | None = None) -> int:
        """Select the cells of a ROI (optionally only one cell type)."""
        return self.select(self.curation.cells_in_roi(roi_id), add=add, cell_type=cell_type)

    def clear_selection(self) -> None:
        self.selected = np.zeros(self.sample.table.n_obs, bool)
        self.show_selection()

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def selection_summary(self) -> dict[str, int]:
        """Selected cells per curated type, most first."""
        if not self.selected.any():
            return {}
        vc = self.sample.table.obs[self.curation.curated_key][self.selected].astype(str).value_counts()
        return {str(k): int(v) for k, v in vc.items() if v}

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

    # ------------------------------------------------------------------ editing
    def assign(self, cell_type: str, *, note: str = ""):
        return self.curation.assign(self.selected, cell_type, note=note)

    def exclude(self, reason: str, *, note: str = ""):
        return self.curation.exclude(self.selected, reason, note=note)

    def include(self, *, note: str = ""):
        return self.curation.include(self.selected, note=note)

    def confirm(self, *, note: str = ""):
        return self.curation.confirm(self.selected, note=note)

    def undo(self):
        return self.curation.undo()

    def redo(self):
        return self.curation.redo()

    def _on_edit(self, cmd, what: str) -> None:
        if cmd is not None and cmd.roi_before is not None:
            self.sync_roi_layer()
        if self.sample.labels:
            if self.coloring.key is not None:
                self.coloring.refresh()
                self._rename_if_blinded(self.coloring.category_layer)
            lab = self.labels_layer
            if lab is not None:
                feats = hover_features(self.sample)
                if feats is not None:
                    lab.features = feats
        self.events.edited(command=cmd, what=what)

    # ------------------------------------------------------------------ ROIs
    @property
    def roi_layer(self):
        found = store.layers_of(self.viewer, self.sid, ROLE_ROIS)
        return found[0] if found else None

    def _layer_geometry(self) -> dict[str, Any]:
        lab = self.labels_layer
        units = ("um", "um") if self.sample.pixel_size_um else ("pixel", "pixel")
        if lab is not None:
            return {"scale": tuple(lab.scale[-2:]), "translate": tuple(lab.translate[-2:]), "units": units}
        px = self.sample.pixel_size_um or 1.0
        return {"scale": (px, px), "translate": (0.0, 0.0), "units": units}

    def sync_roi_layer(self, *, create: bool = True):
        """Show ``sample.rois`` in the ROI Shapes layer (data in level-0 px), names as text."""
        import pandas as pd

        rois = self.curation.rois
        layer = self.roi_layer
        if layer is None and not (create and rois):
            return layer
        data = [np.asarray(r.polygon_yx, float) for r in rois]
        colors = [ROI_CLASS_COLORS.get(r.cls, "#b464b4") for r in rois]
        feats = pd.DataFrame({"name": [r.name for r in rois], "cls": [r.cls for r in rois],
                              "roi_id": [r.id for r in rois]})
        if layer is None:
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_shapes(
                data, shape_type="polygon", edge_color=colors or "white", face_color="transparent",
                edge_width=max(2.0, (self.sample.shape_yx or (600,))[0] / 250), features=feats,
                text={"string": "{name}", "color": "white", "size": 11, "anchor": "upper_left"},
                name=f"{self.sample.name}: ROIs",
                metadata={store.META_SAMPLE: self.sid, store.META_ROLE: ROLE_ROIS}, **self._layer_geometry())
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            layer.selected_data = set()
            layer.data = []
            if data:
                layer.add(data, shape_type="polygon", edge_color=colors, face_color="transparent")
            layer.features = feats
            layer.refresh_text() if hasattr(layer, "refresh_text") else None
        return layer

    def add_roi_from_shape(self, shapes_layer, i: int, *, name: str, cls: str, note: str = ""):
        """Turn shape ``i`` of any Shapes layer into a named ROI (undoable)."""
        poly = self.shape_polygon_px(shapes_layer, i)
        if poly is None:
            raise ValueError("lines and paths cannot be regions: draw a polygon, rectangle or ellipse")
        return self.curation.add_roi(ROI(name=name, polygon_yx=poly, cls=cls), note=note)

    def add_roi_from_polygon_px(self, polygon_yx, *, name: str, cls: str, note: str = ""):
        return self.curation.add_roi(ROI(name=name, polygon_yx=np.asarray(polygon_yx, float), cls=cls), note=note)

    # ------------------------------------------------------------------ blinded review
    def _rename_if_blinded(self, layer) -> None:
        if not self.blinded or layer is None:
            return
        if self._real_name in layer.name:
            self._layer_names.setdefault(id(layer), layer.name)
            layer.name = layer.name.replace(self._real_name, BLIND_ALIAS)

    def set_blinded(self, blinded: bool, alias: str = BLIND_ALIAS) -> None:
        """Hide (or show again) the sample name in layer names; ``sample.name`` becomes ``alias``.

        Clinical metadata is hidden by the widgets through ``sample.public_metadata(blinded=True)``.
        """
        blinded = bool(blinded)
        if blinded == self.blinded:
            return
        self.blinded = blinded
        layers = store.layers_of(self.viewer, self.sid)
        if blinded:
            self._real_name = self.sample.name
            for lyr in layers:
                self._rename_if_blinded(lyr)
            self.sample.name = alias
        else:
            self.sample.name = self._real_name
            for lyr in layers:
                if id(lyr) in self._layer_names:
                    lyr.name = self._layer_names[id(lyr)]
                elif alias in lyr.name:
                    lyr.name = lyr.name.replace(alias, self._real_name)
            self._layer_names.clear()
        self.events.blinded(value=blinded)

    def public_metadata(self) -> dict:
        """Metadata to show: clinical keys (and the sample name) hidden when blinded."""
        meta = self.sample.public_metadata(blinded=self.blinded)
        if self.blinded:
            meta = {k: v for k, v in meta.items() if k not in ("sample", "name", "patient_id", "sample_id")}
        return meta


_sessions: weakref.WeakKeyDictionary[Any, dict[str, CurationSession]] = weakref.WeakKeyDictionary()


def get_session(viewer, sid: str, **kw) -> CurationSession:
    """The :class:`CurationSession` of (viewer, sample), created on first use.

    A new session is made when the sample's table was replaced (e.g. by a recovered table).
    """
    key = getattr(viewer, "__wrapped__", viewer)
    per = _sessions.setdefault(key, {})
    sess = per.get(sid)
    if sess is None or sess.sample is not store.get(sid) or sess.curation.adata is not sess.sample.table:
        sess = per[sid] = CurationSession(viewer, sid, **kw)
    return sess


def in_roi_mask(session: CurationSession, roi: ROI) -> np.ndarray:
    return roi_contains(roi, session.cell_yx())
