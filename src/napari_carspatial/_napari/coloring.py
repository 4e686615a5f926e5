"""Colour cells by a table column, instantly, at a million cells. No Qt.

napari's own way (one ``DirectLabelColormap`` entry per cell id) builds and hashes a Python
dictionary of every label: about 12 s for 1,000,000 cells. Here the colour never depends on the
number of cells:

* a **lookup table** (``lut``) maps every mask id to a small *category code* (0 = background or
  hidden, ``1..n`` = categories). It is a dense numpy array indexed by id (one vectorised
  assignment over the table, milliseconds), or sorted ids + :func:`numpy.searchsorted` when the
  ids are too large for a dense array;
* a separate **display layer** (a napari Labels layer, multiscale, same scale as the cells) holds
  lazy levels (:class:`~.lut.LutLevel`) that compute ``codes = lut[labels_tile]`` only for the
  slice napari displays, from label tiles kept in a small cache (:class:`~.lut.TileCache`);
* its colormap is a ``DirectLabelColormap`` with only ``n_categories + 1`` entries, so hiding a
  category, "show only" or a colour edit is a colormap change (instant), and an edit of the
  table, a new selection, the outline switch or another column is a new lut in the layer's
  :class:`~.lut.LutState` plus ``layer.refresh()``: the layer's data are never replaced, napari
  only re-maps the tile it shows (the label pixels are already in memory);
* outline mode keeps the codes only on each cell's boundary pixels (a pixel that differs from
  one of its 4 neighbours, computed per tile with a 1-pixel halo), so every *cell* gets an
  outline in its type colour (napari's ``contour`` on the codes would outline category patches);
* continuous values (a marker's mean, area, ...) use the same lazy mapping with a float lut
  (NaN = background) in an Image layer with a colormap, contrast limits and napari's colour bar.

The pure functions (:func:`~.lut.label_lut`, :func:`~.lut.category_lut`, :func:`~.lut.map_labels`,
:func:`~.lut.outline`, :func:`~.lut.codes_pyramid`, in :mod:`.lut`) need no viewer. :class:`CellColoring` drives the layers
of one sample in one viewer; the viewer's session owns it (``session_for(viewer).coloring(sid)``,
or :func:`get_coloring`).

One module (583 lines) because :class:`CellColoring` is one object driving a sample's display layers
(lut state, categorical and continuous modes, outline, visibility, colours) on shared private state;
the pure lookup-table functions are already in :mod:`.lut`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..model import colors_key, instance_ids, spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from ..model.palette import DEFAULT_PALETTE, SEMANTIC, category_colors, default_colors  # noqa: F401 - re-exported
from .inspect import camera
from .lut import (  # noqa: F401 - the pure half, re-exported
    DENSE_MAX_ID,
    TILE,
    LabelLut,
    LutLevel,
    LutState,
    TileCache,
    categories_and_codes,
    category_lut,
    codes_pyramid,
    column_choices,
    counts_by_code,
    in_polygon,
    in_rect,
    is_categorical,
    label_lut,
    lut_pyramid,
    map_labels,
    numeric_values,
    outline,
)
from .session import META_ROLE, META_SAMPLE, session_for
from .shapes import selected_polygons_world

log = logging.getLogger(__name__)

#: ``layer.metadata`` roles of the display layers made here
ROLE_CATEGORIES = "cell_colours"
ROLE_VALUES = "cell_values"
ROLE_HIGHLIGHT = "cell_highlight"
#: key in ``layer.metadata`` naming the column a display layer shows
META_KEY = "carspatial_colour_key"


def rgba(colors: Sequence, alpha: Sequence[float] | float = 1.0) -> np.ndarray:
    """(n, 4) float RGBA from colour names / hex strings."""
    from matplotlib.colors import to_rgba_array

    arr = to_rgba_array(list(colors)) if len(colors) else np.zeros((0, 4))
    arr[:, 3] = alpha
    return arr


def direct_colormap(colors_rgba: np.ndarray):
    """A ``DirectLabelColormap`` with code ``i + 1`` -> ``colors_rgba[i]``, 0 and unknown transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    cd: dict = {None: np.zeros(4), 0: np.zeros(4)}
    for i, c in enumerate(np.asarray(colors_rgba, dtype=float)):
        cd[i + 1] = c
    return DirectLabelColormap(color_dict=cd, background_value=0)


