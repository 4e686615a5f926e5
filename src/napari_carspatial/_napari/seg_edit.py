"""Segmentation correction without Qt: edit operations on label crops, write-back, re-measurement.

Two levels:

* **Operations** (:func:`merge_cells`, :func:`split_cell_by_line`, :func:`split_cell_by_seeds`,
  :func:`delete_cells`, :func:`draw_cell`, :func:`grow_cell`, :func:`shrink_cell`) change a
  numpy label crop *in place* and return the set of affected ids. New cells get ids from a
  ``new_id()`` callable (the editor hands out ``max id + 1``; ids are never reused).
* :class:`SegmentationEditor` ties a :class:`~napari_carspatial.model.Sample` to its editable
  :class:`~napari_carspatial.io.mask_store.MaskStore`: :meth:`~SegmentationEditor.region` loads a
  full-resolution crop, :meth:`~SegmentationEditor.commit` writes the changed pixels back (lower
  pyramid levels updated for that region only), re-measures only the affected cells
  (:func:`napari_carspatial.analysis.quantify.quantify` on the union bounding box of the
  affected ids + 1 px) and updates the table:

  - rows of cells that vanished are removed, rows of new ids added, the others updated in place
    (measurements only: annotations of untouched and updated cells are kept);
  - new cells get ``"unassigned"`` in every categorical annotation column, or, for the column of
    the stored gating rules (``uns["carspatial"]["gating"]``), the rules' call;
  - a cell that absorbed other cells (merge) takes, per categorical column, the category covering
    most of its area; this is returned in :attr:`CommitResult.merged` and logged in the audit;
  - every commit is an audit row (:func:`napari_carspatial.model.edit_log.record`);
  - analyses stored for the affected region are marked stale (see :data:`STALE_KEY`).

Stale convention (for region analyses): ``uns["carspatial"]["stale"] = True`` and
``uns["carspatial"]["stale_regions"]`` = int64 array (n, 4) of level-0 pixel boxes
``(y0, x0, y1, x1)`` (end exclusive) edited since the flag was last cleared. Whoever recomputes
an analysis clears both (:func:`clear_stale`). Spatial graphs in ``obsp`` cannot follow added or
removed rows and are dropped when rows change (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..model import UNS_KEY, get_table_link, instance_ids
from ..model.edit_log import record

log = logging.getLogger(__name__)

#: the category new cells get
UNASSIGNED = "unassigned"
#: keys in ``uns["carspatial"]`` of the stale convention
STALE_KEY = "stale"
STALE_REGIONS_KEY = "stale_regions"
#: colour of the "unassigned" category when a column has stored colours
UNASSIGNED_COLOR = "#5a5a5a"


# =========================================================================== operations
def _ids(ids) -> np.ndarray:
    return np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel())


def merge_cells(lab: np.ndarray, ids: Iterable[int], *, into: int | None = None) -> set[int]:
    """Merge ``ids`` into one cell (the largest in the crop unless ``into`` is given).

    One-pixel background gaps between the merged cells (pixels whose 4 neighbours include two of
    the merged cells) are filled, so the merged cell is one piece.
    """
    ids = _ids(ids)
    ids = ids[ids > 0]
    if ids.size < 2:
        return set()
    sel = np.isin(lab, ids)
    if into is None:
        vals, counts = np.unique(lab[sel], return_counts=True)
        into = int(vals[np.argmax(counts)])
    lab[sel] = into
    gap = (lab == 0)
    m = lab == into
    up = np.zeros_like(m)
    down = np.zeros_like(m)
    left = np.zeros_like(m)
    right = np.zeros_like(m)
    up[1:] = m[:-1]
    down[:-1] = m[1:]
    left[:, 1:] = m[:, :-1]
    right[:, :-1] = m[:, 1:]
    lab[gap & ((up & down) | (left & right))] = into
    return {int(i) for i in ids}


def delete_cells(lab: np.ndarray, ids: Iterable[int]) -> set[int]:
    """Set the pixels of ``ids`` to background."""
    ids = _ids(ids)
    ids = ids[ids > 0]
    sel = np.isin(lab, ids)
    present = set(np.unique(lab[sel]).tolist())
    lab[sel] = 0
    return {int(i) for i in present}


def _polygon_mask(shape, polygon_yx) -> np.ndarray:
    from skimage.draw import polygon, polygon_perimeter

    p = np.asarray(polygon_yx, dtype=float)
    rr, cc = polygon(p[:, 0], p[:, 1], shape=shape)
    m = np.zeros(shape, bool)
    m[rr, cc] = True
    rr, cc = polygon_perimeter(np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int), shape=shape, clip=False)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    m[rr[ok], cc[ok]] = True
    return m


def draw_cell(lab: np.ndarray, polygon_yx, new_id: int, *, overwrite: bool = False) -> set[int]:
    """Fill a polygon (crop (y, x) vertices) with the new id ``new_id``.

    Without ``overwrite`` only background pixels are filled (neighbours keep theirs).
    """
    m = _polygon_mask(lab.shape, polygon_yx)
    affected = set()
    if overwrite:
        affected |= {int(i) for i in np.unique(lab[m]) if i}
    else:
        m &= lab == 0
    if not m.any():
        return set()
    lab[m] = new_id
    return affected | {int(new_id)}


def _relabel_pieces(lab: np.ndarray, cell_id: int, pieces: np.ndarray, n: int, new_id: Callable[[], int]) -> set[int]:
    """Give ``pieces`` (1..n inside the cell) ids: the largest keeps ``cell_id``, others new ids."""
    if n < 2:
        return set()
    counts = np.bincount(pieces.ravel(), minlength=n + 1)
    counts[0] = 0
    keep = int(np.argmax(counts))
    out = {int(cell_id)}
    for p in range(1, n + 1):
        if p == keep or counts[p] == 0:
            continue
        nid = int(new_id())
        lab[pieces == p] = nid
        out.add(nid)
    return out


def split_cell_by_line(lab: np.ndarray, cell_id: int, line_yx, new_id: Callable[[], int]) -> set[int]:
    """Cut ``cell_id`` along a polyline (crop (y, x) vertices, e.g. a napari Shapes path).

    The line is rasterised one pixel wide (8-connected, so the pieces are 4-disconnected), the
    cell minus the line is split into 4-connected pieces; the largest keeps ``cell_id``, the
    others get new ids, and line pixels go to the nearest piece (area is conserved).
    """
    from scipy import ndimage as ndi
    from skimage.draw import line

    cell = lab == cell_id
    if not cell.any():
        return set()
    p = np.round(np.asarray(line_yx, dtype=float)).astype(int)
    cut = np.zeros(lab.shape, bool)
    for (y0, x0), (y1, x1) in zip(p[:-1], p[1:], strict=False):
        rr, cc = line(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < lab.shape[0]) & (cc >= 0) & (cc < lab.shape[1])
        cut[rr[ok], cc[ok]] = True
    pieces, n = ndi.label(cell & ~cut)
    if n < 2:
        return set()
    # line pixels of the cell join the nearest piece
    _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    filled = np.where(cell, pieces[iy, ix], 0)
    return _relabel_pieces(lab, cell_id, filled, n, new_id)


def split_cell_by_seeds(lab: np.ndarray, cell_id: int, seeds_yx, new_id: Callable[[], int],
                        intensity: np.ndarray | None = None) -> set[int]:
    """Split ``cell_id`` by a watershed from ``seeds_yx`` (crop (y, x), one per new cell).

    The landscape is the inverted, lightly smoothed ``intensity`` (the nuclear channel: DAPI
    by default in the GUI), or the inverted distance to the cell border when ``intensity`` is
    ``None``. The basin with the most pixels keeps ``cell_id``.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    cell = lab == cell_id
    seeds = np.round(np.asarray(seeds_yx, dtype=float)).astype(int).reshape(-1, 2)
    markers = np.zeros(lab.shape, np.int32)
    k = 0
    for y, x in seeds:
        if 0 <= y < lab.shape[0] and 0 <= x < lab.shape[1] and cell[y, x]:
            k += 1
            markers[y, x] = k
    if k < 2:
        return set()
    if intensity is not None:
        land = -ndi.gaussian_filter(np.asarray(intensity, dtype=np.float64), 1.0)
    else:
        land = -ndi.distance_transform_edt(cell)
    pieces = watershed(land, markers, mask=cell)
    return _relabel_pieces(lab, cell_id, pieces, k, new_id)


