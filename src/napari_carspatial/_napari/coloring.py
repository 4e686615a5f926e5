"""Colour cells by a table column, instantly, at a million cells. No Qt.

napari's own way (one ``DirectLabelColormap`` entry per cell id) builds and hashes a Python
dictionary of every label: about 12 s for 1,000,000 cells. Here the colour never depends on the
number of cells:

* a **lookup table** (``lut``) maps every mask id to a small *category code* (0 = background or
  hidden, ``1..n`` = categories). It is a dense numpy array indexed by id (one vectorised
  assignment over the table, milliseconds), or sorted ids + :func:`numpy.searchsorted` when the
  ids are too large for a dense array;
* a separate **display layer** (a napari Labels layer, multiscale, same scale as the cells) holds
  a *lazy* dask pyramid ``codes = lut[labels_tile]``, computed only for the tiles napari displays;
* its colormap is a ``DirectLabelColormap`` with only ``n_categories + 1`` entries, so hiding a
  category, "show only" or a colour edit is a colormap change (instant), and switching the column
  is a new lut plus a data swap;
* outline mode keeps the codes only on each cell's boundary pixels (a pixel that differs from
  one of its 4 neighbours, computed per tile with a 1-pixel halo), so every *cell* gets an
  outline in its type colour (napari's ``contour`` on the codes would outline category patches);
* continuous values (a marker's mean, area, ...) use the same lazy mapping with a float lut
  (NaN = background) in an Image layer with a colormap, contrast limits and napari's colour bar.

The pure functions (:func:`label_lut`, :func:`category_lut`, :func:`map_labels`,
:func:`outline`, :func:`codes_pyramid`) need no viewer. :class:`CellColoring` drives the layers
of one sample in one viewer; the viewer's session owns it (``session_for(viewer).coloring(sid)``,
or :func:`get_coloring`).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model import colors_key, instance_ids, spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from ..model.geometry import points_in_polygon
from .inspect import camera
from .session import META_ROLE, META_SAMPLE, session_for
from .shapes import selected_polygons_world

log = logging.getLogger(__name__)

#: ``layer.metadata`` roles of the display layers made here
ROLE_CATEGORIES = "cell_colours"
ROLE_VALUES = "cell_values"
ROLE_HIGHLIGHT = "cell_highlight"
#: key in ``layer.metadata`` naming the column a display layer shows
META_KEY = "carspatial_colour_key"

#: a dense lut is used while the largest id is below this (or below 8 x the number of cells)
DENSE_MAX_ID = 1 << 24
#: display tiles are at most this many pixels on a side (larger source chunks are split)
TILE = 1024

# A categorical palette for categories without a stored colour: distinct, vivid hues first
# (Okabe-Ito + tab20-like), greys last.
DEFAULT_PALETTE = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#8c564b",
    "#17becf", "#bcbd22", "#9467bd", "#ff9896", "#98df8a", "#c5b0d5", "#aec7e8", "#ffbb78",
    "#c49c94", "#dbdb8d", "#9edae5", "#f7b6d2", "#393b79", "#637939", "#8c6d31", "#843c39",
)
# Colours a pathologist expects for well-known types (first matching pattern wins). CAR T is the
# cell everyone looks for: it gets the loudest colour; abundant tumour and stroma are muted.
_SEMANTIC = (
    (r"car[\s_-]?t", "#ff00ff"),
    (r"(antigen|ag)[\s_-]?(neg|-)|msln[\s_-]?(neg|-)", "#8c5a2b"),
    (r"tumou?r|carcinoma|epithel|cancer", "#d9c7a3"),
    (r"cd8", "#0072b2"),
    (r"cd4", "#56b4e9"),
    (r"t[\s_-]?cell|^t$|lymph", "#7fb8da"),
    (r"macro|cd68|cd163", "#009e73"),
    (r"mdsc|myeloid|neutro", "#cc79a7"),
    (r"b[\s_-]?cell|cd20", "#f0e442"),
    (r"endotheli|vessel|cd31", "#d55e00"),
    (r"strom|fibro|sma", "#8c8c8c"),
    (r"^(other|unknown|unassigned|undefined|nan|none)$", "#5a5a5a"),
)


# =========================================================================== pure functions
@dataclass(frozen=True)
class LabelLut:
    """Maps mask ids to values, vectorised.

    Either ``dense`` (``dense[id]`` is the value; ids beyond its end map to ``fill``) or the
    sorted ``keys`` with their ``values`` (looked up with :func:`numpy.searchsorted`).
    """

    dense: np.ndarray | None
    keys: np.ndarray | None
    values: np.ndarray | None
    fill: Any

    @property
    def dtype(self) -> np.dtype:
        return (self.dense if self.dense is not None else self.values).dtype


def label_lut(ids: np.ndarray, values: np.ndarray, *, fill=0, dtype=None, dense_max_id: int | None = None) -> LabelLut:
    """Build a lookup table ``mask id -> value`` from aligned ``ids`` and ``values``.

    Parameters
    ----------
    ids
        Mask label of each table row (non-negative integers, unique).
    values
        Value of each row (category code, float, ...), same length as ``ids``.
    fill
        Value of ids that are not in ``ids`` (background 0 included).
    dtype
        dtype of the mapped values (default: ``values.dtype``).
    dense_max_id
        Largest id for which a dense array is used (default: the larger of
        :data:`DENSE_MAX_ID` and 8 x the number of rows); above it, sorted ids are searched.

    Returns
    -------
    LabelLut
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    values = np.asarray(values).ravel()
    if ids.shape != values.shape:
        raise ValueError(f"{ids.size} ids but {values.size} values")
    dtype = np.dtype(dtype or values.dtype)
    if ids.size and ids.min() < 0:
        raise ValueError(f"mask ids must be >= 0, got {int(ids.min())}")
    max_id = int(ids.max()) if ids.size else 0
    limit = dense_max_id if dense_max_id is not None else max(DENSE_MAX_ID, 8 * ids.size)
    if max_id <= limit:
        dense = np.full(max_id + 1, fill, dtype=dtype)
        dense[ids] = values
        dense[0] = fill  # 0 is background, whatever the table says
        return LabelLut(dense=dense, keys=None, values=None, fill=fill)
    order = np.argsort(ids, kind="stable")
    return LabelLut(dense=None, keys=ids[order], values=values[order].astype(dtype, copy=False), fill=fill)