def visible_world_rect(viewer) -> tuple[float, float, float, float]:
    """(y0, x0, y1, x1) world rectangle the camera shows (2-D view)."""
    cam = camera(viewer)
    cy, cx = cam.center[-2:]
    h, w = viewer.canvas.size
    z = float(cam.zoom) or 1.0
    return cy - h / (2 * z), cx - w / (2 * z), cy + h / (2 * z), cx + w / (2 * z)


# =========================================================================== the viewer side
class CellColoring:
    """Colour the cells of one sample in one viewer by a categorical or numeric column.

    Parameters
    ----------
    session
        The viewer's :class:`~._napari.session.ViewerSession`.
    sample_id
        Id of the sample (``layer.metadata[META_SAMPLE]``).

    Notes
    -----
    The session owns one instance per sample (``session.coloring(sid)``): the legend, the
    gating dock and scripts share one state. ``events.changed`` fires after every change, with
    ``what``: ``column`` (another column, or its categories changed), ``values`` (the same
    column and categories, some cells' codes changed: counts only), ``mode``, ``opacity``,
    ``visibility``, ``color``, ``clim`` or ``cmap``.
    """

    def __init__(self, session, sample_id: str):
        from napari.utils.events import EmitterGroup

        self.session = session
        self.viewer = session.viewer
        self.sid = sample_id
        if session.sample(sample_id) is None:
            raise KeyError(f"no sample registered under id {sample_id!r}")
        self.events = EmitterGroup(source=self, changed=None)
        self.key: str | None = None
        self.kind: str | None = None  # "categorical" | "numeric"
        self.mode = "filled"
        self.opacity = 0.7
        self.categories: list[str] = []
        self.colors: list[str] = []
        self.visible = np.zeros(0, dtype=bool)
        self.codes = np.zeros(0, dtype=np.int64)  # per table row, -1 = missing
        self.values: np.ndarray | None = None     # per table row, numeric mode
        self.cmap = "viridis"
        self.clim: tuple[float, float] | None = None
        self._yx_world: np.ndarray | None = None
        self._yx_src: np.ndarray | None = None   # the positions _yx_world was made from
        self._yx_geom = None
        self._yx_check = False                    # compare them with the table's before the next use
        self._ids: np.ndarray | None = None
        self._lut_ids: np.ndarray | None = None   # the rows (their ids) of the categorical lut
        self._lut: LabelLut | None = None
        #: label tiles shared by this sample's display layers
        self._tiles = TileCache()
        #: display layer key -> (LutState, the labels pyramid it reads, dtype)
        self._states: dict[str, tuple] = {}

    # ------------------------------------------------------------------ sample and geometry
    @property
    def sample(self):
        s = self.session.sample(self.sid)
        if s is None:
            raise KeyError(f"sample {self.sid!r} is no longer open")
        return s

    @property
    def table(self):
        t = self.sample.table
        if t is None:
            raise ValueError(f"sample {self.sample.name!r} has no cell table to colour by")
        return t

    def ids(self) -> np.ndarray:
        if self._ids is None or len(self._ids) != self.table.n_obs:
            self._ids = instance_ids(self.table)
        return self._ids

    def cell_yx_world(self) -> np.ndarray:
        """Cell centroids in world (y, x) coordinates (µm when the pixel size is known).

        Kept between calls with a copy of the positions they came from: after a table edit
        (:meth:`refresh`) they are compared with the table's (a few ms at 10^6 cells) and only
        recomputed when a cell moved (segmentation re-measures centroids in place)."""
        src = self.table.obsm[SPATIAL_KEY]
        geom = self.session.geometry(self.sid)
        if self._yx_world is not None and self._yx_check:
            same_shape = (len(self._yx_world) == self.table.n_obs and self._yx_geom == geom
                          and np.shape(src) == self._yx_src.shape)
            if same_shape:   # re-measured cells moved: only their rows are computed again
                a = np.asarray(src, dtype=float)
                moved = np.flatnonzero((a != self._yx_src).any(axis=1))
                if moved.size:
                    (sy, sx), (ty, tx), _ = geom
                    self._yx_src[moved] = a[moved]
                    self._yx_world[moved] = spatial_to_yx(a[moved]) * np.asarray((sy, sx)) + np.asarray((ty, tx))
            else:
                self._yx_world = None
            self._yx_check = False
        if self._yx_world is None or len(self._yx_world) != self.table.n_obs:
            (sy, sx), (ty, tx), _ = geom
            self._yx_src = np.array(src, dtype=float, copy=True)
            yx = spatial_to_yx(self._yx_src)
            self._yx_world = yx * np.asarray((sy, sx)) + np.asarray((ty, tx))
            self._yx_geom = geom
            self._yx_check = False
        return self._yx_world

    def _layer_kwargs(self, name: str, role: str) -> dict:
        labels = self.sample.labels
        scale, translate, units = self.session.geometry(self.sid)
        return {
            "name": name,
            "scale": scale,
            "translate": translate,
            "units": units,
            "multiscale": len(labels) > 1,
            "metadata": {META_SAMPLE: self.sid, META_ROLE: role},
        }

    def _pyramid(self, lut: LabelLut, outline_only: bool, interior: int = 0):
        """A lazy dask pyramid of ``lut`` (the reference path: :func:`~.lut.codes_pyramid`)."""
        labels = self.sample.labels
        if not labels:
            raise ValueError(f"sample {self.sample.name!r} has no segmentation mask to colour")
        pyr = codes_pyramid(labels, lut, outline_only=outline_only, interior=interior)
        return pyr if len(pyr) > 1 else pyr[0]

    def _show(self, key: str, layer, lut: LabelLut, outline_only: bool, interior: int = 0):
        """Put ``lut`` into display layer ``key``: a new lut in its :class:`~.lut.LutState` and a
        refresh when the layer already shows this sample's labels with this dtype (nothing is
        rebuilt), else new lazy levels. Returns the data to give a new layer (None when the
        existing ``layer`` was updated in place). ``interior``: see :class:`~.lut.LutState`."""
        labels = self.sample.labels
        if not labels:
            raise ValueError(f"sample {self.sample.name!r} has no segmentation mask to colour")
        if labels is not getattr(self, "_tiles_for", None):
            self._tiles.clear()          # the mask was edited: its tiles are gone
            self._tiles_for = labels
        rec = self._states.get(key)
        if layer is not None and rec is not None and rec[2] == lut.dtype and rec[1] is not labels \
                and self._swap_levels(layer, rec, labels):
            # the mask was edited (a segmentation commit): the layer's levels read the new
            # pyramid, one re-slice (``layer.data = ...`` re-slices at once and again at the draw)
            rec = self._states[key] = (rec[0], labels, rec[2])
        if layer is not None and rec is not None and rec[1] is labels and rec[2] == lut.dtype:
            rec[0].set(lut, outline_only=outline_only, interior=interior)
            layer.refresh()
            return None
        state = LutState(lut, outline_only=outline_only, interior=interior)
        self._states[key] = (state, labels, lut.dtype)
        levels = lut_pyramid(labels, state, self._tiles)
        data = levels if len(levels) > 1 else levels[0]
        if layer is not None:
            layer.data = data
            return None
        return data

    @staticmethod
    def _swap_levels(layer, rec, labels) -> bool:
        """Point the layer's own display levels (made for ``rec``'s pyramid) at ``labels``, a
        pyramid of the same shapes; False when the layer shows something else."""
        # napari hands a multiscale layer's levels back as a MultiScaleData (a sequence, not a
        # list: the test for a list made every swap fail, and each commit replaced the data)
        data = list(layer.data) if layer.multiscale else [layer.data]
        if len(data) != len(labels) or not all(isinstance(lv, LutLevel) and lv.state is rec[0] for lv in data):
            return False
        if any(tuple(int(v) for v in new.shape) != lv.shape for lv, new in zip(data, labels, strict=True)):
            return False
        for lv, new in zip(data, labels, strict=True):
            lv.labels = new
        return True

    def _find(self, role: str):
        found = self.session.layers_of(self.sid, role)
        return found[0] if found else None

    # ------------------------------------------------------------------ categorical
    @property
    def category_layer(self):
        """The Labels layer showing category codes (None before the first colouring)."""
        return self._find(ROLE_CATEGORIES)

    @property
    def value_layer(self):
        """The Image layer showing a continuous value (None before the first use)."""
        return self._find(ROLE_VALUES)

    def color_by_category(self, key: str, *, mode: str = "filled", opacity: float | None = None):
        """Colour every cell by categorical column ``obs[key]``.

        Parameters
        ----------
        key
            A categorical (or text / boolean) ``obs`` column.
        mode
            ``"filled"`` or ``"outline"`` (each cell's boundary in its category colour).
        opacity
            Layer opacity (default: keep the current one, 0.7 at first).

        Returns
        -------
        napari.layers.Labels
            The display layer.
        """
        if mode not in ("filled", "outline"):
            raise ValueError(f"mode must be 'filled' or 'outline', got {mode!r}")
        t = self.table
        if key not in t.obs:
            raise KeyError(f"no column {key!r} in the cell table of {self.sample.name!r}")
        cats, codes = categories_and_codes(t, key)
        same = self.kind == "categorical" and self.key == key and cats == self.categories
        self.key, self.kind, self.mode = key, "categorical", mode
        if opacity is not None:
            self.opacity = float(opacity)
        if not same:
            self.visible = np.ones(len(cats), dtype=bool)
        self.categories, self.codes = cats, codes
        self.colors = category_colors(t, key, cats)
        self._lut_ids = self.ids()
        self._lut = category_lut(self._lut_ids, codes, n_codes=2 * len(cats) + 1)
        layer = self._apply_categorical()
        self.events.changed(what="column")
        return layer

    def _apply_categorical(self):
        colors = self._rgba()
        cmap_key = colors.round(6).tobytes()
        cmap = None if (getattr(self, "_cmap_key", None) == cmap_key and self.category_layer is not None) \
            else direct_colormap(colors)
        layer = self.category_layer
        name = f"{self.sample.name}: {self.key}"
        feats_key = (self.key, tuple(self.categories))
        if layer is None:
            data = self._show(ROLE_CATEGORIES, None, self._lut, self.mode == "outline", len(self.categories))
            kw = self._layer_kwargs(name, ROLE_CATEGORIES)
            kw["metadata"][META_KEY] = self.key
            layer = self.viewer.add_labels(data, colormap=cmap, opacity=self.opacity, blending="translucent", **kw)
            self._feats_key = None
        else:
            layer.metadata[META_KEY] = self.key
            if cmap is not None:   # before the pixels: the first draw of new codes has the right colours
                layer.colormap = cmap
            self._show(ROLE_CATEGORIES, layer, self._lut, self.mode == "outline", len(self.categories))
            if layer.name != name:
                layer.name = name
            if layer.opacity != self.opacity:
                layer.opacity = self.opacity
        self._cmap_key = cmap_key
        if getattr(self, "_feats_key", None) != feats_key:
            # codes 1..n are the categories, n+1..2n the insides of their cells in outline mode
            # (transparent, but hovering there names the category as in filled mode)
            n = len(self.categories)
            layer.features = pd.DataFrame({"index": np.arange(2 * n + 1),
                                           self.key: ["background", *self.categories, *self.categories]})
            self._feats_key = feats_key
        if not layer.visible:
            layer.visible = True
        vl = self.value_layer
        if vl is not None and vl.visible:
            vl.visible = False
            vl.colorbar.visible = False
        return layer

    def _rgba(self) -> np.ndarray:
        return rgba(self.colors, np.where(self.visible, 1.0, 0.0))

    def _update_colormap(self) -> None:
        layer = self.category_layer
        if layer is not None and self.kind == "categorical":
            colors = self._rgba()
            layer.colormap = direct_colormap(colors)
            self._cmap_key = colors.round(6).tobytes()

    def set_mode(self, mode: str) -> None:
        """Switch between ``"filled"`` and ``"outline"`` for the current column (a flag of the
        display layer's lut state and a refresh: the layer's data stay)."""
        if mode not in ("filled", "outline"):
            raise ValueError(f"mode must be 'filled' or 'outline', got {mode!r}")
        if mode == self.mode:
            return
        self.mode = mode
        if self.kind == "categorical":
            layer = self.category_layer
            if layer is not None and self._lut is not None:
                self._show(ROLE_CATEGORIES, layer, self._lut, mode == "outline", len(self.categories))
            else:
                self.color_by_category(self.key, mode=mode)
                return
        elif self.kind == "numeric":
            self.color_by_value(self.key, clim=self.clim)
            return
        self.events.changed(what="mode")

    def set_opacity(self, opacity: float) -> None:
        """Opacity of the display layer(s), 0..1."""
        self.opacity = float(opacity)
        for lyr in (self.category_layer, self.value_layer):
            if lyr is not None:
                lyr.opacity = self.opacity
        self.events.changed(what="opacity")

    def _cat_index(self, cat) -> int:
        try:
            return self.categories.index(str(cat))
        except ValueError:
            raise KeyError(f"{cat!r} is not a category of {self.key!r} ({', '.join(self.categories)})") from None

    def set_category_visible(self, cat, visible: bool) -> None:
        """Show or hide one category (a colormap change: instant)."""
        self.visible[self._cat_index(cat)] = bool(visible)
        self._update_colormap()
        self.events.changed(what="visibility")

    def show_only(self, cat=None) -> None:
        """Show only category ``cat``; ``None`` shows all categories again."""
        if cat is None:
            self.visible[:] = True
        else:
            i = self._cat_index(cat)
            self.visible[:] = False
            self.visible[i] = True
        self._update_colormap()
        self.events.changed(what="visibility")

    def set_category_color(self, cat, color) -> None:
        """Set the colour of one category and save it in ``uns[f"{key}_colors"]``."""
        from matplotlib.colors import to_hex

        i = self._cat_index(cat)
        self.colors[i] = to_hex(color, keep_alpha=False)
        self.table.uns[colors_key(self.key)] = np.array(self.colors, dtype=object)
        self._update_colormap()
        self.events.changed(what="color")

    def color_of(self, cat) -> str:
        """Hex colour of a category of the current column."""
        return self.colors[self._cat_index(cat)]

    # ------------------------------------------------------------------ continuous
    def color_by_value(self, key: str, *, cmap: str | None = None, clim: tuple[float, float] | None = None):
        """Colour every cell by a numeric ``obs`` column or a marker (a column of ``X``).

        Parameters
        ----------
        key
            Numeric ``obs`` column (area, a score, ...) or marker name from ``var_names``.
        cmap
            napari colormap name (default: keep the current one, viridis at first).
        clim
            Contrast limits (default: 1st-99th percentile of the cells' values).

        Returns
        -------
        napari.layers.Image
            The display layer; its colour bar (``layer.colorbar``) is shown.
        """
        vals = numeric_values(self.table, key)
        changed_key = key != self.key or self.kind != "numeric"
        self.key, self.kind, self.values = key, "numeric", vals
        if cmap is not None:
            self.cmap = cmap
        finite = vals[np.isfinite(vals)]
        if clim is None and (changed_key or self.clim is None):
            if finite.size:
                lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
                if hi <= lo:
                    hi = lo + 1.0
            else:
                lo, hi = 0.0, 1.0
            clim = (lo, hi)
        if clim is not None:
            self.clim = (float(clim[0]), float(clim[1]))
        lut = label_lut(self.ids(), vals, fill=np.nan, dtype=np.float32)
        outline_only = self.mode == "outline"
        layer = self.value_layer
        name = f"{self.sample.name}: {key}"
        if layer is None:
            data = self._show(ROLE_VALUES, None, lut, outline_only)
            kw = self._layer_kwargs(name, ROLE_VALUES)
            kw["metadata"][META_KEY] = key
            layer = self.viewer.add_image(data, colormap=self.cmap, contrast_limits=self.clim,
                                          opacity=self.opacity, blending="translucent", **kw)
        else:
            layer.metadata[META_KEY] = key
            if layer.name != name:
                layer.name = name
            layer.colormap = self.cmap
            layer.contrast_limits = self.clim
            layer.opacity = self.opacity
            self._show(ROLE_VALUES, layer, lut, outline_only)
        if not layer.visible:
            layer.visible = True
        layer.colorbar.visible = True
        cl = self.category_layer
        if cl is not None and cl.visible:
            cl.visible = False
        self.events.changed(what="column")
        return layer

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the finite values of the current numeric column."""
        if self.values is None:
            return (0.0, 1.0)
        f = self.values[np.isfinite(self.values)]
        return (float(f.min()), float(f.max())) if f.size else (0.0, 1.0)

    def set_clim(self, lo: float, hi: float) -> None:
        """Contrast limits of the continuous colouring."""
        self.clim = (float(lo), float(max(hi, lo + 1e-12)))
        if self.value_layer is not None:
            self.value_layer.contrast_limits = self.clim
        self.events.changed(what="clim")

    def set_cmap(self, cmap: str) -> None:
        """Colormap of the continuous colouring (any napari colormap name)."""
        self.cmap = cmap
        if self.value_layer is not None:
            self.value_layer.colormap = cmap
        self.events.changed(what="cmap")

    # ------------------------------------------------------------------ highlight (gating preview)
    def highlight(self, cell_mask: np.ndarray, *, color="yellow", name: str = "highlight",
                  mode: str = "filled", opacity: float = 0.6):
        """Show the cells where ``cell_mask`` is True (aligned with table rows) in one colour.

        A separate Labels layer per ``name`` (created on the first call, updated after):
        calling it again with a new mask is fast (a new lut, no per-cell loop), so a threshold
        slider can preview live.

        Parameters
        ----------
        cell_mask
            Boolean array, one value per table row.
        color
            Any colour matplotlib understands.
        name
            Which highlight (several can coexist, e.g. one per gate).
        mode
            ``"filled"`` or ``"outline"``.
        opacity
            Layer opacity.

        Returns
        -------
        napari.layers.Labels
        """
        mask = np.asarray(cell_mask, dtype=bool).ravel()
        if mask.size != self.table.n_obs:
            raise ValueError(f"cell_mask has {mask.size} values for {self.table.n_obs} cells")
        lut = label_lut(self.ids(), mask.astype(np.uint8), fill=0, dtype=np.uint8)
        layer = self.highlight_layer(name)
        key = f"{ROLE_HIGHLIGHT}:{name}"
        from matplotlib.colors import to_hex

        cmap_key = to_hex(color, keep_alpha=True)
        if layer is None:
            data = self._show(key, None, lut, mode == "outline")
            kw = self._layer_kwargs(f"{self.sample.name}: {name}", ROLE_HIGHLIGHT)
            kw["metadata"][META_KEY] = name
            kw["metadata"]["carspatial_color"] = cmap_key
            layer = self.viewer.add_labels(data, colormap=direct_colormap(rgba([color])), opacity=opacity,
                                           blending="translucent", **kw)
        else:
            if layer.metadata.get("carspatial_color") != cmap_key:
                layer.colormap = direct_colormap(rgba([color]))
                layer.metadata["carspatial_color"] = cmap_key
            if layer.opacity != opacity:
                layer.opacity = opacity
            if not mask.any():
                # nothing to show: the lut changes, napari does not slice a hidden layer
                rec = self._states.get(key)
                if rec is not None and rec[1] is self.sample.labels:
                    rec[0].set(lut, outline_only=mode == "outline")
                    return layer
            self._show(key, layer, lut, mode == "outline")
            if not layer.visible:
                layer.visible = True
        return layer

    def highlight_layer(self, name: str = "highlight"):
        """The highlight layer called ``name``, or None."""
        for lyr in self.session.layers_of(self.sid, ROLE_HIGHLIGHT):
            if lyr.metadata.get(META_KEY) == name:
                return lyr
        return None

    def clear_highlight(self, name: str = "highlight") -> None:
        """Remove the highlight layer called ``name`` (no error when there is none)."""
        lyr = self.highlight_layer(name)
        if lyr is not None:
            self.viewer.layers.remove(lyr)
        self._states.pop(f"{ROLE_HIGHLIGHT}:{name}", None)

    # ------------------------------------------------------------------ after table edits
    def refresh(self, *, rows_added=None, rows_removed=None, rows=None, moved: bool = True) -> None:
        """Re-read the current column (after the table was edited) and redraw.

        ``moved=False``: the edit changed ``obs`` values only (a curation edit, a new column), so
        the cell positions are not compared with the kept ones at their next use (~10 ms at
        10^6 cells).

        ``rows_added`` / ``rows_removed`` (a segmentation commit, see
        :meth:`~.session.ViewerSession.table_changed`): the new table is the old one without
        the rows ``rows_removed`` (old positions) with rows appended at its end; the lut then
        gets entries for the new cells (and loses the removed ones) instead of being rebuilt
        from the whole column, when the column's categories only grew at their end. ``rows``
        (with them): the rows whose values changed (re-measured cells: their centroids).

        When the cells are the same (same ids in the same rows) and so is the column's category
        list, only the cells whose code changed get a new lookup-table entry (the lut is copied,
        never changed in place) and the layer re-maps the tiles it shows: an edit of 10^4 of
        10^6 cells does not rebuild the whole lut, the counts' positions or the colormap.
        :func:`~.lut.category_lut` of the whole column is the reference (a test compares them).
        """
        if (rows_added is not None or rows_removed is not None) and self._refresh_appended(rows_added, rows_removed,
                                                                                           rows):
            return
        ids = instance_ids(self.table)
        same_cells = self._ids is not None and np.array_equal(ids, self._ids)
        self._ids = ids
        if moved:
            self._yx_check = True   # positions may have moved (segmentation): checked at their next use
        if same_cells and self._refresh_categorical_rows():
            return
        if self.kind == "categorical" and self.key is not None:
            old = dict(zip(self.categories, self.visible, strict=False))
            # the same column and categories keep their visibility inside color_by_category; only
            # a changed category list needs the old choices mapped (and the colormap again)
            self.color_by_category(self.key, mode=self.mode)
            vis = np.array([old.get(c, True) for c in self.categories], dtype=bool)
            if not np.array_equal(vis, self.visible):
                self.visible = vis
                self._update_colormap()
        elif self.kind == "numeric" and self.key is not None:
            self.color_by_value(self.key, clim=self.clim)

    def _refresh_categorical_rows(self) -> bool:
        """The fast path of :meth:`refresh` (same cells): True when it applied the edit."""
        if self.kind != "categorical" or self.key is None or self._lut is None or self._lut.dense is None:
            return False
        t = self.table
        if self.key not in t.obs or self.category_layer is None:
            return False
        cats, codes = categories_and_codes(t, self.key)
        if cats != self.categories or codes.shape != self.codes.shape:
            return False
        if category_colors(t, self.key, cats) != self.colors:
            return False
        rows = np.flatnonzero(codes != self.codes)
        self.codes = codes
        if rows.size:
            dense = self._lut.dense
            ids = self._ids[rows]
            new = dense.copy()
            inside = ids < new.size
            val = codes[rows] + 1   # -1 (missing) -> 0
            if 2 * len(cats) + 1 > np.iinfo(new.dtype).max or not inside.all():
                self._lut = category_lut(self._ids, codes, n_codes=2 * len(cats) + 1)
            else:
                new[ids] = val.astype(new.dtype)
                new[0] = 0
                self._lut = LabelLut(dense=new, keys=None, values=None, fill=self._lut.fill)
            self._show(ROLE_CATEGORIES, self.category_layer, self._lut, self.mode == "outline", len(cats))
        self.events.changed(what="values")
        return True

    @staticmethod
    def _full_refresh_needed(where) -> bool:
        log.debug("row append: the colouring is rebuilt (%s)", where)
        return False

    def _refresh_appended(self, rows_added, rows_removed, rows=None) -> bool:
        """The row-append path of :meth:`refresh`: True when it applied the change (else the
        caller rebuilds). :func:`~.lut.category_lut` of the whole column is the reference (a
        test compares them)."""
        if self.kind != "categorical" or self.key is None or self._lut is None or self._lut.dense is None:
            return self._full_refresh_needed("not a categorical lut")
        t = self.table
        old_ids = self._lut_ids    # the rows the lut was made for (``ids()`` follows the table)
        if self.key not in t.obs or self.category_layer is None or old_ids is None or len(old_ids) != len(self.codes):
            return self._full_refresh_needed("no layer or codes")
        removed = np.asarray([] if rows_removed is None else rows_removed, dtype=np.int64).ravel()
        added = np.asarray([] if rows_added is None else rows_added, dtype=np.int64).ravel()
        if removed.size and (removed.min() < 0 or removed.max() >= len(old_ids)):
            return self._full_refresh_needed("removed rows out of range")
        removed = np.unique(removed)
        n_keep = len(old_ids) - removed.size
        ids = instance_ids(t)
        if len(ids) != n_keep + added.size or not np.array_equal(added, np.arange(n_keep, len(ids))):
            return self._full_refresh_needed("rows not appended at the end")
        # np.delete copies the runs between the removed rows (a boolean mask of 10^6 rows is
        # ~10x slower)
        kept_ids = np.delete(old_ids, removed) if removed.size else old_ids
        if not np.array_equal(ids[:n_keep], kept_ids):
            return self._full_refresh_needed("kept rows differ")
        cats, codes = categories_and_codes(t, self.key)
        n_old = len(self.categories)
        if cats[:n_old] != self.categories:
            return self._full_refresh_needed("categories renamed or reordered")   # the old codes mean other things
        colors = category_colors(t, self.key, cats)
        if colors[:n_old] != self.colors:
            return self._full_refresh_needed("colours changed")
        dense = self._lut.dense
        if 2 * len(cats) + 1 > np.iinfo(dense.dtype).max:
            return self._full_refresh_needed("too many codes for the lut dtype")
        # rows whose code changed (a merged cell takes the type of most of its area) + new rows
        kept_codes = np.delete(self.codes, removed) if removed.size else self.codes
        upd = np.concatenate([np.flatnonzero(codes[:n_keep] != kept_codes), added])
        size = max(dense.size, int(ids[upd].max()) + 1 if upd.size else 0)
        new = np.zeros(size, dtype=dense.dtype)
        new[:dense.size] = dense
        gone = old_ids[removed]
        new[gone[(gone >= 0) & (gone < size)]] = 0
        new[ids[upd]] = (codes[upd] + 1).astype(new.dtype)   # -1 (missing) -> 0
        new[0] = 0
        self._lut = LabelLut(dense=new, keys=None, values=None, fill=self._lut.fill)
        self._ids, self._lut_ids, self.codes = ids, ids, codes
        self._append_positions(t, removed, n_keep, rows)
        if len(cats) > n_old:
            self.visible = np.concatenate([self.visible, np.ones(len(cats) - n_old, dtype=bool)])
        self.categories, self.colors = cats, colors
        self._apply_categorical()
        self.events.changed(what="column")
        return True

    def _append_positions(self, t, removed: np.ndarray, n_keep: int, rows=None) -> None:
        """World centroids after a row append: the kept rows', the new rows' and, when ``rows``
        names the re-measured rows, theirs (else moved cells are found by
        :meth:`cell_yx_world`'s row-wise check at their next use)."""
        yx, src0 = self._yx_world, self._yx_src
        if yx is None or src0 is None or len(yx) != n_keep + removed.size or SPATIAL_KEY not in t.obsm:
            self._yx_world = None
            return
        src = np.asarray(t.obsm[SPATIAL_KEY])
        geom = self.session.geometry(self.sid)
        if src.shape[1:] != src0.shape[1:] or geom != self._yx_geom or len(src) < n_keep:
            self._yx_world = None
            return
        n = len(src)
        redo = np.arange(n_keep, n)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64).ravel()
            redo = np.union1d(rows[(rows >= 0) & (rows < n)], redo)
        new_src = np.empty((n,) + src0.shape[1:], dtype=src0.dtype)
        new_yx = np.empty((n, 2), dtype=yx.dtype)
        new_src[:n_keep] = np.delete(src0, removed, axis=0) if removed.size else src0
        new_yx[:n_keep] = np.delete(yx, removed, axis=0) if removed.size else yx
        (sy, sx), (ty, tx), _ = geom
        a = np.asarray(src[redo], dtype=float)
        new_src[redo] = a
        new_yx[redo] = spatial_to_yx(a) * np.asarray((sy, sx)) + np.asarray((ty, tx))
        self._yx_src, self._yx_world = new_src, new_yx
        self._yx_check = rows is None

    # ------------------------------------------------------------------ counts
    def counts(self, where: np.ndarray | None = None) -> np.ndarray:
        """Cells per category of the current column (in the sample, or rows in ``where``)."""
        return counts_by_code(self.codes, len(self.categories), where)

    def in_view(self) -> np.ndarray:
        """Boolean per table row: the cell's centroid is inside the camera's visible rectangle."""
        return in_rect(self.cell_yx_world(), *visible_world_rect(self.viewer))

    def in_selected_shapes(self) -> np.ndarray | None:
        """Boolean per row: inside any selected shape of a Shapes layer; None when none is selected."""
        polys = selected_polygons_world(self.viewer)
        if not polys:
            return None
        yx = self.cell_yx_world()
        out = np.zeros(len(yx), dtype=bool)
        for p in polys:
            out |= in_polygon(yx, p)
        return out


def get_coloring(viewer, sample_id: str) -> CellColoring:
    """The :class:`CellColoring` of ``sample_id`` in ``viewer``: ``session_for(viewer).coloring(sample_id)``."""
    return session_for(viewer).coloring(sample_id)
