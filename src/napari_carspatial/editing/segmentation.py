"""Segmentation correction, headless: an editor that loads full-resolution crops of a sample's mask,
writes edits back and keeps the table in step. No napari, no Qt (the CLI and the batch use it too).

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
  - analyses stored for the affected region are marked stale (:mod:`.seg_table`). Spatial graphs
    in ``obsp`` cannot follow added or removed rows and are dropped when rows change (logged).
* :class:`~napari_carspatial.editing.region_edit.RegionEdit` is one open region with its own undo
  stack (what the Segmentation dock drives).
* The pixel operations are in :mod:`.seg_ops` (re-exported here).

One module (563 lines) because :class:`SegmentationEditor` is one object whose commit (pixels,
pyramid, re-measurement, table rows, categorical carry-over, audit, stale flags) must stay one
transaction on its private state; the pixel operations and the table bookkeeping already live in
:mod:`.seg_ops` and :mod:`.seg_table`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import UNS_KEY, get_table_link, instance_ids
from ..model.edit_log import record
from .seg_ops import (
    delete_cells,
    draw_cell,
    grow_cell,
    merge_cells,
    shrink_cell,
    split_cell_by_line,
    split_cell_by_seeds,
)
from .seg_table import (
    STALE_KEY,
    STALE_REGIONS_KEY,
    UNASSIGNED,
    RowIndex,
    add_category,
    append_rows,
    check_consistency,
    clear_stale,
    mark_stale,
    new_names_unique,
    set_block,
    set_category,
    zarr_source,
)

log = logging.getLogger(__name__)

__all__ = [
    "EDITOR_CACHE_KEY", "corrected_mask_path", "review_read_only", "save_corrected",
    "STALE_KEY", "STALE_REGIONS_KEY", "UNASSIGNED", "CommitResult", "EditRegion", "SegmentationEditor",
    "add_category", "check_consistency", "clear_stale", "delete_cells", "draw_cell", "grow_cell", "mark_stale",
    "merge_cells", "shrink_cell", "split_cell_by_line", "split_cell_by_seeds",
]


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
    #: rows dropped (positions in the table before the commit; the others keep their order) and
    #: rows appended (positions in the table after it, at its end): ``session.table_changed``'s
    #: ``rows_removed`` / ``rows_added``
    rows_removed: list[int] = field(default_factory=list)
    rows_added: list[int] = field(default_factory=list)
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


#: key of a sample's editor in a viewer session's per-sample cache (both docks find it there)
EDITOR_CACHE_KEY = ("segmentation_editor",)


class SegmentationEditor:
    """Edit one sample's mask region by region and keep its table in step (no Qt).

    Parameters
    ----------
    sample
        The sample (labels pyramid + table; the image is used for re-measurement).
    store
        Its :class:`~napari_carspatial.io.mask_store.MaskStore`; default: the working copy next
        to ``sample.paths["mask"]`` (created on first use), or an in-memory store.
    reviewer
        Who edits (audit); default the OS user.
    read_only
        Why edits are refused (see :attr:`read_only`); None: allowed unless the sample is a slide
        of a review project.
    """

    def __init__(self, sample, *, store=None, reviewer: str | None = None, read_only: str | None = None):
        self.sample = sample
        self._store = store
        self.reviewer = reviewer
        self._read_only = read_only
        self._review_item = False
        #: removed rows (id -> (obs row, X row)) so an undo restores annotations
        self._graveyard: dict[int, pd.Series] = {}
        self.n_commits = 0

    # ------------------------------------------------------------------ read-only
    @property
    def read_only(self) -> str | None:
        """Why this sample's segmentation may not be edited here (None: it may): set by
        :meth:`set_read_only`, or a slide of a review project (:func:`review_read_only`)."""
        return self._read_only or review_read_only(self.sample)

    def set_read_only(self, reason: str | None, *, review: bool = False) -> None:
        """Refuse every edit with ``reason`` (None: allow again, unless it is a review slide);
        ``review``: it is a review project's slide (the refusal says what to do instead)."""
        self._read_only = reason or None
        self._review_item = bool(review and reason)

    def check_writable(self) -> None:
        """Raise :class:`~napari_carspatial.model.SampleError` naming the sample and why, when
        its segmentation may not be edited here."""
        from ..model import SampleError

        reason = self.read_only
        if reason:
            raise SampleError(f"segmentation edits of sample {self.sample.name!r} are refused: {reason.rstrip('.')}.",
                              path=self.sample.paths.get("table"),
                              hint=REVIEW_HINT if review_read_only(self.sample) or self._review_item else None)

    # ------------------------------------------------------------------ store and ids
    @property
    def store(self):
        if self._store is None:
            from ..io.mask_store import MaskStore

            if self.sample.labels is None:
                raise ValueError(f"sample {self.sample.name!r} has no mask to edit")
            # copy-on-write: no pass over the mask (the sample's own pyramid is the source)
            self._store = MaskStore.open_working_copy(self.sample.paths.get("mask"), labels=list(self.sample.labels),
                                                      pixel_size_um=self.sample.pixel_size_um)
            if self.sample.table is not None and self.sample.table.n_obs:
                self._store.raise_max_id(int(instance_ids(self.sample.table).max()))
            if self._store.edit_count:   # a reopened working copy: show its edits
                self.sample.labels = self._store.pyramid()
        return self._store

    #: ids reserved in the store at a time (one attribute write per block, not per new cell)
    ID_BLOCK = 64

    @property
    def store_ready(self) -> bool:
        """The working copy of the mask is open (made on the first region: copy-on-write, no pass
        over the mask, but it reads the mask's largest id, which is a pass when the sample's id
        check is not cached)."""
        return self._store is not None

    @property
    def has_edits(self) -> bool:
        """The mask was edited (this session or an earlier one on the same working copy)."""
        return self._store is not None and (self.n_commits > 0 or self._store.edit_count > 0)

    def new_id(self) -> int:
        """A new unique id (max id ever used + 1). Ids are reserved in the store in blocks of
        :attr:`ID_BLOCK` (recorded before any is handed out, so none is ever reused; unused ones
        of a block are simply never used)."""
        pool = getattr(self, "_id_pool", None)
        if not pool:
            pool = self._id_pool = list(self.store.reserve_ids(self.ID_BLOCK)[::-1])
        return int(pool.pop())

    # ------------------------------------------------------------------ regions
    def region(self, y0: int, y1: int, x0: int, x1: int) -> EditRegion:
        """Load level-0 pixels of a region (clipped to the mask) for editing.

        Raises :class:`~napari_carspatial.model.SampleError` when the sample may not be edited
        (:attr:`read_only`)."""
        self.check_writable()
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

        self.check_writable()
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

    def warm_up(self) -> None:
        """Load the re-measurement's compiled kernels (numba's cache, ~1-2 s the first time in a
        process) in a background thread, so the first commit does not wait for them."""
        import threading

        if getattr(self, "_warmed", False):
            return
        self._warmed = True

        def run():
            with contextlib.suppress(Exception):   # the commit checks again if this did not finish
                if self.sample.table is not None:
                    self.names_unique(self.sample.table)
            try:
                from ..analysis.quantify import quantify

                lab = np.zeros((4, 4), np.uint32)
                lab[1:3, 1:3] = 1
                n = self.sample.n_channels if self.sample.image else 0
                img = np.zeros((n, 4, 4), np.float32) if n else None
                quantify(img, lab, channel_names=list(self.sample.channel_names) if n else None,
                         pixel_size_um=self.sample.pixel_size_um)
            except Exception:  # noqa: BLE001 - only a warm-up: the commit reports real errors
                log.debug("quantify warm-up failed", exc_info=True)

        threading.Thread(target=run, name="carspatial-seg-warm-up", daemon=True).start()

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
            direct = zarr_source(img0)
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
                        set_category(t, c, np.array([row_of.get_loc(b)]), v)
        # structural change: drop / add rows
        if len(gone) or len(new_ids):
            new_rows = self._new_rows(t, m, ~in_table, key, cat_cols, merged_types)
            if t.obsp is not None and len(t.obsp.keys()):
                log.info("spatial graphs in obsp (%s) dropped: cells were added or removed; recompute them",
                         ", ".join(t.obsp.keys()))
            ids_after = np.concatenate([row_of.ids[keep], new_rows.obs[key].to_numpy(np.int64)])
            # rows are dropped / appended with numpy takes (t[keep].copy() + a new AnnData cost
            # ~130 ms at 10^5-10^6 rows)
            kept = None if keep.all() else keep
            res.rows_removed = [int(p) for p in np.flatnonzero(~keep)]
            n_keep = int(keep.sum())
            res.rows_added = list(range(n_keep, n_keep + new_rows.n_obs))
            unique = self.names_unique(t) and new_names_unique(t, new_rows, kept)
            t = append_rows(t, new_rows, keep=kept, names_unique=unique)
            self.sample.table = t
            self._unique_for = (t, t.obs) if unique else None
            self._rows_cache = (t, t.obs, RowIndex(ids_after))
        record(t, action, cell_ids=res.affected, old={"removed": res.removed},
               new={"added": res.added, "updated": res.updated}, note=note or f"box {[int(v) for v in box]}",
               reviewer=self.reviewer)
        for kept, absorbed, chosen in res.merged:
            for c, v in chosen.items():
                record(t, "segmentation.merge_type", cell_ids=[kept, *absorbed], column=c, old=absorbed, new=v,
                       note="the merged cell keeps the type covering most of its area", reviewer=self.reviewer)
        mark_stale(t, box)

    def names_unique(self, t) -> bool:
        """Whether table ``t``'s obs names are unique: checked once per table object (~0.3 s at
        10^6 rows, in the warm-up thread when a region opens), known for the tables a commit
        made here (their new rows were checked against the old names)."""
        known = getattr(self, "_unique_for", None)  # holds the objects: their ids cannot be reused
        if known is not None and known[0] is t and known[1] is t.obs:
            return True
        obs, names = t.obs, t.obs.index
        if names.hasnans or not names.is_unique:
            return False
        if t.obs is obs:
            self._unique_for = (t, obs)
        return True

    def row_positions(self, ids) -> np.ndarray:
        """Table rows of cell ``ids`` (-1 for ids without a row); cached per table object."""
        t = self.sample.table
        if t is None:
            return np.full(len(ids), -1, dtype=np.int64)
        return np.asarray(self._rows(t).get_indexer(np.asarray(ids, dtype=np.int64)), dtype=np.int64)

    def _rows(self, t) -> RowIndex:
        """Row lookup of the table's instance ids (cached per table object, ``obs`` and length)."""
        cached = getattr(self, "_rows_cache", None)  # holds the objects: their ids cannot be reused
        if cached is None or cached[0] is not t or cached[1] is not t.obs or len(cached[2]) != t.n_obs:
            cached = self._rows_cache = (t, t.obs, RowIndex(instance_ids(t)))
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
            if ok.any() and t.X is not None:
                sub = np.asarray(m.X)[mpos][:, ok]
                t.X = set_block(t.X, pos, vpos[ok], sub)
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
        X = np.full((n, t.n_vars), np.nan, dtype=np.float32 if t.X is None else t.X.dtype)
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
            lv = t.layers[k]
            rows.layers[k] = (np.asarray(m.layers[k])[sel].astype(lv.dtype) if k in m.layers
                              else np.full((n, t.n_vars), np.nan, dtype=lv.dtype if lv.dtype.kind == "f" else np.float64))
        return rows