def category_lut(ids: np.ndarray, codes: np.ndarray, *, visible: np.ndarray | None = None, **kw) -> LabelLut:
    """Lookup table ``mask id -> category code + 1`` (0 = background / missing / not shown).

    Parameters
    ----------
    ids
        Mask label of each table row.
    codes
        Category code of each row as in :attr:`pandas.Categorical.codes` (``-1`` = missing).
    visible
        Optional per-row boolean: rows where it is False map to 0 (used for highlights).

    Returns
    -------
    LabelLut
        uint8 values when there are fewer than 255 categories, else uint16/uint32.
    """
    codes = np.asarray(codes)
    n = int(codes.max()) + 1 if codes.size else 0
    dtype = np.uint8 if n < 255 else (np.uint16 if n < 65535 else np.uint32)
    out = (codes.astype(np.int64) + 1).astype(dtype)
    if visible is not None:
        out[~np.asarray(visible, bool)] = 0
    return label_lut(ids, out, fill=0, dtype=dtype, **kw)


def map_labels(labels_tile: np.ndarray, lut: LabelLut | np.ndarray) -> np.ndarray:
    """Map every pixel's mask id through ``lut`` (vectorised, no per-cell loop).

    Parameters
    ----------
    labels_tile
        Integer label image (any shape).
    lut
        A :class:`LabelLut`, or a plain dense array indexed by id (ids beyond it map to 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``labels_tile``, dtype of the lut.
    """
    tile = np.asarray(labels_tile)
    if isinstance(lut, np.ndarray):
        lut = LabelLut(dense=lut, keys=None, values=None, fill=0)
    if tile.size == 0:
        return np.zeros(tile.shape, lut.dtype)
    if lut.dense is not None:
        dense = lut.dense
        hi = tile.max()
        lo = tile.min()
        if lo >= 0 and hi < dense.size:
            return dense[tile]
        ok = (tile >= 0) & (tile < dense.size)
        out = np.full(tile.shape, lut.fill, dtype=dense.dtype)
        out[ok] = dense[tile[ok]]
        return out
    keys, vals = lut.keys, lut.values
    if keys.size == 0:
        return np.full(tile.shape, lut.fill, dtype=vals.dtype)
    t = tile.astype(np.int64, copy=False)
    idx = np.searchsorted(keys, t)
    np.minimum(idx, keys.size - 1, out=idx)
    found = keys[idx] == t
    return np.where(found, vals[idx], np.asarray(lut.fill, dtype=vals.dtype))