def grow_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Grow ``cell_id`` by ``n`` px (Euclidean) into the background (never over other cells)."""
    from scipy import ndimage as ndi

    cell = lab == cell_id
    if not cell.any() or n <= 0:
        return set()
    d = ndi.distance_transform_edt(~cell)
    lab[(d <= n) & (lab == 0)] = cell_id
    return {int(cell_id)}


def shrink_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Shrink ``cell_id`` by ``n`` px (pixels within ``n`` of the outside become background).

    The crop edge counts as inside (the crop must contain the cell with a margin).
    """
    from scipy import ndimage as ndi

    cell = lab == cell_id
    if not cell.any() or n <= 0:
        return set()
    d = ndi.distance_transform_edt(np.pad(cell, 1, constant_values=True))[1:-1, 1:-1]
    lab[cell & (d <= n)] = 0
    return {int(cell_id)}


# =========================================================================== the editor
@dataclass
class EditRegion:
    """A full-resolution crop being edited: ``data`` (edited), ``base`` (as last committed)."""

    y0: int
    x0: int
    data: np.ndarray
    base: np.ndarray

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return (self.y0, self.x0, self.y0 + self.data.shape[0], self.x0 + self.data.shape[1])


@dataclass
class CommitResult:
    """What a commit changed."""

    affected: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    #: (kept id, absorbed ids, {column: category}) per merged cell
    merged: list[tuple[int, list[int], dict]] = field(default_factory=list)
    #: level-0 box (y0, x0, y1, x1) re-measured
    bbox: tuple[int, int, int, int] | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.affected)

    def message(self) -> str:
        parts = []
        if self.added:
            parts.append(f"{len(self.added)} added")
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.updated:
            parts.append(f"{len(self.updated)} re-measured")
        for kept, absorbed, types in self.merged:
            t = ", ".join(f"{c} = {v}" for c, v in types.items())
            parts.append(f"merged {absorbed} into {kept}" + (f" (keeps {t}: most of its area)" if t else ""))
        return "cells: " + "; ".join(parts) if parts else "no change"