#: ``uns`` key of an adjudication's state (:mod:`napari_carspatial.review.adjudication`)
_REVIEW_UNS = "carspatial_review"


def review_read_only(sample) -> str | None:
    """Why ``sample``'s segmentation may not be edited: it is a slide of a review project (None
    otherwise).

    A reader's working copy and the comparison of two reads carry
    ``uns["carspatial"]["review"]["code"]``, an adjudication ``uns["carspatial_review"]
    ["adjudication"]``; the cell mask of such a slide is the cohort's, shared by every reader
    (an edit would change what the other reader and the adjudicator see, and the reads' tables
    would no longer match it). A finished project export (``review.final_key``) is not a slide.
    """
    t = sample.table
    if t is None:
        return None
    meta = (t.uns.get(UNS_KEY) or {}).get("review") if isinstance(t.uns.get(UNS_KEY), dict) else None
    adj = t.uns.get(_REVIEW_UNS)
    what = None
    if isinstance(adj, dict) and "adjudication" in adj:
        what = "an adjudication of a review project"
    elif isinstance(meta, dict) and meta.get("code") is not None:
        read = meta.get("read")
        who = meta.get("reviewer")
        what = (f"read {read} ({who}) of a review project" if read is not None
                else "a comparison of two reads of a review project")
    if what is None:
        return None
    return f"it is {what}: its cell mask is shared by every reader"