def outline(labels_tile: np.ndarray) -> np.ndarray:
    """Boundary pixels of every cell: non-background pixels that differ from a 4-neighbour.

    Pixels on the tile edge are compared only with the neighbours inside the tile (give the tile
    a 1-pixel halo, as :func:`codes_pyramid` does, to outline across tiles).

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``labels_tile``; equals ``skimage.segmentation.find_boundaries(
        labels, mode="inner", connectivity=1)``.
    """
    t = np.asarray(labels_tile)
    b = np.zeros(t.shape, dtype=bool)
    if t.ndim != 2 or t.size == 0:
        return b
    d = t[1:, :] != t[:-1, :]
    b[1:, :] |= d
    b[:-1, :] |= d
    d = t[:, 1:] != t[:, :-1]
    b[:, 1:] |= d
    b[:, :-1] |= d
    b &= t != 0
    return b


class _TileMapper:
    """Callable applied to each tile by dask; tokenised by a fresh id (never by hashing the lut)."""

    def __init__(self, lut: LabelLut, outline_only: bool):
        self.lut = lut
        self.outline_only = outline_only
        self.token = uuid.uuid4().hex

    def __dask_tokenize__(self):
        return ("carspatial-tile-mapper", self.token)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = map_labels(block, self.lut)
        if self.outline_only:
            edge = outline(block)
            if out.dtype.kind == "f":
                out = np.where(edge, out, np.nan).astype(out.dtype, copy=False)
            else:
                out = out * edge.astype(out.dtype)
        return out


def _display_chunks(arr):
    import dask.array as da

    arr = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=(TILE, TILE))
    if any(max(c) > 2 * TILE for c in arr.chunks):
        arr = arr.rechunk(tuple(min(TILE, s) if max(c) > 2 * TILE else c for s, c in zip(arr.shape, arr.chunks, strict=False)))
    return arr


def codes_pyramid(labels: Sequence, lut: LabelLut, *, outline_only: bool = False) -> list:
    """Lazy pyramid of ``lut`` applied to each level of ``labels`` (nothing is computed here).

    Parameters
    ----------
    labels
        Label pyramid (numpy or dask arrays), level 0 first.
    lut
        From :func:`label_lut` / :func:`category_lut`.
    outline_only
        Keep values only on cell boundary pixels (others: 0, or NaN for float luts); tiles get a
        1-pixel halo so boundaries across tiles are exact, and the image border counts as a
        boundary.

    Returns
    -------
    list of dask.array.Array
        One per level, dtype of the lut.
    """
    import dask.array as da

    mapper = _TileMapper(lut, outline_only)
    out = []
    for lvl in labels:
        lvl = _display_chunks(lvl)
        if outline_only:
            out.append(da.map_overlap(mapper, lvl, depth=1, boundary=0, dtype=lut.dtype, trim=True))
        else:
            out.append(da.map_blocks(mapper, lvl, dtype=lut.dtype))
    return out


# --------------------------------------------------------------------------- table columns
def is_categorical(adata, key: str) -> bool:
    """Whether ``obs[key]`` is a categorical, boolean or text column (a marker never is)."""
    if key not in adata.obs:
        return False
    dt = adata.obs[key].dtype
    return isinstance(dt, pd.CategoricalDtype) or dt in (bool, object) or pd.api.types.is_string_dtype(dt)


def column_choices(adata) -> dict[str, list[str]]:
    """Columns that can colour cells: ``{"categorical": [...], "numeric": [...], "markers": [...]}``."""
    cat, num = [], []
    for k in adata.obs.columns:
        if k in ("region",):
            continue
        s = adata.obs[k]
        if is_categorical(adata, k):
            n = s.nunique(dropna=True) if not isinstance(s.dtype, pd.CategoricalDtype) else len(s.cat.categories)
            if 0 < n <= 1000:
                cat.append(str(k))
        elif pd.api.types.is_numeric_dtype(s.dtype):
            num.append(str(k))
    from ..model.conventions import get_table_link

    inst = get_table_link(adata)["instance_key"]
    num = [k for k in num if k != inst]
    return {"categorical": cat, "numeric": num, "markers": [str(v) for v in adata.var_names]}


