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
