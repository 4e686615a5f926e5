"""The curation of one sample by one reviewer, headless: selection, edits, undo, regions, audit,
saving, autosave and recovery. No napari, no Qt.

:class:`CurationSession` is what the Curation dock drives and what a script (or the review
workspace) uses the same way::

    from napari_carspatial.editing import CurationSession

    cs = CurationSession(sample, reviewer="jdoe")
    cs.select_polygon([[0, 0], [0, 500], [500, 500], [500, 0]], cell_type="Tumor")
    cs.assign("Antigen-negative tumor", note="MSLN- by eye")
    cs.undo(); cs.redo()
    cs.save("curated.h5ad")            # never over the sample's own files

The edits themselves (curated column, exclusions, review flags, ROIs, the audit trail, unlimited
undo) are :class:`napari_carspatial.model.curation.Curation`; this session adds the reviewer,
the selection the actions apply to, blinding, and the file work through :mod:`napari_carspatial.io`.

Autosave and recovery (:class:`~.autosave.Autosaver`, :class:`~.autosave.Recovery`, in
:mod:`.autosave`) are state machines with the file writes injected (``runner``): the dock runs
them in a napari thread worker, scripts and tests run them synchronously.

Two small hooks let another workflow own where the work goes (the review workspace uses them for
a reader's locked working copy; nothing here knows about reviews):

* a **save target** (:meth:`CurationSession.set_save_target`): any object with ``label`` (what the
  Save button says), ``reviewer`` (pins the audit trail's reviewer, or None), ``save(session) ->
  Path`` and ``holds() -> bool`` (it may still write, e.g. its lock is held). With one,
  :meth:`~CurationSession.save_to_target` is "Save", and the recovery file is offered only while
  ``holds()``;
* a **read-only** mode (:meth:`CurationSession.set_read_only`) to show frozen work: every edit is
  refused with a :class:`~napari_carspatial.model.SampleError` giving the reason, nothing is
  autosaved and no recovery is offered.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..model import ROI, Sample, SampleError, spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from ..model.curation import Command, Curation, roi_contains
from ..model.geometry import points_in_polygon
from .autosave import AUTOSAVE_EDITS, AUTOSAVE_SECONDS, Autosaver, Recovery

log = logging.getLogger(__name__)

#: neutral name shown instead of the sample name in blinded review
BLIND_ALIAS = "Sample A"
#: metadata keys hidden (besides the clinical ones) while blinded
BLIND_HIDDEN = ("sample", "name", "patient_id", "sample_id")


class CurationSession:
    """One sample's curation by one reviewer (see the module docstring).

    Parameters
    ----------
    sample
        The sample (its table is edited in place: curated columns are added, the original
        cell-type column is never changed; ``sample.rois`` is the ROI list managed).
    reviewer
        Name written in every audit row (default: the OS user).
    type_key
        Original cell-type column (default: stored or guessed).
    autosave
        Autosave to the recovery folder when the policy says so (default True). With False,
        edits are only counted; :meth:`Autosaver.autosave_now` still writes on demand.
    autosave_edits, autosave_seconds
        Autosave policy (see :class:`Autosaver`).
    runner
        How autosave writes run (see :class:`Autosaver`; default: synchronously).

    Notes
    -----
    ``on_edit`` callables get ``(command, "do" | "undo" | "redo")`` after every change,
    ``on_selection`` callables get the number of selected cells.
    """

    def __init__(self, sample: Sample, *, reviewer: str | None = None, type_key: str | None = None,
                 autosave: bool = True, autosave_edits: int = AUTOSAVE_EDITS,
                 autosave_seconds: float = AUTOSAVE_SECONDS, runner=None, clock=time.monotonic):
        if sample.table is None:
            raise ValueError(f"sample {sample.name!r} has no cell table to curate")
        self.sample = sample
        self.curation = Curation(sample.table, rois=sample.rois, reviewer=reviewer, type_key=type_key)
        self.selected = np.zeros(sample.table.n_obs, bool)
        self.on_edit: list[Callable[[Command | None, str], None]] = []
        self.on_selection: list[Callable[[int], None]] = []
        self.blinded = False
        self.real_name = sample.name
        #: where "Save" writes (None: only :meth:`save` to a path); see :meth:`set_save_target`
        self.save_target = None
        self._read_only: str | None = None
        self.curation.listeners.append(self._edited)
        self.autosaver = Autosaver(self, every_edits=autosave_edits, every_seconds=autosave_seconds,
                                   runner=runner, clock=clock, enabled=autosave)
        self.recovery = Recovery(self)

    # ------------------------------------------------------------------ reviewer and columns
    @property
    def reviewer(self) -> str:
        return self.curation.reviewer

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        pinned = getattr(self.save_target, "reviewer", None)
        if pinned and str(name) != pinned:   # a save target owned by one reviewer keeps its audit name
            log.debug("reviewer %r not applied: the save target pins %r", name, pinned)
            return
        self.curation.reviewer = str(name)

    # ------------------------------------------------------------------ save target, read-only
    def set_save_target(self, target) -> None:
        """Make ``target`` where "Save" writes (None: back to "Save as" only).

        ``target`` has ``label`` (str), ``reviewer`` (str or None: pins the audit trail's
        reviewer), ``save(session) -> Path`` and ``holds() -> bool`` (see the module docstring).
        """
        self.save_target = target
        pinned = getattr(target, "reviewer", None)
        if pinned:
            self.curation.reviewer = str(pinned)

    def set_read_only(self, reason: str | None) -> None:
        """Refuse every edit (``reason`` says why, e.g. "both reads are done"), or allow them again (None)."""
        self._read_only = str(reason) if reason else None

    @property
    def read_only(self) -> bool:
        return self._read_only is not None

    @property
    def read_only_reason(self) -> str | None:
        return self._read_only

    @property
    def writable(self) -> bool:
        """Edits are allowed and the save target (if any) may still write."""
        if self._read_only is not None:
            return False
        target = self.save_target
        return target is None or bool(target.holds())

    def _check_editable(self) -> None:
        if self._read_only is not None:
            raise SampleError(f"{self.sample.name} is read-only: {self._read_only}.")

    def save_to_target(self) -> Path:
        """"Save": write through the save target (the recovery file is discarded after it).

        Raises
        ------
        SampleError
            No save target, read-only, or the target refused (e.g. its lock was broken; the work
            stays in memory and in the recovery file).
        """
        if self.save_target is None:
            raise SampleError(f"{self.sample.name} has no save target; use save(path) (Save as).")
        self._check_editable()
        out = self.save_target.save(self)
        self.autosaver.saved()
        return out

    @property
    def table(self):
        return self.sample.table

    @property
    def type_key(self) -> str:
        return self.curation.type_key

    @property
    def curated_key(self) -> str:
        return self.curation.curated_key

    @property
    def categories(self) -> list[str]:
        return self.curation.categories

    def cell_yx(self) -> np.ndarray:
        """Cell centroids, (y, x) level-0 px."""
        return spatial_to_yx(np.asarray(self.table.obsm[SPATIAL_KEY], float))

    # ------------------------------------------------------------------ selection
    def _type_mask(self, cell_type: str | None) -> np.ndarray | None:
        if cell_type is None:
            return None
        return self.table.obs[self.curated_key].astype(str).to_numpy() == str(cell_type)

    def select(self, mask_or_rows, *, add: bool = False, cell_type: str | None = None) -> int:
        """Set (or, with ``add``, extend) the selection: a boolean mask or row indices,
        optionally only cells of curated type ``cell_type``. Returns the number selected."""
        m = np.asarray(mask_or_rows)
        if m.dtype != bool:
            mm = np.zeros(self.table.n_obs, bool)
            mm[m.astype(np.int64)] = True
            m = mm
        if m.shape != self.selected.shape:
            raise ValueError(f"a selection of {m.size} values for {self.table.n_obs} cells")
        tm = self._type_mask(cell_type)
        if tm is not None:
            m = m & tm
        self.selected = (self.selected | m) if add else m.copy()
        self._selection_changed()
        return self.n_selected

    def select_ids(self, cell_ids, *, add: bool = False, toggle: bool = False) -> int:
        """Select cells by mask id; with ``toggle`` (and ``add``) a selected cell is deselected."""
        rows = self.curation.rows_of_ids(cell_ids)
        if toggle and add and rows.size == 1 and self.selected[rows[0]]:
            self.selected[rows[0]] = False
            self._selection_changed()
            return self.n_selected
        m = np.zeros_like(self.selected)
        m[rows] = True
        return self.select(m, add=add)

    def select_polygon(self, polygon_yx, *, add: bool = False, cell_type: str | None = None) -> int:
        """Select cells whose centroid is inside a (y, x) level-0 pixel polygon."""
        poly = np.asarray(polygon_yx, float)[:, -2:]
        m = points_in_polygon(self.cell_yx(), poly) if len(poly) >= 3 else np.zeros(self.table.n_obs, bool)
        return self.select(m, add=add, cell_type=cell_type)

    def select_in_roi(self, roi_id: str, *, add: bool = False, cell_type: str | None = None) -> int:
        """Select the cells of a ROI (optionally only one curated type)."""
        return self.select(self.curation.cells_in_roi(roi_id), add=add, cell_type=cell_type)

    def clear_selection(self) -> None:
        self.selected = np.zeros(self.table.n_obs, bool)
        self._selection_changed()

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def selection_summary(self) -> dict[str, int]:
        """Selected cells per curated type, most first."""
        if not self.selected.any():
            return {}
        col = self.table.obs[self.curated_key]
        if hasattr(col, "cat"):   # on codes: no boolean Series index and no strings of 10^6 cells
            cats = [str(c) for c in col.cat.categories]
            n = np.bincount(col.cat.codes.to_numpy()[self.selected].astype(np.intp) + 1, minlength=len(cats) + 1)
            names, counts = ["nan", *cats], n   # a missing type reads "nan", as astype(str) gives
            order = np.argsort(-counts, kind="stable")
            out: dict[str, int] = {}
            for i in order:
                if counts[i]:
                    out[names[i]] = out.get(names[i], 0) + int(counts[i])
            return out
        vc = col[self.selected].astype(str).value_counts()
        return {str(k): int(v) for k, v in vc.items() if v}

    def _selection_changed(self) -> None:
        for cb in list(self.on_selection):
            cb(self.n_selected)

    # ------------------------------------------------------------------ edits on the selection
    def assign(self, cell_type: str, *, note: str = "") -> Command | None:
        """Set the curated type of the selected cells (new or existing type)."""
        self._check_editable()
        return self.curation.assign(self.selected, cell_type, note=note)

    def exclude(self, reason: str, *, note: str = "") -> Command | None:
        """Flag the selected cells as excluded (artefact, fold, necrosis, ...)."""
        self._check_editable()
        return self.curation.exclude(self.selected, reason, note=note)

    def include(self, *, note: str = "") -> Command | None:
        """Remove the exclusion flag of the selected cells."""
        self._check_editable()
        return self.curation.include(self.selected, note=note)

    def confirm(self, *, note: str = "") -> Command | None:
        """The calls of the selected cells are right: mark them reviewed."""
        self._check_editable()
        return self.curation.confirm(self.selected, note=note)

    def undo(self) -> Command | None:
        """Undo the last edit (nothing while read-only)."""
        return None if self.read_only else self.curation.undo()

    def redo(self) -> Command | None:
        return None if self.read_only else self.curation.redo()

    @property
    def can_undo(self) -> bool:
        return not self.read_only and self.curation.can_undo

    @property
    def can_redo(self) -> bool:
        return not self.read_only and self.curation.can_redo

    def _edited(self, cmd, what: str) -> None:
        self.autosaver.note_edit()
        for cb in list(self.on_edit):
            cb(cmd, what)

    def changed_columns(self, cmd: Command | None) -> tuple[str, ...]:
        """The table columns an edit touched (for ``table_changed`` events)."""
        if cmd is None:
            return ()
        cols = [ch.column for ch in cmd.changes]
        if cmd.roi_before is not None:
            cols += ["roi", "roi_class"]
        return tuple(dict.fromkeys(cols))

    # ------------------------------------------------------------------ regions
    def add_roi(self, polygon_yx, *, name: str, cls: str, note: str = "") -> Command:
        """A named region from a (y, x) level-0 pixel polygon (undoable)."""
        self._check_editable()
        poly = np.asarray(polygon_yx, float)[:, -2:]
        if len(poly) < 3:
            raise ValueError("a region needs at least 3 vertices: draw a polygon, rectangle or ellipse")
        return self.curation.add_roi(ROI(name=name, polygon_yx=poly, cls=cls), note=note)

    def next_roi_name(self, cls: str) -> str:
        cls = cls or "region"
        return f"{cls} {sum(1 for r in self.curation.rois if r.cls == cls) + 1}"

    def remove_roi(self, roi_id: str, *, note: str = "") -> Command:
        self._check_editable()
        return self.curation.remove_roi(roi_id, note=note)

    def mark_roi_reviewed(self, roi_id: str, *, note: str = "") -> Command:
        self._check_editable()
        return self.curation.mark_roi_reviewed(roi_id, note=note)

    def import_geojson(self, path) -> tuple[Command, int]:
        """Add the regions of a (QuPath) GeoJSON file in one undoable step; returns (command, n)."""
        from ..io import read_geojson

        self._check_editable()
        rois = read_geojson(path)
        cmd = self.curation.set_rois([*self.curation.rois, *rois], note=f"from {Path(path).name}")
        return cmd, len(rois)

    def export_geojson(self, path, *, overwrite: bool = True) -> Path:
        from ..io import write_geojson

        return write_geojson(self.curation.rois, path, overwrite=overwrite)

    def roi_cells(self, roi: ROI) -> np.ndarray:
        return roi_contains(roi, self.cell_yx())

    # ------------------------------------------------------------------ audit and progress
    def audit(self):
        """The audit trail (one row per action, undo and redo included) as a DataFrame."""
        from ..model import get_log

        return get_log(self.table)

    def export_audit(self, path) -> None:
        from ..model.edit_log import export_csv

        export_csv(self.table, path)

    def progress(self) -> dict:
        """Review progress (:meth:`~napari_carspatial.model.curation.Curation.progress`: ~4 ms
        at 10^6 cells, so the docks may ask after every edit)."""
        return self.curation.progress()

    # ------------------------------------------------------------------ blinded review
    def set_blinded(self, blinded: bool, alias: str = BLIND_ALIAS) -> bool:
        """Hide the sample name (``sample.name`` becomes ``alias``) or show it again.
        Returns whether anything changed."""
        blinded = bool(blinded)
        if blinded == self.blinded:
            return False
        self.blinded = blinded
        if blinded:
            self.real_name = self.sample.name
            self.sample.name = alias
        else:
            self.sample.name = self.real_name
        return True

    def public_metadata(self) -> dict:
        """Metadata to show: clinical keys (and the sample name) hidden when blinded."""
        meta = self.sample.public_metadata(blinded=self.blinded)
        if self.blinded:
            meta = {k: v for k, v in meta.items() if k not in BLIND_HIDDEN}
        return meta

    def follow_table(self, rows_added=None, rows_removed=None) -> None:
        """Curate the sample's new table object (a segmentation commit appended or dropped rows):
        a new Curation of the same type column, an empty selection and undo; edits not yet
        autosaved stay pending (they are in the new table too).

        When the change only appended ``rows_added`` (positions at the new table's end), the
        Curation keeps its undo stack (every row keeps its position) and only the new rows get
        their regions (a new Curation recomputes every cell's: ~1.8 s at 10^6 cells)."""
        if self._follow_append(rows_added, rows_removed):
            return
        self._new_curation(type_key=self.curation.type_key)
        self._selection_changed()

    def _follow_append(self, rows_added, rows_removed) -> bool:
        import pandas as pd

        from ..model.conventions import instance_ids
        from ..model.curation import ROI_CLASS_KEY, ROI_KEY, _joined

        c, t = self.curation, self.sample.table
        if rows_added is None or (rows_removed is not None and len(rows_removed)):
            return False
        added = np.asarray(rows_added, dtype=np.int64).ravel()
        n_old = c.adata.n_obs
        if n_old + added.size != t.n_obs or not np.array_equal(added, np.arange(n_old, t.n_obs)) \
                or self.selected.shape != (n_old,):
            return False
        cols = (ROI_KEY, ROI_CLASS_KEY)
        if any(k not in t.obs or not isinstance(t.obs[k].dtype, pd.CategoricalDtype) for k in cols):
            return False
        yx = spatial_to_yx(np.asarray(t.obsm[SPATIAL_KEY], float)[added])
        inside = [roi_contains(r, yx) for r in c.rois]
        for k, attr in zip(cols, ("name", "cls"), strict=True):
            # the model's own join (as Curation.update_roi_membership), for the new rows only
            vals = _joined(inside, [getattr(r, attr) for r in c.rois], added.size)
            new = [v for v in vals.categories if v not in t.obs[k].cat.categories]
            if new:
                t.obs[k] = t.obs[k].cat.add_categories(new)
            t.obs.iloc[added, t.obs.columns.get_loc(k)] = pd.Categorical(np.asarray(vals, dtype=object),
                                                                         dtype=t.obs[k].dtype)
        c.adata = t
        c.ids = instance_ids(t)
        had = bool(self.selected.any())
        self.selected = np.concatenate([self.selected, np.zeros(added.size, bool)])
        if had:   # an empty selection stays empty: nothing to redraw (~0.5 s at 10^6 cells)
            self._selection_changed()
        return True

    def _new_curation(self, **kw) -> None:
        """A new Curation of the sample's table (same reviewer and listeners), an empty selection."""
        listeners = [cb for cb in self.curation.listeners if cb != self._edited]
        self.curation = Curation(self.sample.table, rois=self.sample.rois, reviewer=self.curation.reviewer, **kw)
        self.curation.listeners.append(self._edited)
        self.curation.listeners.extend(listeners)
        self.selected = np.zeros(self.sample.table.n_obs, bool)

    def _restart(self) -> None:
        """Start over on the sample's (new) table: a new Curation, empty selection and undo."""
        self._new_curation()
        self.autosaver.policy.saved()
        self._selection_changed()

    # ------------------------------------------------------------------ saving
    @property
    def source(self) -> str | None:
        """The file the table came from (its table, else its image); None for unsaved data."""
        p = self.sample.paths
        return p.get("table") or p.get("image")

    def is_source(self, path) -> bool:
        """Whether ``path`` is one of the files this sample was opened from (table, image, mask)."""
        for part in ("table", "image", "mask"):
            src = self.sample.paths.get(part)
            if not src:
                continue
            try:
                if os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src):
                    return True
            except OSError:
                pass
            if os.path.abspath(os.fspath(path)) == os.path.abspath(os.fspath(src)):
                return True
        return False

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the curated table to ``path`` (``.h5ad`` / ``.zarr``, atomic, with provenance).

        Raises
        ------
        SampleError
            ``path`` is one of the sample's own files (never overwritten, whatever
            ``overwrite`` says), exists without ``overwrite``, or cannot be written. The work
            stays in memory.
        """
        from ..io.write import write_table

        if self.is_source(path):
            raise SampleError("is the file this sample was opened from; it is never overwritten.",
                              path=path, hint="Choose another name.")
        out = write_table(self.table, path, overwrite=overwrite,
                          paths={k: v for k, v in self.sample.paths.items() if k in ("image", "mask", "table")})
        self.autosaver.saved()
        return out