def categories_and_codes(adata, key: str) -> tuple[list[str], np.ndarray]:
    """Categories (as text, in category order) and per-row codes (-1 = missing) of ``obs[key]``."""
    s = adata.obs[key]
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        codes = s.cat.codes.to_numpy()
    else:
        c = pd.Categorical(s)
        cats, codes = c.categories, c.codes
    return [str(c) for c in cats], np.asarray(codes, dtype=np.int64)


def numeric_values(adata, key: str, *, layer: str | None = None) -> np.ndarray:
    """Per-row float32 values of numeric ``obs[key]`` or of marker ``key`` (a column of ``X``)."""
    if key in adata.obs:
        return pd.to_numeric(adata.obs[key], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
    if key in adata.var_names:
        j = int(np.flatnonzero(np.asarray(adata.var_names) == key)[0])
        X = adata.layers[layer] if layer else adata.X
        col = X[:, j]
        if hasattr(col, "toarray"):
            col = col.toarray()
        return np.asarray(col, dtype=np.float32).ravel()
    raise KeyError(f"{key!r} is neither an obs column nor a marker (var_names) of the table")


def _valid_hex(colors) -> list[str] | None:
    from matplotlib.colors import to_hex

    try:
        return [to_hex(c, keep_alpha=False) for c in list(colors)]
    except (ValueError, TypeError):
        return None


def default_colors(categories: Sequence[str]) -> list[str]:
    """A colour per category: the usual colour of well-known cell types, a distinct palette else."""
    out: list[str | None] = [None] * len(categories)
    used = set()
    for i, name in enumerate(categories):
        low = str(name).strip().lower()
        for pat, col in _SEMANTIC:
            if re.search(pat, low) and col not in used:
                out[i] = col
                used.add(col)
                break
    pal = [c for c in DEFAULT_PALETTE if c not in used]
    k = 0
    for i in range(len(out)):
        if out[i] is None:
            if k < len(pal):
                out[i] = pal[k]
            else:  # many categories: evenly spaced hues
                import colorsys

                h = (k * 0.618034) % 1.0
                r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.9)
                out[i] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
            k += 1
    return out  # type: ignore[return-value]


def category_colors(adata, key: str, categories: Sequence[str] | None = None, *, store_default: bool = True) -> list[str]:
    """Hex colours of ``obs[key]``'s categories from ``uns[f"{key}_colors"]`` (scanpy convention).

    When the stored list is missing, has the wrong length or holds an invalid colour, a default
    is made (:func:`default_colors`) and, with ``store_default``, written back.
    """
    if categories is None:
        categories, _ = categories_and_codes(adata, key)
    ck = colors_key(key)
    stored = adata.uns.get(ck)
    if stored is not None and len(stored) == len(categories):
        hexes = _valid_hex(stored)
        if hexes is not None:
            return hexes
        log.warning("uns[%r] holds invalid colours; using defaults", ck)
    elif stored is not None:
        log.info("uns[%r] has %d colours for %d categories; using defaults", ck, len(stored), len(categories))
    cols = default_colors(categories)
    if store_default:
        adata.uns[ck] = np.array(cols, dtype=object)
    return cols


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


# --------------------------------------------------------------------------- counting
def counts_by_code(codes: np.ndarray, n: int, where: np.ndarray | None = None) -> np.ndarray:
    """Number of rows per category (codes 0..n-1, -1 ignored), optionally only rows in ``where``."""
    c = codes if where is None else codes[where]
    c = c[c >= 0]
    return np.bincount(c, minlength=n)[:n]


