"""Curation state: curated cell types, exclusions, review progress and ROIs, with unlimited undo.

Headless (no napari, no Qt). One :class:`Curation` per cell table; the GUI and scripts drive it
the same way::

    cur = Curation(adata, rois=sample.rois, reviewer="jdoe")
    cur.assign(rows, "CAR T", note="CAR+ by eye")
    cur.exclude(rows2, "fold")
    cur.undo(); cur.redo()

Table layout (everything h5ad / zarr serialisable, restored by :meth:`Curation.from_table`):

``obs[<type_key>_curated]``
    Categorical, initialised from the original column ``obs[<type_key>]`` (which is never
    changed). Assignments write here only. Its colours live in ``uns[<curated>_colors]``.
``obs["excluded"]`` / ``obs["exclude_reason"]``
    Boolean / categorical (:data:`EXCLUDE_REASONS`, missing when not excluded).
``obs["reviewed"]``
    Boolean: the cell was in a selection that was re-annotated, excluded or confirmed, or inside
    a region marked reviewed.
``obs["roi"]`` / ``obs["roi_class"]``
    ROI membership as text: the names (classes) of every ROI whose polygon contains the cell's
    centroid, joined with ``" | "`` in ROI order; missing (NaN) outside every ROI. A cell in two
    overlapping ROIs is ``"core 1 | margin 1"``. :func:`roi_membership` gives one boolean column
    per ROI for analysis.
``uns["carspatial_rois"]``
    DataFrame, one row per ROI: ``id``, ``name``, ``cls``, ``vertices_yx`` (JSON list of
    level-0 pixel (y, x) vertices), ``holes_yx`` (JSON list of rings, usually ``[]``).
``uns["carspatial"]["curation"]``
    ``{"type_key", "curated_key", "reviewed_rois" (JSON list of ROI ids)}``.
``uns["carspatial_edit_log"]``
    The audit trail (:mod:`napari_carspatial.model.edit_log`): one row per action, undo and redo
    included.

Every action is a command on an undo stack (unlimited); undo/redo restore the exact previous
values of the rows touched (stored as category codes / booleans, so 100,000 cells undo in
milliseconds). New categories created by an action are removed again by its undo.

One module (704 lines) because :class:`Curation` is one state machine (the actions, their commands,
undo / redo and the column plumbing share its private state and must change together); the ROI <->
table helpers above it are the serialisation that state depends on. The session around it
(selection, reviewer, saving, autosave) is :mod:`napari_carspatial.editing.curation`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import edit_log
from .cell_types import base_cell_type_key
from .conventions import SPATIAL_KEY, UNS_KEY, colors_key, instance_ids, spatial_to_yx
from .geometry import points_in_polygon
from .palette import ROI_CLASS_COLORS  # noqa: F401 - re-exported: the region colours are the palette's
from .roi import ROI, ROI_CLASSES

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

#: reasons offered when excluding cells
EXCLUDE_REASONS = ("artefact", "fold", "necrosis", "out of focus", "other")
EXCLUDED_KEY = "excluded"
EXCLUDE_REASON_KEY = "exclude_reason"
REVIEWED_KEY = "reviewed"
ROI_KEY = "roi"
ROI_CLASS_KEY = "roi_class"
ROI_UNS_KEY = "carspatial_rois"
CURATED_SUFFIX = "_curated"
ROI_SEP = " | "


def curated_key_for(type_key: str) -> str:
    """Name of the curated column made from ``type_key`` (``cell_type`` -> ``cell_type_curated``)."""
    return type_key if type_key.endswith(CURATED_SUFFIX) else f"{type_key}{CURATED_SUFFIX}"


# =========================================================================== ROIs <-> table
def rois_to_frame(rois: Iterable[ROI]) -> pd.DataFrame:
    """ROIs as an h5ad-serialisable DataFrame (see module docstring)."""
    rows = []
    for r in rois:
        holes = [np.asarray(h, float).round(3).tolist() for h in getattr(r, "holes_yx", []) or []]
        rows.append({"id": str(r.id), "name": str(r.name), "cls": str(r.cls),
                     "vertices_yx": json.dumps(np.asarray(r.polygon_yx, float).round(3).tolist()),
                     "holes_yx": json.dumps(holes)})
    df = pd.DataFrame(rows, columns=["id", "name", "cls", "vertices_yx", "holes_yx"]).astype(str)
    df.index = pd.Index([str(i) for i in range(len(df))])
    return df


def rois_from_frame(df) -> list[ROI]:
    """Inverse of :func:`rois_to_frame` (accepts the dict form h5ad may give back)."""
    if df is None:
        return []
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    out = []
    for _, row in df.iterrows():
        roi = ROI(name=str(row["name"]), polygon_yx=np.asarray(json.loads(row["vertices_yx"]), float),
                  cls=str(row["cls"]), id=str(row["id"]))
        holes = json.loads(row["holes_yx"]) if "holes_yx" in row and isinstance(row["holes_yx"], str) else []
        roi.holes_yx = [np.asarray(h, float) for h in holes if len(h) >= 3]
        out.append(roi)
    return out


def roi_contains(roi: ROI, yx: np.ndarray) -> np.ndarray:
    """Cells (rows of (y, x) level-0 px) inside ``roi`` and outside its holes (vectorised)."""
    return points_in_polygon(yx, roi.polygon_yx, getattr(roi, "holes_yx", []) or [])


def _n_changed(orig: pd.Series, cur: pd.Series) -> int:
    """Cells whose curated value differs from the original (as text), on category codes when
    both columns are categorical (no per-cell strings at 10^6 cells)."""
    if isinstance(orig.dtype, pd.CategoricalDtype) and isinstance(cur.dtype, pd.CategoricalDtype):
        oc = orig.cat.codes.to_numpy()
        cc = cur.cat.codes.to_numpy()
        idx = pd.Index(cur.cat.categories.astype(str)).get_indexer(orig.cat.categories.astype(str))
        if np.array_equal(idx, np.arange(idx.size)):   # the usual case: curated = original + added
            return int(np.count_nonzero(oc != cc))     # (NaN is -1 in both)
        # original code -> curated code (-1 NaN stays -1; a category the curated column lacks: -3)
        lut = np.concatenate([[-1], np.where(idx < 0, -3, idx)]).astype(np.int64)
        return int(np.count_nonzero(lut[oc.astype(np.intp) + 1] != cc))
    return int((orig.astype(str).to_numpy() != cur.astype(str).to_numpy()).sum())


@functools.lru_cache(maxsize=8)
def _weights(n: int) -> np.ndarray:
    return np.random.default_rng(n).random(n) + 0.5


def _positions_key(xy: np.ndarray) -> tuple:
    """A cheap fingerprint of a float64 position array (~1 ms at 10^6 cells, where a blake2b
    digest of all 16 MB takes ~20): the shape; the wrapping sum and the xor of the raw 64-bit
    words (any one changed coordinate changes both); and a random bilinear form of the values
    (rows swapped in place change it)."""
    flat = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1)
    w = flat.view(np.uint64)
    k = flat.size // 1024
    # einsum's own loop, not BLAS: a threaded gemv stalls 5-20 ms when the other core is busy
    form = float(_weights(k) @ np.einsum("ij,j->i", flat[: k * 1024].reshape(k, 1024), _weights(1024))) if k else 0.0
    form += float(flat[k * 1024:] @ _weights(flat.size - k * 1024)) if flat.size > k * 1024 else 0.0
    return (xy.shape, int(w.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(w)) if w.size else 0, form)


def roi_membership(adata, rois: Iterable[ROI] | None = None) -> pd.DataFrame:
    """One boolean column per ROI (named by ROI name), one row per cell."""
    rois = list(rois) if rois is not None else rois_from_frame(adata.uns.get(ROI_UNS_KEY))
    yx = spatial_to_yx(np.asarray(adata.obsm[SPATIAL_KEY], float))
    return pd.DataFrame({r.name: roi_contains(r, yx) for r in rois}, index=adata.obs_names)


def _combos(masks: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct region combinations of the cells (boolean rows, in ``np.unique(axis=0)``'s
    order) and each cell's combination: what :func:`_joined` labels.

    Each cell's regions are the bits of one integer (mask 0 the highest bit, so the order is
    the same); up to 20 regions the distinct values are found by counting, without a sort
    (~10 ms at 10^6 cells). ``np.unique`` over the rows of the boolean matrix took 0.7 s for
    one region and 4 s for seven.
    """
    k = len(masks)
    if k > 63:
        combos, inv = np.unique(np.column_stack(masks), axis=0, return_inverse=True)
        return combos, np.asarray(inv).ravel()
    key = np.zeros(n, dtype=np.uint64)
    for j, mk in enumerate(masks):
        key |= np.asarray(mk, dtype=bool).astype(np.uint64) << np.uint64(k - 1 - j)
    if k <= 20:
        key = key.astype(np.intp)
        uniq = np.flatnonzero(np.bincount(key, minlength=1 << k))
        lut = np.zeros(1 << k, dtype=np.intp)
        lut[uniq] = np.arange(uniq.size)
        inv = lut[key]
        uniq = uniq.astype(np.uint64)
    else:
        uniq, inv = np.unique(key, return_inverse=True)
    combos = ((uniq[:, None] >> np.arange(k - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    return combos, np.asarray(inv).ravel()


def _joined(masks: list[np.ndarray], labels: list[str], n: int, *, combos=None) -> pd.Categorical:
    """Per cell, the labels of the masks it is in, joined with :data:`ROI_SEP` (NaN when none).
    ``combos``: :func:`_combos` of the masks, when the caller labels them twice (names, classes)."""
    if not masks:   # (a list of 10^6 NaN made this ~0.25 s on every open of a table)
        return pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    combos, inv = _combos(masks, n) if combos is None else combos
    names = []
    for c in combos:
        hit = [labels[j] for j in np.flatnonzero(c)]
        names.append(ROI_SEP.join(dict.fromkeys(hit)) if hit else None)
    cats = list(dict.fromkeys(n_ for n_ in names if n_ is not None))
    code_of = {c: i for i, c in enumerate(cats)}
    codes = np.array([code_of[x] if x is not None else -1 for x in names], np.int64)[inv]
    return pd.Categorical.from_codes(codes, categories=cats)


# =========================================================================== commands
@dataclass
class Change:
    """Values of one column at some rows, before and after (codes for categoricals).

    Attributes
    ----------
    column
        The ``obs`` column.
    rows
        Row positions changed.
    old
        Values (codes for categoricals) before.
    new
        Values (codes for categoricals) after.
    added_categories
        Categories the change added to the column.
    """

    column: str
    rows: np.ndarray
    old: np.ndarray
    new: np.ndarray
    added_categories: list[str] = field(default_factory=list)


@dataclass
class Command:
    """One undoable action.

    Attributes
    ----------
    action
        ``assign``, ``exclude``, ``include``, ``confirm``, ``add_roi``, ``remove_roi``,
        ``edit_roi``, ``mark_roi_reviewed``.
    description
        Human-readable, shown on the undo button and in notifications.
    rows
        Row positions of the cells the action touched.
    column
        The column the audit row names.
    old_log
        The value before, as the audit row records it.
    new_log
        The value after, as the audit row records it.
    note
        Free text of the audit row.
    changes
        Column changes (applied in order, undone in reverse).
    roi_before
        For ROI actions: the ROI list before.
    roi_after
        For ROI actions: the ROI list after.
    reviewed_rois_before
        Ids of the regions marked reviewed, before.
    reviewed_rois_after
        Ids of the regions marked reviewed, after.
    """

    action: str
    description: str
    rows: np.ndarray
    column: str
    old_log: Any
    new_log: Any
    note: str = ""
    changes: list[Change] = field(default_factory=list)
    roi_before: list | None = None
    roi_after: list | None = None
    reviewed_rois_before: list | None = None
    reviewed_rois_after: list | None = None


class Curation:
    """Curated annotations of one cell table, with an unlimited undo/redo stack and audit trail.

    Parameters
    ----------
    adata
        The cell table (edited in place: curated columns are added, the original is untouched).
    type_key
        The original cell-type column (default: the stored one, else ``cell_type``-like guess).
    rois
        The ROI list to manage (pass ``sample.rois`` so the sample sees changes). When the table
        carries ROIs in ``uns`` and ``rois`` is empty, they are loaded into it.
    reviewer
        Name written in the audit trail (default: the OS user).

    Notes
    -----
    ``listeners`` (callables taking the :class:`Command` and ``"do"|"undo"|"redo"``) are called
    after every change: the GUI refreshes the legend and highlights there.
    """

    def __init__(self, adata: AnnData, *, type_key: str | None = None, rois: list[ROI] | None = None,
                 reviewer: str | None = None):
        self.adata = adata
        meta = dict((adata.uns.get(UNS_KEY, {}) or {}).get("curation", {}) or {})
        type_key = type_key or meta.get("type_key") or base_cell_type_key(adata)
        if type_key is None:
            raise ValueError("the table has no cell-type column to curate; pass type_key=")
        if type_key.endswith(CURATED_SUFFIX) and type_key[: -len(CURATED_SUFFIX)] in adata.obs:
            type_key = type_key[: -len(CURATED_SUFFIX)]
        if type_key not in adata.obs:
            raise KeyError(f"no column {type_key!r} in the cell table (columns: {', '.join(map(str, adata.obs.columns))})")
        self.type_key = type_key
        self.curated_key = curated_key_for(type_key)
        self.reviewer = reviewer or edit_log.default_reviewer()
        self.rois: list[ROI] = rois if rois is not None else []
        if not self.rois and ROI_UNS_KEY in adata.uns:
            self.rois.extend(rois_from_frame(adata.uns[ROI_UNS_KEY]))
        self.reviewed_rois: list[str] = [str(x) for x in json.loads(meta.get("reviewed_rois", "[]") or "[]")]
        self.undo_stack: list[Command] = []
        self.redo_stack: list[Command] = []
        self.listeners: list[Callable[[Command | None, str], None]] = []
        self.ids = instance_ids(adata)
        self._ensure_columns()
        self.update_roi_membership()
        self._store_meta()

    @classmethod
    def from_table(cls, adata, **kw) -> Curation:
        """Resume curation of a saved table (columns, ROIs and audit trail come from it)."""
        return cls(adata, **kw)

    # ------------------------------------------------------------------ setup
    def _ensure_columns(self) -> None:
        obs = self.adata.obs
        n = self.adata.n_obs
        if self.curated_key not in obs:
            src = obs[self.type_key]
            cat = src.astype("category") if not isinstance(src.dtype, pd.CategoricalDtype) else src.copy()
            cat = cat.cat.rename_categories([str(c) for c in cat.cat.categories])
            # from the codes: the same column as through objects (missing stays missing), without
            # 10^6 Python strings (~0.5 s on the first open of a table)
            obs[self.curated_key] = pd.Categorical.from_codes(cat.cat.codes.to_numpy().copy(),
                                                              categories=list(cat.cat.categories))
            src_col = self.adata.uns.get(colors_key(self.type_key))
            if src_col is not None and len(src_col) == len(cat.cat.categories):
                self.adata.uns[colors_key(self.curated_key)] = np.array(list(src_col), dtype=object)
        elif not isinstance(obs[self.curated_key].dtype, pd.CategoricalDtype):
            obs[self.curated_key] = obs[self.curated_key].astype(str).astype("category")
        if EXCLUDED_KEY not in obs:
            obs[EXCLUDED_KEY] = np.zeros(n, bool)
        if EXCLUDE_REASON_KEY not in obs:
            obs[EXCLUDE_REASON_KEY] = pd.Categorical([None] * n, categories=list(EXCLUDE_REASONS))
        elif not isinstance(obs[EXCLUDE_REASON_KEY].dtype, pd.CategoricalDtype):
            obs[EXCLUDE_REASON_KEY] = obs[EXCLUDE_REASON_KEY].astype("category")
        if REVIEWED_KEY not in obs:
            obs[REVIEWED_KEY] = np.zeros(n, bool)
        obs[EXCLUDED_KEY] = obs[EXCLUDED_KEY].astype(bool)
        obs[REVIEWED_KEY] = obs[REVIEWED_KEY].astype(bool)

    def _store_meta(self) -> None:
        meta = dict(self.adata.uns.get(UNS_KEY, {}) or {})
        meta["curation"] = {"type_key": self.type_key, "curated_key": self.curated_key,
                            "reviewed_rois": json.dumps(list(self.reviewed_rois))}
        self.adata.uns[UNS_KEY] = meta
        self.adata.uns[ROI_UNS_KEY] = rois_to_frame(self.rois)

    # ------------------------------------------------------------------ reading state
    @property
    def categories(self) -> list[str]:
        """Categories of the curated column, in order (number keys 1-9 map to the first nine)."""
        return [str(c) for c in self.adata.obs[self.curated_key].cat.categories]

    def curated(self) -> np.ndarray:
        """Curated type of every cell (object array)."""
        return self.adata.obs[self.curated_key].astype(object).to_numpy()

    def rows_of_ids(self, cell_ids) -> np.ndarray:
        """Table rows of mask ids (ids not in the table are ignored)."""
        cell_ids = np.asarray(cell_ids, np.int64).ravel()
        order = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids[order], cell_ids)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        ok = self.ids[order][pos] == cell_ids if len(order) else np.zeros(len(cell_ids), bool)
        return order[pos[ok]]

    def cell_yx(self) -> np.ndarray:
        """Cell centroids as (y, x) level-0 pixels."""
        return spatial_to_yx(np.asarray(self.adata.obsm[SPATIAL_KEY], float))

    def roi(self, roi_id: str) -> ROI:
        for r in self.rois:
            if r.id == roi_id or r.name == roi_id:
                return r
        raise KeyError(f"no ROI {roi_id!r} (ROIs: {', '.join(r.name for r in self.rois) or 'none'})")

    def cells_in_roi(self, roi_id: str) -> np.ndarray:
        """Boolean per row: centroid inside the ROI."""
        return roi_contains(self.roi(roi_id), self.cell_yx())

    def _roi_masks(self) -> list[np.ndarray]:
        """Cells inside each ROI, cached by the ROIs' geometry and a fingerprint of the cell
        positions (a review of 10^6 cells asks after every edit; positions change only with
        segmentation, which writes a new ``obsm["spatial"]``)."""
        xy = np.ascontiguousarray(np.asarray(self.adata.obsm[SPATIAL_KEY], float))
        pos = _positions_key(xy)
        cache = getattr(self, "_roi_mask_cache", None)
        if cache is None or cache[0] != pos:
            cache = self._roi_mask_cache = (pos, {})
        out, used, yx = [], {}, None
        for r in self.rois:
            geom = (np.asarray(r.polygon_yx, float).tobytes(),
                    tuple(np.asarray(h, float).tobytes() for h in (getattr(r, "holes_yx", []) or [])))
            hit = cache[1].get(geom)
            if hit is None:
                yx = spatial_to_yx(xy) if yx is None else yx
                hit = roi_contains(r, yx)
            used[geom] = hit
            out.append(hit)
        self._roi_mask_cache = (pos, used)   # only the current regions are kept
        return out

    def progress(self) -> dict:
        """Review progress: reviewed cells overall and per ROI.

        Returns
        -------
        dict
            ``{"n_cells", "n_reviewed", "fraction", "n_excluded", "n_changed", "rois": DataFrame}``
            where ``rois`` has one row per ROI: ``name``, ``class``, ``cells``, ``reviewed`` cells,
            ``fraction`` and ``marked`` (the region was marked reviewed).
        """
        obs = self.adata.obs
        rev = obs[REVIEWED_KEY].to_numpy(bool)
        rows = []
        for r, m in zip(self.rois, self._roi_masks(), strict=True):
            n = int(np.count_nonzero(m))
            k = int(np.count_nonzero(m & rev))
            rows.append({"name": r.name, "class": r.cls, "cells": n, "reviewed": k,
                         "fraction": (k / n) if n else 0.0, "marked": r.id in self.reviewed_rois})
        n_rev = int(np.count_nonzero(rev))
        return {"n_cells": int(self.adata.n_obs), "n_reviewed": n_rev,
                "fraction": n_rev / rev.size if rev.size else 0.0,
                "n_excluded": int(np.count_nonzero(obs[EXCLUDED_KEY].to_numpy(bool))),
                "n_changed": _n_changed(obs[self.type_key], obs[self.curated_key]),
                "rois": pd.DataFrame(rows, columns=["name", "class", "cells", "reviewed", "fraction", "marked"])}

    # ------------------------------------------------------------------ column plumbing
    def _values(self, column: str, rows: np.ndarray) -> np.ndarray:
        s = self.adata.obs[column]
        if isinstance(s.dtype, pd.CategoricalDtype):
            return s.cat.codes.to_numpy()[rows].astype(np.int64)
        return s.to_numpy()[rows].copy()

    def _write(self, column: str, rows: np.ndarray, values) -> None:
        obs = self.adata.obs
        s = obs[column]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy().copy()
            codes[rows] = values
            obs[column] = pd.Categorical.from_codes(codes, categories=s.cat.categories)
        else:
            arr = s.to_numpy().copy()
            arr[rows] = values
            obs[column] = arr

    def _code_for(self, column: str, value, added: list[str]) -> int:
        if value is None:
            return -1
        s = self.adata.obs[column]
        cats = list(s.cat.categories)
        value = str(value)
        if value not in cats:
            self.adata.obs[column] = s.cat.add_categories([value])
            added.append(value)
            if column == self.curated_key:
                self._add_color(value)
            return len(cats)
        return cats.index(value)

    def _add_color(self, value: str) -> None:
        """A new curated type gets its colour from the one colour policy (:mod:`.palette`)."""
        from .palette import color_for

        ck = colors_key(self.curated_key)
        cols = self.adata.uns.get(ck)
        if cols is None or len(cols) != len(self.categories) - 1:
            return  # the colouring fills defaults in
        self.adata.uns[ck] = np.array([*list(cols), color_for(value, used=list(cols))], dtype=object)

    def _change(self, column: str, rows: np.ndarray, value, added_out: list) -> Change:
        added: list[str] = []
        old = self._values(column, rows)
        s = self.adata.obs[column]
        if isinstance(s.dtype, pd.CategoricalDtype):
            new = np.full(rows.size, self._code_for(column, value, added), dtype=np.int64)
        else:
            new = np.full(rows.size, value, dtype=s.to_numpy().dtype)
        ch = Change(column, rows, old, new, added)
        added_out.extend(added)
        return ch

    def _labels_of(self, column: str, codes: np.ndarray) -> np.ndarray:
        s = self.adata.obs[column]
        if not isinstance(s.dtype, pd.CategoricalDtype):
            return np.asarray(codes).astype(object)
        cats = np.asarray([str(c) for c in s.cat.categories] + [None], dtype=object)
        return cats[np.where(codes < 0, len(cats) - 1, codes)]

    @staticmethod
    def _log_value(values: np.ndarray):
        """A single value when all rows had the same, else the per-cell list (aligned with ids)."""
        values = np.asarray(values, dtype=object)
        if values.size == 0:
            return None
        first = values[0]
        if all(v == first for v in pd.unique(values)):
            return first if not isinstance(first, np.generic) else first.item()
        return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]

    # ------------------------------------------------------------------ run / undo / redo
    def _apply(self, cmd: Command, direction: str) -> None:
        changes = cmd.changes if direction != "undo" else list(reversed(cmd.changes))
        for ch in changes:
            if direction == "undo":
                self._write(ch.column, ch.rows, ch.old)
                if ch.added_categories:
                    s = self.adata.obs[ch.column]
                    keep = [c for c in s.cat.categories if c not in ch.added_categories]
                    self.adata.obs[ch.column] = s.cat.set_categories(keep)
                    if ch.column == self.curated_key:
                        ck = colors_key(self.curated_key)
                        cols = self.adata.uns.get(ck)
                        if cols is not None and len(cols) == len(keep) + len(ch.added_categories):
                            self.adata.uns[ck] = np.array(list(cols)[: len(keep)], dtype=object)
            else:
                if ch.added_categories and direction == "redo":
                    s = self.adata.obs[ch.column]
                    missing = [c for c in ch.added_categories if c not in list(s.cat.categories)]
                    if missing:
                        self.adata.obs[ch.column] = s.cat.add_categories(missing)
                        if ch.column == self.curated_key:
                            for c in missing:
                                self._add_color(c)
                self._write(ch.column, ch.rows, ch.new)
        if cmd.roi_before is not None:
            target = cmd.roi_before if direction == "undo" else cmd.roi_after
            self.rois[:] = list(target)
            self.update_roi_membership()
        if cmd.reviewed_rois_before is not None:
            self.reviewed_rois = list(cmd.reviewed_rois_before if direction == "undo" else cmd.reviewed_rois_after)
        self._store_meta()

    def _run(self, cmd: Command) -> Command:
        self._apply(cmd, "do")
        self.undo_stack.append(cmd)
        self.redo_stack.clear()
        edit_log.record(self.adata, cmd.action, cell_ids=self.ids[cmd.rows], column=cmd.column,
                        old=cmd.old_log, new=cmd.new_log, note=cmd.note, reviewer=self.reviewer)
        log.info("curation: %s", cmd.description)
        self._notify(cmd, "do")
        return cmd

    def undo(self) -> Command | None:
        """Undo the last action (recorded in the audit trail as ``undo``); None when nothing to undo."""
        if not self.undo_stack:
            return None
        cmd = self.undo_stack.pop()
        self._apply(cmd, "undo")
        self.redo_stack.append(cmd)
        edit_log.record(self.adata, "undo", cell_ids=self.ids[cmd.rows], column=cmd.column, old=cmd.new_log,
                        new=cmd.old_log, note=f"undo {cmd.action}: {cmd.description}", reviewer=self.reviewer)
        self._notify(cmd, "undo")
        return cmd

    def redo(self) -> Command | None:
        """Redo the last undone action (recorded as ``redo``); None when nothing to redo."""
        if not self.redo_stack:
            return None
        cmd = self.redo_stack.pop()
        self._apply(cmd, "redo")
        self.undo_stack.append(cmd)
        edit_log.record(self.adata, "redo", cell_ids=self.ids[cmd.rows], column=cmd.column, old=cmd.old_log,
                        new=cmd.new_log, note=f"redo {cmd.action}: {cmd.description}", reviewer=self.reviewer)
        self._notify(cmd, "redo")
        return cmd

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def _notify(self, cmd, what: str) -> None:
        for cb in list(self.listeners):
            try:
                cb(cmd, what)
            except Exception:  # a broken listener must not lose the edit
                log.exception("curation listener failed")

    # ------------------------------------------------------------------ actions on cells
    @staticmethod
    def _rows(rows) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return np.unique(rows.astype(np.int64))

    def _reviewed_change(self, rows, added) -> Change:
        return self._change(REVIEWED_KEY, rows, True, added)

    def assign(self, rows, cell_type: str, *, note: str = "") -> Command | None:
        """Set the curated type of ``rows`` (indices or boolean mask) to ``cell_type`` (new or existing).

        The cells are also marked reviewed. Returns the command, or None for an empty selection.
        """
        rows = self._rows(rows)
        cell_type = str(cell_type).strip()
        if not cell_type:
            raise ValueError("a cell type name cannot be empty")
        if rows.size == 0:
            return None
        added: list[str] = []
        old = self._labels_of(self.curated_key, self._values(self.curated_key, rows))
        ch = self._change(self.curated_key, rows, cell_type, added)
        cmd = Command("assign", f"{rows.size:,} cells -> {cell_type}", rows, self.curated_key,
                      self._log_value(old), cell_type, note=note,
                      changes=[ch, self._reviewed_change(rows, added)])
        # apply() re-creates categories on redo only; the first run created them in _code_for
        return self._run(cmd)

    def exclude(self, rows, reason: str, *, note: str = "") -> Command | None:
        """Flag ``rows`` as excluded (artefact, fold, necrosis, out of focus, ...) with a reason."""
        rows = self._rows(rows)
        reason = str(reason).strip() or "other"
        if rows.size == 0:
            return None
        added: list[str] = []
        old_reason = self._labels_of(EXCLUDE_REASON_KEY, self._values(EXCLUDE_REASON_KEY, rows))
        changes = [self._change(EXCLUDED_KEY, rows, True, added),
                   self._change(EXCLUDE_REASON_KEY, rows, reason, added),
                   self._reviewed_change(rows, added)]
        cmd = Command("exclude", f"{rows.size:,} cells excluded ({reason})", rows, EXCLUDE_REASON_KEY,
                      self._log_value(old_reason), reason, note=note, changes=changes)
        return self._run(cmd)

    def include(self, rows, *, note: str = "") -> Command | None:
        """Remove the exclusion flag of ``rows``."""
        rows = self._rows(rows)
        if rows.size == 0:
            return None
        added: list[str] = []
        old_reason = self._labels_of(EXCLUDE_REASON_KEY, self._values(EXCLUDE_REASON_KEY, rows))
        changes = [self._change(EXCLUDED_KEY, rows, False, added),
                   self._change(EXCLUDE_REASON_KEY, rows, None, added),
                   self._reviewed_change(rows, added)]
        cmd = Command("include", f"{rows.size:,} cells included again", rows, EXCLUDE_REASON_KEY,
                      self._log_value(old_reason), None, note=note, changes=changes)
        return self._run(cmd)

    def confirm(self, rows, *, note: str = "") -> Command | None:
        """Mark ``rows`` reviewed without changing their type (the call was right)."""
        rows = self._rows(rows)
        if rows.size == 0:
            return None
        added: list[str] = []
        cur = self._labels_of(self.curated_key, self._values(self.curated_key, rows))
        uniform = len(set(cur.tolist())) == 1
        note = note or (f"type confirmed: {cur[0]}" if uniform else "types confirmed")
        cmd = Command("confirm", f"{rows.size:,} cells confirmed", rows, REVIEWED_KEY,
                      False, True, note=note, changes=[self._reviewed_change(rows, added)])
        return self._run(cmd)

    # ------------------------------------------------------------------ ROIs
    def update_roi_membership(self) -> None:
        """Recompute ``obs["roi"]`` / ``obs["roi_class"]`` from the ROI polygons."""
        masks = self._roi_masks()
        n = self.adata.n_obs
        combos = _combos(masks, n) if masks else None   # once for both columns
        self.adata.obs[ROI_KEY] = _joined(masks, [r.name for r in self.rois], n, combos=combos)
        self.adata.obs[ROI_CLASS_KEY] = _joined(masks, [r.cls for r in self.rois], n, combos=combos)

    def _roi_cmd(self, action: str, description: str, after: list, roi: ROI, old_log, new_log, note: str) -> Command:
        rows = np.flatnonzero(roi_contains(roi, self.cell_yx()))
        cmd = Command(action, description, rows, ROI_KEY, old_log, new_log, note=note,
                      roi_before=list(self.rois), roi_after=after)
        return self._run(cmd)

    @staticmethod
    def _roi_dict(roi: ROI) -> dict:
        return {"id": roi.id, "name": roi.name, "class": roi.cls,
                "vertices_yx": np.asarray(roi.polygon_yx, float).round(2).tolist()}

    def add_roi(self, roi: ROI, *, note: str = "") -> Command:
        """Add a region (undoable); its cells get its name in ``obs["roi"]``."""
        if roi.cls not in ROI_CLASSES:
            log.info("ROI %r has class %r (not one of %s)", roi.name, roi.cls, ", ".join(ROI_CLASSES))
        names = {r.name for r in self.rois}
        if roi.name in names:
            base, k = roi.name, 2
            while f"{base} ({k})" in names:
                k += 1
            roi.name = f"{base} ({k})"
        return self._roi_cmd("add_roi", f"region {roi.name!r} ({roi.cls}) added", [*self.rois, roi], roi,
                             None, self._roi_dict(roi), note)

    def remove_roi(self, roi_id: str, *, note: str = "") -> Command:
        """Remove a region (undoable)."""
        roi = self.roi(roi_id)
        return self._roi_cmd("remove_roi", f"region {roi.name!r} removed", [r for r in self.rois if r is not roi],
                             roi, self._roi_dict(roi), None, note)

    def edit_roi(self, roi_id: str, *, name: str | None = None, cls: str | None = None,
                 polygon_yx=None, note: str = "") -> Command:
        """Rename, re-class or reshape a region (undoable; the old ROI object is kept for undo)."""
        old = self.roi(roi_id)
        new = ROI(name=name if name is not None else old.name,
                  polygon_yx=polygon_yx if polygon_yx is not None else old.polygon_yx.copy(),
                  cls=cls if cls is not None else old.cls, id=old.id)
        new.holes_yx = list(getattr(old, "holes_yx", []) or []) if polygon_yx is None else []
        after = [new if r is old else r for r in self.rois]
        return self._roi_cmd("edit_roi", f"region {old.name!r} edited", after, new,
                             self._roi_dict(old), self._roi_dict(new), note)

    def set_rois(self, rois: list[ROI], *, action: str = "import_rois", note: str = "") -> Command:
        """Replace / extend the ROI list in one undoable step (GeoJSON import)."""
        before = list(self.rois)
        yx = self.cell_yx()
        new_ids = {r.id for r in rois} - {r.id for r in before}
        mask = np.zeros(self.adata.n_obs, bool)
        for r in rois:
            if r.id in new_ids:
                mask |= roi_contains(r, yx)
        cmd = Command(action, f"{len(new_ids)} region(s) imported", np.flatnonzero(mask), ROI_KEY,
                      [r.name for r in before], [r.name for r in rois], note=note,
                      roi_before=before, roi_after=list(rois))
        return self._run(cmd)

    def mark_roi_reviewed(self, roi_id: str, *, note: str = "") -> Command:
        """Mark a region and every cell in it reviewed (undoable)."""
        roi = self.roi(roi_id)
        rows = np.flatnonzero(roi_contains(roi, self.cell_yx()))
        added: list[str] = []
        changes = [self._reviewed_change(rows, added)] if rows.size else []
        after = list(dict.fromkeys([*self.reviewed_rois, roi.id]))
        cmd = Command("mark_roi_reviewed", f"region {roi.name!r} marked reviewed", rows, REVIEWED_KEY,
                      False, True, note=note or roi.name, changes=changes,
                      reviewed_rois_before=list(self.reviewed_rois), reviewed_rois_after=after)
        return self._run(cmd)
