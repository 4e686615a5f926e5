"""Cell colours without a viewer: lookup tables from mask ids to values, applied lazily per tile.

The pure half of :mod:`.coloring` (no napari, no Qt, nothing per cell in Python):

* :class:`LabelLut` / :func:`label_lut` / :func:`category_lut`: ``mask id -> value`` as a dense
  array indexed by id (one vectorised assignment, milliseconds), or sorted ids +
  :func:`numpy.searchsorted` when the ids are too large for a dense array;
* :func:`map_labels` maps a tile, :func:`outline` keeps each cell's boundary pixels,
  :func:`codes_pyramid` builds the lazy dask pyramid ``lut[labels_tile]`` (computed only for the
  tiles napari displays; a 1-pixel halo for outlines);
* table columns that can colour cells (:func:`column_choices`, :func:`is_categorical`,
  :func:`categories_and_codes`, :func:`numeric_values`) and counting
  (:func:`counts_by_code`, :func:`in_rect`, :func:`in_polygon`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model.geometry import points_in_polygon

#: a dense lut is used while the largest id is below this (or below 8 x the number of cells)
DENSE_MAX_ID = 1 << 24
#: display tiles are at most this many pixels on a side (larger source chunks are split)
TILE = 1024


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


def category_lut(ids: np.ndarray, codes: np.ndarray, *, visible: np.ndarray | None = None,
                 n_codes: int | None = None, **kw) -> LabelLut:
    """Lookup table ``mask id -> category code + 1`` (0 = background / missing / not shown).

    Parameters
    ----------
    ids
        Mask label of each table row.
    codes
        Category code of each row as in :attr:`pandas.Categorical.codes` (``-1`` = missing).
    visible
        Optional per-row boolean: rows where it is False map to 0 (used for highlights).
    n_codes
        Codes the lut's dtype must hold besides these (e.g. ``2 * n_categories + 1`` when the
        outline display gives cell interiors codes of their own, :class:`LutState`).

    Returns
    -------
    LabelLut
        uint8 values when there are fewer than 255 codes, else uint16/uint32.
    """
    codes = np.asarray(codes)
    n = int(codes.max()) + 1 if codes.size else 0
    n = max(n, int(n_codes or 0))
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

    def __init__(self, lut: LabelLut, outline_only: bool, interior: int = 0):
        self.lut = lut
        self.outline_only = outline_only
        self.interior = int(interior)
        self.token = uuid.uuid4().hex

    def __dask_tokenize__(self):
        return ("carspatial-tile-mapper", self.token)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = map_labels(block, self.lut)
        if self.outline_only:
            out = _keep_outline(out, outline(block), self.interior)
        return out


def _keep_outline(codes: np.ndarray, edge: np.ndarray, interior: int = 0) -> np.ndarray:
    """``codes`` on the boundary pixels ``edge``; inside a cell 0 (NaN for floats), or, with
    ``interior`` > 0, the cell's code + ``interior`` (a code of its own that the colormap leaves
    transparent, so the pixel still says which category the cell under the cursor is)."""
    if codes.dtype.kind == "f":
        return np.where(edge, codes, np.nan).astype(codes.dtype, copy=False)
    if interior:
        return np.where(edge | (codes == 0), codes, codes + codes.dtype.type(interior))
    return codes * edge.astype(codes.dtype)


def _display_chunks(arr):
    import dask.array as da

    arr = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=(TILE, TILE))
    if any(max(c) > 2 * TILE for c in arr.chunks):
        arr = arr.rechunk(tuple(min(TILE, s) if max(c) > 2 * TILE else c for s, c in zip(arr.shape, arr.chunks, strict=False)))
    return arr


def codes_pyramid(labels: Sequence, lut: LabelLut, *, outline_only: bool = False, interior: int = 0) -> list:
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
    interior
        With ``outline_only``: 0 leaves cell interiors at 0; > 0 gives them their code +
        ``interior`` (see :class:`LutState`).

    Returns
    -------
    list of dask.array.Array
        One per level, dtype of the lut.
    """
    import dask.array as da

    mapper = _TileMapper(lut, outline_only, interior)
    out = []
    for lvl in labels:
        lvl = _display_chunks(lvl)
        if outline_only:
            out.append(da.map_overlap(mapper, lvl, depth=1, boundary=0, dtype=lut.dtype, trim=True))
        else:
            out.append(da.map_blocks(mapper, lvl, dtype=lut.dtype))
    return out


# --------------------------------------------------------------------------- lazy display levels
class LutState:
    """What a lazy display pyramid shows: the current lut and whether only outlines are kept.

    The levels of :func:`lut_pyramid` read this at every slice, so an edit (new codes, a new
    selection, outline on / off) is a new lut or flag here plus ``layer.refresh()``: napari
    re-slices the tiles it shows, nothing else is rebuilt. A lut is replaced, never changed in
    place (a slice computed in napari's slicing thread sees either the old or the new one).

    ``interior`` > 0 (the category layer): in outline mode a cell's inside pixels hold its code
    + ``interior`` instead of 0; the colormap has no colour for those codes (transparent), so
    only the outlines are drawn, while napari's hover status over a cell's inside still names
    its category (the layer's features list each category at both codes).
    """

    def __init__(self, lut: LabelLut, *, outline_only: bool = False, interior: int = 0):
        self.lut = lut
        self.outline_only = bool(outline_only)
        self.interior = int(interior)
        #: bumped at every change (tests, debugging)
        self.version = 0

    @property
    def dtype(self) -> np.dtype:
        return self.lut.dtype

    def set(self, lut: LabelLut | None = None, *, outline_only: bool | None = None,
            interior: int | None = None) -> None:
        if lut is not None:
            self.lut = lut
        if outline_only is not None:
            self.outline_only = bool(outline_only)
        if interior is not None:
            self.interior = int(interior)
        self.version += 1