def in_rect(yx: np.ndarray, y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    """Boolean mask of points (rows (y, x)) inside the axis-aligned rectangle."""
    y, x = yx[:, 0], yx[:, 1]
    return (y >= y0) & (y <= y1) & (x >= x0) & (x <= x1)


def in_polygon(yx: np.ndarray, polygon_yx: np.ndarray) -> np.ndarray:
    """Vectorised point-in-polygon (matplotlib), with a bounding-box prefilter for speed."""
    return points_in_polygon(yx, polygon_yx)


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
    gating dock and scripts share one state. ``events.changed`` fires after every change.
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
        self._ids: np.ndarray | None = None
        self._lut: LabelLut | None = None

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
        """Cell centroids in world (y, x) coordinates (µm when the pixel size is known)."""
        if self._yx_world is None or len(self._yx_world) != self.table.n_obs:
            (sy, sx), (ty, tx), _ = self.session.geometry(self.sid)
            yx = spatial_to_yx(np.asarray(self.table.obsm[SPATIAL_KEY], dtype=float))
            self._yx_world = yx * np.asarray((sy, sx)) + np.asarray((ty, tx))
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

    def _pyramid(self, lut: LabelLut, outline_only: bool):
        labels = self.sample.labels
        if not labels:
            raise ValueError(f"sample {self.sample.name!r} has no segmentation mask to colour")
        pyr = codes_pyramid(labels, lut, outline_only=outline_only)
        return pyr if len(pyr) > 1 else pyr[0]

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
        self._lut = category_lut(self.ids(), codes)
        layer = self._apply_categorical()
        self.events.changed(what="column")
        return layer

    def _apply_categorical(self):
        data = self._pyramid(self._lut, self.mode == "outline")
        cmap = direct_colormap(self._rgba())
        layer = self.category_layer
        name = f"{self.sample.name}: {self.key}"
        if layer is None:
            kw = self._layer_kwargs(name, ROLE_CATEGORIES)
            kw["metadata"][META_KEY] = self.key
            layer = self.viewer.add_labels(data, colormap=cmap, opacity=self.opacity, blending="translucent", **kw)
        else:
            layer.metadata[META_KEY] = self.key
            layer.colormap = cmap   # before the data: the first draw of new codes has the right colours
            layer.data = data
            if layer.name != name:
                layer.name = name
            if layer.opacity != self.opacity:
                layer.opacity = self.opacity
        layer.features = pd.DataFrame({"index": np.arange(len(self.categories) + 1),
                                       self.key: ["background", *self.categories]})
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
            layer.colormap = direct_colormap(self._rgba())

    def set_mode(self, mode: str) -> None:
        """Switch between ``"filled"`` and ``"outline"`` for the current column."""
        if mode not in ("filled", "outline"):
            raise ValueError(f"mode must be 'filled' or 'outline', got {mode!r}")
        if mode == self.mode:
            return
        if self.kind == "categorical":
            self.color_by_category(self.key, mode=mode)
        else:
            self.mode = mode
            if self.kind == "numeric":
                self.color_by_value(self.key, clim=self.clim)

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
        data = self._pyramid(lut, outline_only)
        layer = self.value_layer
        name = f"{self.sample.name}: {key}"
        if layer is None:
            kw = self._layer_kwargs(name, ROLE_VALUES)
            kw["metadata"][META_KEY] = key
            layer = self.viewer.add_image(data, colormap=self.cmap, contrast_limits=self.clim,
                                          opacity=self.opacity, blending="translucent", **kw)
        else:
            layer.metadata[META_KEY] = key
            layer.data = data
            layer.name = name
            layer.colormap = self.cmap
            layer.contrast_limits = self.clim
            layer.opacity = self.opacity
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
        data = self._pyramid(lut, mode == "outline")
        cmap = direct_colormap(rgba([color]))
        layer = self.highlight_layer(name)
        if layer is None:
            kw = self._layer_kwargs(f"{self.sample.name}: {name}", ROLE_HIGHLIGHT)
            kw["metadata"][META_KEY] = name
            layer = self.viewer.add_labels(data, colormap=cmap, opacity=opacity, blending="translucent", **kw)
        else:
            layer.colormap = cmap
            layer.data = data
            layer.opacity = opacity
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

    # ------------------------------------------------------------------ after table edits
    def refresh(self) -> None:
        """Re-read the current column (after the table was edited) and redraw."""
        self._ids = None
        self._yx_world = None
        if self.kind == "categorical" and self.key is not None:
            old = dict(zip(self.categories, self.visible, strict=False))
            self.color_by_category(self.key, mode=self.mode)
            self.visible = np.array([old.get(c, True) for c in self.categories], dtype=bool)
            self._update_colormap()
        elif self.kind == "numeric" and self.key is not None:
            self.color_by_value(self.key, clim=self.clim)

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