#: what to do instead (the hint of the refusal)
REVIEW_HINT = ("Correct the segmentation outside the review project and give the cohort manifest the corrected "
               "mask (a new project then reads it).")


def corrected_mask_path(sample, table_path) -> Path:
    """Where :func:`save_corrected` writes the mask by default: ``<mask stem>.corrected.zarr``
    next to the original mask when that is a plain file or folder in a writable folder, else
    ``<table stem>_mask.corrected.zarr`` next to the saved table."""
    import os

    from ..io.mask_store import corrected_path

    src = sample.paths.get("mask")
    if src and "::" not in os.fspath(src):
        p = corrected_path(src)
        if os.access(p.parent, os.W_OK):
            return p
    t = Path(table_path)
    stem = t.name[: -len(t.suffix)] if t.suffix else t.name
    return t.with_name(f"{stem}_mask.corrected.zarr")


def save_corrected(editor: SegmentationEditor, table_path, *, mask_path=None, overwrite: bool = False,
                   progress=None, note: str = "") -> tuple[Path, Path]:
    """Save the corrected mask and the table as one act (the mask first, then the table, whose
    provenance names the corrected mask).

    Parameters
    ----------
    editor
        The sample's editor (its working copy holds the edits).
    table_path
        The new table (``.h5ad`` / ``.zarr``); never one of the sample's own files.
    mask_path
        The corrected mask (default :func:`corrected_mask_path`); never the original mask.
    overwrite
        Replace an existing table at ``table_path`` (a corrected mask is always replaced).
    progress
        ``progress(done_bytes, total_bytes)`` of the provenance checksums.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The corrected mask folder and the table file.

    Raises
    ------
    SampleError
        ``table_path`` is a source of the sample, exists without ``overwrite``, or cannot be
        written; the mask cannot be written; the sample may not be edited
        (:attr:`SegmentationEditor.read_only`).
    """
    import os

    from ..io.mask_store import save_corrected_mask
    from ..io.write import write_table
    from ..model import SampleError

    editor.check_writable()
    s = editor.sample
    for part in ("table", "image", "mask"):
        src = s.paths.get(part)
        if src and os.path.abspath(os.fspath(table_path)) == os.path.abspath(os.fspath(src)):
            raise SampleError(f"is the sample's {part}; it is never overwritten.", path=table_path,
                              hint="Choose a new name.")
    if s.table is None:
        raise SampleError(f"sample {s.name!r} has no cell table to save.")
    mask_out = Path(mask_path) if mask_path is not None else corrected_mask_path(s, table_path)
    src = s.paths.get("mask")
    out = save_corrected_mask(editor.store, mask_out, source=src if src and "::" not in os.fspath(src) else None,
                              pixel_size_um=s.pixel_size_um,
                              note=note or f"napari-carspatial segmentation correction of {s.name}")
    paths = {k: v for k, v in s.paths.items() if k in ("image", "table")}
    paths["mask"] = out
    return out, write_table(s.table, table_path, overwrite=overwrite, paths=paths, progress=progress)