class TileCache:
    """The last label tiles read from a pyramid (shared by a sample's display layers), so a
    recolouring re-maps pixels already in memory instead of decoding the mask again."""

    def __init__(self, max_bytes: int = 192 * 2**20, max_tiles: int = 16):
        from collections import OrderedDict

        self._tiles: OrderedDict = OrderedDict()
        self.max_bytes, self.max_tiles = int(max_bytes), int(max_tiles)
        self._lock = __import__("threading").Lock()
        self.hits = self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()

    def get(self, level, box: tuple) -> np.ndarray:
        key = (id(level), box)
        with self._lock:
            hit = self._tiles.get(key)
            if hit is not None and hit[0] is level:
                self._tiles.move_to_end(key)
                self.hits += 1
                return hit[1]
        (y0, y1), (x0, x1) = box
        tile = np.asarray(level[y0:y1, x0:x1])
        with self._lock:
            self.misses += 1
            self._tiles[key] = (level, tile)
            total = sum(t.nbytes for _, t in self._tiles.values())
            while self._tiles and (len(self._tiles) > self.max_tiles or total > self.max_bytes):
                _, (_, old) = self._tiles.popitem(last=False)
                total -= old.nbytes
        return tile


def _norm_key(key, shape) -> tuple[list[tuple[int, int, int]], list[bool]]:
    """(start, stop, step) per axis and which axes were integers (dropped from the result)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    key = key + (slice(None),) * (len(shape) - len(key))
    if len(key) != len(shape):
        raise IndexError(f"too many indices ({len(key)}) for a {len(shape)}-d display level")
    out, drop = [], []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step < 0:
                raise IndexError("negative steps are not supported by display levels")
            out.append((start, max(start, stop), step))
            drop.append(False)
        else:
            i = int(k)
            i = i + n if i < 0 else i
            if not 0 <= i < n:
                raise IndexError(f"index {k} out of bounds for axis of size {n}")
            out.append((i, i + 1, 1))
            drop.append(True)
    return out, drop


class LutLevel:
    """One level of a lazy display pyramid: ``state.lut[labels[key]]`` (and, when
    ``state.outline_only``, only each cell's boundary pixels), computed for the slice napari asks
    for. Implements napari's ``LayerDataProtocol`` (``shape``, ``dtype``, ``ndim``, ``size``,
    ``__getitem__``)."""

    def __init__(self, labels, state: LutState, cache: TileCache | None = None):
        if labels.ndim != 2:
            raise ValueError(f"display levels are 2-D, got {labels.ndim} dimensions")
        self.labels = labels
        self.state = state
        self.cache = cache if cache is not None else TileCache()
        self._shape = tuple(int(v) for v in labels.shape)   # napari asks often; a level never changes shape

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self.state.dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LutLevel(shape={self.shape}, dtype={self.dtype}, outline={self.state.outline_only})"

    def __getitem__(self, key) -> np.ndarray:
        ((ys, ye, ystep), (xs, xe, xstep)), drop = _norm_key(key, self.shape)
        state = self.state
        lut, outline_only, interior = state.lut, state.outline_only, state.interior
        H, W = self.shape
        if ye <= ys or xe <= xs:
            out = np.zeros((max(0, ye - ys), max(0, xe - xs)), dtype=lut.dtype)
        else:
            # one read with a 1-pixel halo in both modes (the same cached tile: switching filled /
            # outline or re-colouring re-maps pixels in memory); the halo makes boundaries across
            # tiles exact, outside the image counts as background (as in codes_pyramid)
            y0, y1, x0, x1 = max(0, ys - 1), min(H, ye + 1), max(0, xs - 1), min(W, xe + 1)
            tile = self.cache.get(self.labels, ((y0, y1), (x0, x1)))
            h, w = ye - ys, xe - xs
            oy, ox = ys - y0, xs - x0
            core = tile[oy:oy + h, ox:ox + w]
            out = map_labels(core, lut)
            if outline_only:
                pad = ((int(ys == y0), int(ye == y1)), (int(xs == x0), int(xe == x1)))
                if any(any(p) for p in pad):
                    tile = np.pad(tile, pad)
                edge = outline(tile)[1:1 + h, 1:1 + w]
                out = _keep_outline(out, edge, interior)
        if ystep != 1 or xstep != 1:
            out = out[::ystep, ::xstep]
        if drop[0] or drop[1]:
            out = out[(0 if drop[0] else slice(None), 0 if drop[1] else slice(None))]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out.astype(dtype) if dtype is not None else out


def lut_pyramid(labels: Sequence, state: LutState, cache: TileCache | None = None) -> list[LutLevel]:
    """Lazy display levels over every level of ``labels``, all showing ``state`` (one tile cache)."""
    cache = cache if cache is not None else TileCache()
    return [LutLevel(lvl, state, cache) for lvl in labels]


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
            if isinstance(s.dtype, pd.CategoricalDtype):
                n = len(s.cat.categories)
            elif s.dtype == bool:
                n = min(len(s), 2)   # True and/or False: 1 or 2 values (no pass over 10^6 cells)
            else:
                n = s.nunique(dropna=True)
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
    if key in adata.var_names:   # a marker or gene: one column of X read from its non-zeros (omicsgui)
        from ..analysis.genes import gene_values

        return gene_values(adata, key, layer=layer).astype(np.float32)
    raise KeyError(f"{key!r} is neither an obs column nor a marker (var_names) of the table")


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