class SegmentationEditor:
    """Edit one sample's mask region by region and keep its table in step (no Qt).

    Parameters
    ----------
    sample
        The sample (labels pyramid + table; the image is used for re-measurement).
    store
        Its :class:`~napari_carspatial.io.mask_store.MaskStore`; default: the working copy next
        to ``sample.paths["mask"]`` (created on first use), or an in-memory store.
    op_name
        Name used in the audit when :meth:`commit` is called without one.
    reviewer
        Who edits (audit); default the OS user.
    """

    def __init__(self, sample, *, store=None, reviewer: str | None = None):
        self.sample = sample
        self._store = store
        self.reviewer = reviewer
        #: removed rows (id -> (obs row, X row)) so an undo restores annotations
        self._graveyard: dict[int, pd.Series] = {}
        self.n_commits = 0

    # ------------------------------------------------------------------ store and ids
    @property
    def store(self):
        if self._store is None:
            from ..io.mask_store import MaskStore

            if self.sample.labels is None:
                raise ValueError(f"sample {self.sample.name!r} has no mask to edit")
            self._store = MaskStore.open_working_copy(self.sample.paths.get("mask"), labels=self.sample.labels[0])
            if self.sample.table is not None and self.sample.table.n_obs:
                top = int(instance_ids(self.sample.table).max())
                if top > self._store.max_id:
                    self._store._set_attr("max_id", top)
            self.sample.labels = self._store.pyramid()
        return self._store

    def new_id(self) -> int:
        """A new unique id (max id ever used + 1)."""
        return int(self.store.reserve_ids(1)[0])

    # ------------------------------------------------------------------ regions
    def region(self, y0: int, y1: int, x0: int, x1: int) -> EditRegion:
        """Load level-0 pixels of a region (clipped to the mask) for editing."""
        H, W = self.store.shape
        y0, x0 = max(0, int(y0)), max(0, int(x0))
        y1, x1 = min(H, int(y1)), min(W, int(x1))
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"empty region {(y0, y1, x0, x1)} in a {H} x {W} mask")
        data = self.store.read(y0, y1, x0, x1)
        return EditRegion(y0, x0, data, data.copy())

    # ------------------------------------------------------------------ commit
    def commit(self, region: EditRegion, *, action: str = "edit", note: str = "") -> CommitResult:
        """Write the region's changes back, re-measure the affected cells, update the table."""
        import time

        t0 = time.perf_counter()
        res = CommitResult()
        diff = region.data != region.base
        if not diff.any():
            return res
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        by0, by1, bx0, bx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        old_v = region.base[diff].astype(np.int64)
        new_v = region.data[diff].astype(np.int64)
        affected = np.union1d(old_v, new_v)
        affected = affected[affected > 0]
        # pixels moved between ids: (new id, old id) -> count (for merges)
        pairs = pd.DataFrame({"new": new_v, "old": old_v}).value_counts()
        self.store.write(region.y0 + by0, region.x0 + bx0, region.data[by0:by1, bx0:bx1])
        region.base[by0:by1, bx0:bx1] = region.data[by0:by1, bx0:bx1]
        self.sample.labels = self.store.pyramid()
        t1 = time.perf_counter()
        edit_box = (region.y0 + by0, region.x0 + bx0, region.y0 + by1, region.x0 + bx1)
        res.affected = [int(i) for i in affected]
        if self.sample.table is not None:
            self._update_table(res, affected, pairs, edit_box, action=action, note=note)
        self.n_commits += 1
        res.seconds = {"write": t1 - t0, "total": time.perf_counter() - t0}
        log.info("%s: %s (%.0f ms)", action, res.message(), 1000 * res.seconds["total"])
        return res

    def apply(self, region: EditRegion, op: Callable, *args, commit: bool = True, **kw):
        """Run an operation on ``region.data`` and commit (returns (affected ids, CommitResult))."""
        affected = op(region.data, *args, **kw)
        name = getattr(op, "__name__", "edit")
        return affected, (self.commit(region, action=f"segmentation.{name}") if commit else None)

    # ------------------------------------------------------------------ re-measurement
    #: images up to this size are kept in memory while editing (a lazily rendered or compressed
    #: level 0 would otherwise be decoded again for every edit)
    PERSIST_MAX_BYTES = 512 * 2**20

    def _image0(self):
        if getattr(self, "_img0", None) is None:
            img = self.sample.image[0]
            if hasattr(img, "persist") and img.nbytes <= self.PERSIST_MAX_BYTES:
                img = img.persist()
            self._img0 = img
        return self._img0

    def _cover(self, ids: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """Grow ``box`` (+1 px) until no cell of ``ids`` touches its edge; return (box, labels)."""
        H, W = self.store.shape
        y0, x0, y1, x1 = box
        y0, x0, y1, x1 = max(0, y0 - 1), max(0, x0 - 1), min(H, y1 + 1), min(W, x1 + 1)
        step = 32
        while True:
            lab = self.store.read(y0, y1, x0, x1)
            grow = [False] * 4
            if y0 > 0 and np.isin(lab[0], ids).any():
                grow[0] = True
            if x0 > 0 and np.isin(lab[:, 0], ids).any():
                grow[1] = True
            if y1 < H and np.isin(lab[-1], ids).any():
                grow[2] = True
            if x1 < W and np.isin(lab[:, -1], ids).any():
                grow[3] = True
            if not any(grow):
                return (y0, x0, y1, x1), lab
            y0 = max(0, y0 - step) if grow[0] else y0
            x0 = max(0, x0 - step) if grow[1] else x0
            y1 = min(H, y1 + step) if grow[2] else y1
            x1 = min(W, x1 + step) if grow[3] else x1
            step *= 2

    def measure(self, ids: np.ndarray, box: tuple[int, int, int, int]):
        """Quantify ``ids`` on the smallest crop holding them whole (``box`` is a first guess)."""
        from ..analysis.quantify import quantify

        t = self.sample.table
        key = get_table_link(t)["instance_key"] if t is not None else "cell_id"
        if t is not None and "bbox" in t.obsm and len(ids):
            pos = self._rows(t).get_indexer(np.asarray(ids, dtype=np.int64))
            pos = pos[pos >= 0]
            if pos.size:
                bb = np.asarray(t.obsm["bbox"])[pos]
                box = (min(box[0], int(bb[:, 0].min())), min(box[1], int(bb[:, 1].min())),
                       max(box[2], int(bb[:, 2].max())), max(box[3], int(bb[:, 3].max())))
        (y0, x0, y1, x1), lab = self._cover(ids, box)
        img = None
        names = None
        if self.sample.image:
            img0 = self._image0()
            direct = _zarr_source(img0)
            if direct is not None:  # read just the crop from the file's store: no dask graph (~30 ms
                img = np.asarray(direct[:, y0:y1, x0:x1])  # on a 30-channel 12000-px slide)
            else:
                crop = img0[:, y0:y1, x0:x1]
                # a small crop: the synchronous scheduler avoids thread-pool round trips (~20 ms)
                img = crop.compute(scheduler="synchronous") if hasattr(crop, "compute") else np.asarray(crop)
            names = self.sample.channel_names
        m = quantify(img, lab, channel_names=names, cell_ids=ids, origin=(y0, x0),
                     pixel_size_um=self.sample.pixel_size_um, instance_key=key)
        return m, (y0, x0, y1, x1)

    # ------------------------------------------------------------------ table
    def _update_table(self, res: CommitResult, affected: np.ndarray, pairs: pd.Series, edit_box, *,
                      action: str, note: str) -> None:

        t = self.sample.table
        if t.is_view:  # rows are updated in place below: an AnnData view would drop the writes
            t = self.sample.table = t.copy()
        key = get_table_link(t)["instance_key"]
        m, box = self.measure(affected, edit_box)
        res.bbox = box
        row_of = self._rows(t)  # hashed once per table object, not per commit (10^5-10^6 rows)
        present = m.obs[key].to_numpy(np.int64)
        gone = np.setdiff1d(affected, present)
        in_table = row_of.get_indexer(present) >= 0
        upd_ids, new_ids = present[in_table], present[~in_table]
        res.removed = [int(i) for i in gone[row_of.get_indexer(gone) >= 0]]
        res.updated = [int(i) for i in upd_ids]
        res.added = [int(i) for i in new_ids]
        cat_cols = [c for c in t.obs.columns if isinstance(t.obs[c].dtype, pd.CategoricalDtype)
                    and c != get_table_link(t)["region_key"]]

        # merges: a present cell that gained pixels from cells that vanished
        merged_types: dict[int, dict] = {}
        gained = pairs.reset_index()
        gained.columns = ["new", "old", "n"]
        gained = gained[(gained["new"] > 0) & (gained["old"] > 0) & (gained["new"] != gained["old"])]
        area = dict(zip(present.tolist(), m.obs["area"].to_numpy().tolist(), strict=False))
        gone_set = set(gone.tolist())
        for b, grp in gained.groupby("new"):
            absorbed = [int(a) for a in grp["old"] if a in gone_set]
            if not absorbed:
                continue
            weights = {int(a): int(n) for a, n in zip(grp["old"], grp["n"], strict=False)}
            own = area.get(int(b), 0) - int(grp["n"].sum())
            if int(b) in row_of and own > 0:
                weights[int(b)] = weights.get(int(b), 0) + own
            chosen = {}
            for c in cat_cols:
                w: dict[str, int] = {}
                for a, n in weights.items():
                    val = self._category_of(t, c, a, row_of)
                    if val is not None:
                        w[val] = w.get(val, 0) + n
                if w:
                    chosen[c] = max(w, key=w.get)
            merged_types[int(b)] = chosen
            res.merged.append((int(b), absorbed, chosen))

        # rows removed -> graveyard (annotations come back on undo)
        if res.removed:
            for i in res.removed:
                self._graveyard[i] = t.obs.iloc[row_of.get_loc(i)].copy()
        keep = np.ones(t.n_obs, bool)
        gpos = row_of.get_indexer(gone)
        keep[gpos[gpos >= 0]] = False
        # in-place update of rows that stay
        if len(upd_ids):
            pos = row_of.get_indexer(upd_ids)
            self._write_measurements(t, pos, m, m.obs.index.get_indexer(m.obs.index[in_table]))
            for b, chosen in merged_types.items():
                if b in row_of:
                    for c, v in chosen.items():
                        _set_category(t, c, np.array([row_of.get_loc(b)]), v)
        # structural change: drop / add rows
        if len(gone) or len(new_ids):
            new_rows = self._new_rows(t, m, ~in_table, key, cat_cols, merged_types)
            if t.obsp is not None and len(t.obsp.keys()):
                log.info("spatial graphs in obsp (%s) dropped: cells were added or removed; recompute them",
                         ", ".join(t.obsp.keys()))
            ids_after = np.concatenate([row_of.ids[keep], new_rows.obs[key].to_numpy(np.int64)])
            # rows are dropped / appended with numpy takes (t[keep].copy() + a new AnnData cost
            # ~130 ms at 10^5-10^6 rows)
            t = _append_rows(t, new_rows, keep=None if keep.all() else keep)
            self.sample.table = t
            self._rows_cache = (t, t.obs, _RowIndex(ids_after))
        record(t, action, cell_ids=res.affected, old={"removed": res.removed},
               new={"added": res.added, "updated": res.updated}, note=note or f"box {[int(v) for v in box]}",
               reviewer=self.reviewer)
        for kept, absorbed, chosen in res.merged:
            for c, v in chosen.items():
                record(t, "segmentation.merge_type", cell_ids=[kept, *absorbed], column=c, old=absorbed, new=v,
                       note="the merged cell keeps the type covering most of its area", reviewer=self.reviewer)
        mark_stale(t, box)

    def _rows(self, t) -> _RowIndex:
        """Row lookup of the table's instance ids (cached per table object, ``obs`` and length)."""
        cached = getattr(self, "_rows_cache", None)  # holds the objects: their ids cannot be reused
        if cached is None or cached[0] is not t or cached[1] is not t.obs or len(cached[2]) != t.n_obs:
            cached = self._rows_cache = (t, t.obs, _RowIndex(instance_ids(t)))
        return cached[2]

    @staticmethod
    def _category_of(t, col, cell, row_of):
        if cell in row_of:
            v = t.obs[col].iloc[row_of.get_loc(cell)]
            return None if pd.isna(v) else str(v)
        return None

    @staticmethod
    def _write_measurements(t, pos: np.ndarray, m, mpos: np.ndarray) -> None:
        names = list(m.var_names)
        if names:
            vpos = pd.Index(t.var_names).get_indexer(names)
            ok = vpos >= 0
            X = t.X
            if hasattr(X, "toarray"):
                X = X.toarray()
                t.X = X
            sub = np.asarray(m.X)[mpos][:, ok]
            X[np.ix_(pos, vpos[ok])] = sub.astype(X.dtype, copy=False)
        # rows are updated in place (no copy of whole columns: tables have 10^5-10^6 rows)
        for c in m.obs.columns:
            if c in t.obs.columns and c != get_table_link(m)["instance_key"] and c != "region":
                vals = m.obs[c].to_numpy()[mpos]
                dt = t.obs[c].dtype
                if isinstance(dt, pd.CategoricalDtype) or dt == np.dtype(object):
                    continue
                if np.issubdtype(dt, np.integer) and not np.issubdtype(vals.dtype, np.integer):
                    t.obs[c] = t.obs[c].astype(np.float64)  # once: the column becomes float
                t.obs.iloc[pos, t.obs.columns.get_loc(c)] = vals
        for k, src in (("spatial", m.obsm["spatial"]), ("bbox", m.obsm.get("bbox"))):
            if k not in t.obsm or src is None:
                continue
            arr = t.obsm[k]
            if not (isinstance(arr, np.ndarray) and arr.flags.writeable):
                arr = np.array(arr, dtype=np.float64 if k == "spatial" else None)
                t.obsm[k] = arr
            arr[pos, : np.asarray(src).shape[1]] = np.asarray(src)[mpos]

    def _new_rows(self, t, m, sel: np.ndarray, key: str, cat_cols: list[str], merged_types: dict):
        """obs / X / obsm of new cells in the table's layout."""
        import anndata as ad

        from ..analysis.gating import apply_rules, load_gating

        ids = m.obs[key].to_numpy(np.int64)[sel]
        n = len(ids)
        obs = pd.DataFrame(index=pd.Index(ids.astype(str), name=t.obs.index.name))
        for c in t.obs.columns:
            s = t.obs[c]
            if c == key:
                obs[c] = ids
            elif c in m.obs.columns and c != get_table_link(t)["region_key"]:
                obs[c] = m.obs[c].to_numpy()[sel]
            elif isinstance(s.dtype, pd.CategoricalDtype):
                obs[c] = UNASSIGNED if c in cat_cols else (s.iloc[0] if len(s) else UNASSIGNED)
            elif np.issubdtype(s.dtype, np.number):
                obs[c] = np.full(n, np.nan)
            elif s.dtype == bool:
                obs[c] = np.zeros(n, bool)
            else:
                obs[c] = ""
        # undo of a delete: the old annotations come back
        restored = np.zeros(len(ids), dtype=bool)
        for i, cell in enumerate(ids):
            old = self._graveyard.pop(int(cell), None)
            if old is not None:
                restored[i] = True
                for c in cat_cols:
                    obs.iloc[i, obs.columns.get_loc(c)] = old[c]
        for b, chosen in merged_types.items():
            if b in set(ids.tolist()):
                for c, v in chosen.items():
                    obs.loc[str(b), c] = v
        X = np.full((n, t.n_vars), np.nan, dtype=np.float32 if t.X is None else np.asarray(t.X[:0]).dtype)
        vpos = pd.Index(list(m.var_names)).get_indexer(list(t.var_names))
        ok = vpos >= 0
        if ok.any():
            X[:, ok] = np.asarray(m.X)[sel][:, vpos[ok]]
        rows = ad.AnnData(X=X, obs=obs, var=t.var.copy())
        scheme = load_gating(t)
        if scheme is not None:
            gkey = ((t.uns.get(UNS_KEY) or {}).get("gating") or {}).get("key")
            if gkey and gkey in t.obs.columns:
                try:
                    calls = apply_rules(rows, scheme)
                    fresh = ~restored   # restored cells keep their call; only new cells are gated
                    vals = np.asarray(calls.astype(str))
                    for i in np.flatnonzero(fresh):
                        if int(ids[i]) not in merged_types:
                            obs.iloc[i, obs.columns.get_loc(gkey)] = vals[i]
                    rows.obs = obs
                except (KeyError, ValueError) as err:
                    log.warning("gating rules not applied to new cells: %s", err)
        for k in t.obsm:
            v = np.asarray(t.obsm[k])
            if k in m.obsm:
                rows.obsm[k] = np.asarray(m.obsm[k])[sel].astype(v.dtype, copy=False)
            else:
                rows.obsm[k] = np.full((n,) + v.shape[1:], np.nan if v.dtype.kind == "f" else 0, dtype=v.dtype)
        for k in t.layers:
            lv = np.asarray(t.layers[k][:0])
            rows.layers[k] = (np.asarray(m.layers[k])[sel].astype(lv.dtype) if k in m.layers
                              else np.full((n, t.n_vars), np.nan, dtype=lv.dtype if lv.dtype.kind == "f" else np.float64))
        return rows


def _set_category(t, col: str, pos: np.ndarray, value: str) -> None:
    s = t.obs[col]
    if value not in s.cat.categories:
        _add_category(t, col, value)
        s = t.obs[col]
    vals = s.copy()
    vals.iloc[pos] = value
    t.obs[col] = vals


def _add_category(t, col: str, value: str) -> None:
    s = t.obs[col]
    t.obs[col] = s.cat.add_categories([value])
    ck = f"{col}_colors"
    if ck in t.uns and len(t.uns[ck]) == len(s.cat.categories):
        t.uns[ck] = np.asarray(list(np.asarray(t.uns[ck]).tolist()) + [UNASSIGNED_COLOR if value == UNASSIGNED else "#bdbdbd"], dtype=object)


def _zarr_source(arr):
    """The zarr array a dask array is a plain ``da.from_zarr`` of (same shape and dtype), else None."""
    if not hasattr(arr, "dask"):
        return None
    try:
        graph = arr.dask
        if len(graph.layers) > 2:  # from_zarr = the array + its getters; anything more is a computation
            return None
        found = None
        for name, layer in graph.layers.items():
            if name.startswith("original-"):
                for v in layer.values():
                    if type(v).__module__.startswith("zarr") and tuple(getattr(v, "shape", ())) == tuple(arr.shape) \
                            and np.dtype(getattr(v, "dtype", None)) == arr.dtype:
                        found = v
        return found
    except Exception:  # noqa: BLE001 - an unusual graph: use dask
        return None


class _RowIndex:
    """Row positions of instance ids: binary search when the ids are increasing (tables from
    :func:`quantify` are, and new ids are appended as max + 1, so they stay so), else a hash index.

    Building a ``pd.Index`` hash table of 10^5-10^6 ids costs ~10-30 ms per structural edit.
    """

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self._sorted = bool(self.ids.size < 2 or (self.ids[1:] > self.ids[:-1]).all())
        self._index = None if self._sorted else pd.Index(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def get_indexer(self, ids) -> np.ndarray:
        q = np.asarray(ids, dtype=np.int64).ravel()
        if self._index is not None:
            return self._index.get_indexer(q)
        if not self.ids.size:
            return np.full(q.shape, -1, dtype=np.intp)
        pos = np.searchsorted(self.ids, q)
        pos = np.minimum(pos, self.ids.size - 1)
        return np.where(self.ids[pos] == q, pos, -1).astype(np.intp)

    def __contains__(self, cell) -> bool:
        return bool(self.get_indexer([cell])[0] >= 0)

    def get_loc(self, cell) -> int:
        p = int(self.get_indexer([cell])[0])
        if p < 0:
            raise KeyError(cell)
        return p


def _concat_obs(obs_b: pd.DataFrame, obs_r: pd.DataFrame, cat) -> pd.DataFrame | None:
    """Kept rows of ``obs_b`` + ``obs_r`` column by column with numpy (``cat``), or None when a
    column or the index has an extension dtype (then pandas concatenates)."""
    if not isinstance(obs_b.index.dtype, np.dtype) or not isinstance(obs_r.index.dtype, np.dtype):
        return None
    cols = {}
    for c in obs_b.columns:
        a, b = obs_b[c], obs_r[c]
        if isinstance(a.dtype, pd.CategoricalDtype):
            if a.dtype != b.dtype:
                return None
            cols[c] = pd.Categorical.from_codes(cat(a.cat.codes.to_numpy(), b.cat.codes.to_numpy()), dtype=a.dtype)
        elif isinstance(a.dtype, np.dtype) and isinstance(b.dtype, np.dtype):
            dt = np.result_type(a.dtype, b.dtype) if object not in (a.dtype, b.dtype) else np.dtype(object)
            cols[c] = cat(a.to_numpy(), b.to_numpy(), dtype=dt)
        else:
            return None
    idx = pd.Index(cat(obs_b.index.to_numpy(), obs_r.index.to_numpy(), dtype=np.dtype(object)),
                   dtype=object, name=obs_b.index.name, copy=False)
    out = pd.DataFrame(cols, index=idx, copy=False)
    out.columns.name = obs_b.columns.name
    return out


def _append_rows(base, rows, keep: np.ndarray | None = None):
    """``base[keep]`` + ``rows`` (same columns), categorical columns and their colours kept.

    Returns a new AnnData; ``base`` is not changed except for categories (and colours) added to
    its categorical columns. Spatial graphs (``obsp``) are dropped.
    """
    import warnings

    n0 = base.n_obs
    if keep is None:
        runs = [(0, n0)]
    else:  # kept rows as contiguous runs: slice copies (memcpy) instead of a gather
        d = np.diff(np.r_[0, np.asarray(keep, dtype=np.int8), 0])
        runs = list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=False))
    n_keep = sum(e - s for s, e in runs)
    obs_r = rows.obs.copy()
    for c in base.obs.columns:
        if isinstance(base.obs[c].dtype, pd.CategoricalDtype):
            cats = list(base.obs[c].cat.categories)
            extra = [v for v in pd.unique(obs_r[c].astype(object)) if not pd.isna(v) and v not in cats]
            for v in extra:
                _add_category(base, c, str(v))
            obs_r[c] = pd.Categorical(obs_r[c].astype(object), dtype=base.obs[c].dtype)

    def cat(a, b, dtype=None):
        a = a.toarray() if hasattr(a, "toarray") else np.asarray(a)
        dtype = a.dtype if dtype is None else dtype
        b = np.asarray(b, dtype=dtype)
        out = np.empty((n_keep + b.shape[0],) + a.shape[1:], dtype=dtype)
        o = 0
        for s0, e0 in runs:
            out[o:o + e0 - s0] = a[s0:e0]
            o += e0 - s0
        out[o:] = b
        return out

    obs = _concat_obs(base.obs, obs_r, cat)
    if obs is None:
        import warnings

        obs_b = base.obs if keep is None else base.obs.iloc[np.flatnonzero(keep)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            obs = pd.concat([obs_b, obs_r[obs_b.columns]], axis=0)

    X = None if base.X is None else cat(base.X, rows.X)
    obsm = {k: cat(base.obsm[k], rows.obsm[k]) for k in base.obsm}
    layers = {k: cat(base.layers[k], rows.layers[k]) for k in base.layers}
    if base.raw is None and not base.is_view and not base.isbacked:
        # a new AnnData object (callers notice the table changed) sharing nothing mutable with
        # ``base``, without the constructor's whole-table checks (~30 ms at 10^5-10^6 rows:
        # the new ids are unique by construction)
        try:
            out = object.__new__(type(base))
            out.__dict__.update(base.__dict__)
            out.file = type(base.file)(out, None)
            out._obs = obs
            if hasattr(out, "_n_obs"):
                out._n_obs = len(obs)
            if out.n_obs != len(obs) or out.n_vars != base.n_vars:
                raise ValueError("shape did not follow obs")
            out._var = base.var.copy()
            out._X = None
            out.X = X
            out.obsm = obsm
            out.layers = layers
            out.obsp = {}
            out.varm = dict(base.varm)
            out.varp = dict(base.varp)
            out.uns = dict(base.uns)
            return out
        except Exception as err:  # noqa: BLE001 - anndata internals changed: use the constructor
            log.debug("fast row update failed (%s); building the AnnData", err)
    import anndata as ad

    out = ad.AnnData(X=X, obs=obs, var=base.var.copy(), uns=dict(base.uns), obsm=obsm, layers=layers)
    for k in base.varm:
        out.varm[k] = base.varm[k]
    return out


def mark_stale(adata, box) -> None:
    """Flag analyses stored in ``adata`` as stale for the level-0 box (y0, x0, y1, x1)."""
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    prev = np.asarray(meta.get(STALE_REGIONS_KEY, np.zeros((0, 4), np.int64)), dtype=np.int64).reshape(-1, 4)
    meta[STALE_KEY] = True
    meta[STALE_REGIONS_KEY] = np.vstack([prev, np.asarray(box, dtype=np.int64).reshape(1, 4)])
    adata.uns[UNS_KEY] = meta


def clear_stale(adata) -> None:
    """Clear the stale flag (after region analyses were recomputed)."""
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta.pop(STALE_KEY, None)
    meta.pop(STALE_REGIONS_KEY, None)
    adata.uns[UNS_KEY] = meta


def check_consistency(labels, adata) -> None:
    """Raise ``AssertionError`` unless every mask id has exactly one row and vice versa."""
    from ..model.mask_stats import label_stats

    ids = instance_ids(adata)
    mask_ids = label_stats(labels)["id"].to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise AssertionError(f"duplicate table ids {uniq[counts > 1][:5].tolist()}")
    missing = np.setdiff1d(mask_ids, uniq)
    extra = np.setdiff1d(uniq, mask_ids)
    if missing.size or extra.size:
        raise AssertionError(f"mask ids without row {missing[:5].tolist()}; rows without mask id {extra[:5].tolist()}")
