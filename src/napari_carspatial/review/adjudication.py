"""Adjudication: the adjudicator decides every cell (and region class) the two reads disagree on.

The adjudication works on ``adjudication/<code>.h5ad`` in the project: both reads side by side
(:class:`~napari_carspatial.review.reads.ReadPair`) plus the adjudicated column
``<type>_adjudicated``, which holds the agreed call where the reads agree and the decision where
they did not (missing until decided). Only disagreements can be decided (an agreed call is not
the adjudicator's to change). Every decision is an audit row in the table's audit trail
(``uns["carspatial_edit_log"]``, action ``adjudicate`` / ``adjudicate_region``): who, when, the
cells, the two calls (``old = {reader 1: call(s), reader 2: call(s)}``), the decision and a note.
Deciding a cell again is allowed and logged (the row's ``old`` then also has the earlier decision).

Region classes where the readers' regions differ (Dice < 1) are decided per class: keep reader 1's
or reader 2's regions of that class, their ``union`` or ``intersection``, or ``none``.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..model import ROI, SampleError, edit_log
from ..model.conventions import UNS_KEY, instance_ids
from ..model.curation import ROI_UNS_KEY, rois_from_frame, rois_to_frame
from .agreement import region_agreement
from .lock import FileLock, LockedSession
from .project import ADJUDICATED, IN_PROGRESS, ReviewProject, _now
from .reads import EXCLUDED_CALL, _read_h5ad, _require_both_done, _write_wc, read_pair

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

ADJUDICATED_SUFFIX = "_adjudicated"
REGION_CHOICES = ("union", "intersection", "none")
_REVIEW_UNS = "carspatial_review"


def adjudicated_key_of(start_key: str) -> str:
    return f"{start_key}{ADJUDICATED_SUFFIX}"


def _rois_json(rois) -> str:
    return rois_to_frame(rois).to_json(orient="records")


def _rois_from_json(text: str | None) -> list[ROI]:
    if not text:
        return []
    return rois_from_frame(pd.DataFrame(json.loads(text)))


def _geometry_to_rois(geom, cls: str, name: str) -> list[ROI]:
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty:
        return []
    parts = [geom] if isinstance(geom, Polygon) else [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    out = []
    flat = []
    for g in parts:
        flat.extend(g.geoms if isinstance(g, MultiPolygon) else [g])
    for i, p in enumerate(flat, start=1):
        if p.area <= 0:
            continue
        shell = np.asarray(p.exterior.coords, float)[:-1]
        holes = [np.asarray(h.coords, float)[:-1] for h in p.interiors]
        out.append(ROI(name=name if len(flat) == 1 else f"{name} {i}", polygon_yx=shell, cls=cls, holes_yx=holes))
    return out


def final_rois(readers, reader_rois: dict, region_decisions: dict, *, pixel_size_um=None) -> list[ROI]:
    """Per ROI class: the decided regions where the reads differ, else read 1's (equal to read 2's)."""
    r1, r2 = readers
    ra = region_agreement(reader_rois[r1], reader_rois[r2], pixel_size_um=pixel_size_um, reader_a=r1, reader_b=r2)
    differ = set(ra.disagreeing_classes)
    out = [r for r in reader_rois[r1] if r.cls not in differ]
    for cls in sorted(differ):
        d = region_decisions.get(cls)
        if d is not None:
            out.extend(_rois_from_json(d["rois"]))
    return out


def final_rois_of_table(adata) -> list[ROI]:
    """:func:`final_rois` of a saved adjudication table."""
    meta = json.loads(adata.uns[_REVIEW_UNS]["adjudication"])
    readers = tuple(meta["readers"])
    return final_rois(readers, {r: _rois_from_json(meta.get("rois", {}).get(r)) for r in readers},
                      dict(meta.get("region_decisions") or {}), pixel_size_um=meta.get("pixel_size_um"))


class AdjudicationSession(LockedSession):
    """The adjudication of one sample (open with :meth:`ReviewProject.start_adjudication`).

    Attributes
    ----------
    table
        Both reads' columns and ``adjudicated_key``.
    readers
        (read 1, read 2) reviewer ids; ``call_keys[reader]`` their call columns.
    adjudicator
        Who decides (the audit rows' reviewer).

    Parameters
    ----------
    project
        The review project.
    sample
        The sample id.
    adjudicator
        Who decides.
    table
        The working copy with both reads' columns.
    lock
        The held lock of the adjudication's working copy (released on close).
    """

    def __init__(self, project: ReviewProject, sample: str, adjudicator: str, table: AnnData, lock: FileLock):
        self.project = project
        self.sample = sample
        self.label = project.label(sample)
        self.adjudicator = adjudicator
        self.table = table
        self.path = project.adjudication_path(sample)
        meta = json.loads(table.uns[_REVIEW_UNS]["adjudication"])
        self.readers = tuple(meta["readers"])
        self.call_keys = dict(meta["call_keys"])
        self.start_key = meta["start_key"]
        self.adjudicated_key = meta["adjudicated_key"]
        self.region_decisions: dict = dict(meta.get("region_decisions") or {})
        self.reader_rois = {r: _rois_from_json(meta.get("rois", {}).get(r)) for r in self.readers}
        self.pixel_size_um = meta.get("pixel_size_um")
        self.ids = instance_ids(table)
        self._lock = lock
        self.closed = False

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, project: ReviewProject, sample_or_code: str, adjudicator: str, *,
             break_stale: bool = False) -> AdjudicationSession:
        project.reload()
        entry = project.entry(sample_or_code)
        label = project.label(entry.sample)
        if entry.adjudication.reviewer != adjudicator:
            raise SampleError(f"{adjudicator} is not the adjudicator of {label} "
                              f"({entry.adjudication.reviewer or 'none assigned'}).", path=project.file,
                              hint="`carspatial project assign --adjudicator` assigns one.")
        _require_both_done(project, entry, "the adjudication")
        path = project.adjudication_path(entry.sample)
        lock = FileLock(path, owner=adjudicator, purpose=f"adjudication of {label}")
        lock.acquire(break_stale=break_stale)
        try:
            # built from the two reads until the first save
            table = _read_h5ad(path) if path.exists() else cls._build(project, entry.sample)
            session = cls(project, entry.sample, adjudicator, table, lock)
            if entry.adjudication.status != ADJUDICATED:
                with project.updating(adjudicator):
                    a = project.entry(entry.sample).adjudication
                    a.status = IN_PROGRESS
                    a.started = a.started or _now()
        except BaseException:
            lock.release()
            raise
        return session

    @staticmethod
    def _build(project: ReviewProject, sample: str):
        pair = read_pair(project, sample)
        t = pair.table
        r1, r2 = pair.readers
        ka, kb = pair.call_keys[r1], pair.call_keys[r2]
        a = t.obs[ka].astype(object).where(t.obs[ka].notna(), None).to_numpy()
        b = t.obs[kb].astype(object).where(t.obs[kb].notna(), None).to_numpy()
        agree = np.array([x == y for x, y in zip(a, b, strict=True)], dtype=bool)  # both missing: agreed
        cats = list(dict.fromkeys([*map(str, t.obs[ka].cat.categories), *map(str, t.obs[kb].cat.categories)]))
        akey = adjudicated_key_of(pair.start_key)
        t.obs[akey] = pd.Categorical(np.where(agree, a, None), categories=cats)
        t.obs["review_disagreement"] = ~agree
        meta = {"readers": [r1, r2], "call_keys": pair.call_keys, "start_key": pair.start_key,
                "adjudicated_key": akey, "region_decisions": {},
                "rois": {r: _rois_json(pair.rois.get(r, [])) for r in (r1, r2)},
                "pixel_size_um": pair.pixel_size_um}
        t.uns[_REVIEW_UNS] = {"adjudication": json.dumps(meta)}
        for r in (r1, r2):  # the readers' audit rows, reviewer names kept
            lg = pair.logs.get(r)
            if lg is not None and len(lg):
                cur = edit_log.get_log(t)
                t.uns[edit_log.EDIT_LOG_KEY] = pd.concat([cur, lg], ignore_index=True).astype(str)
        if edit_log.EDIT_LOG_KEY in t.uns:
            t.uns[edit_log.EDIT_LOG_KEY].index = t.uns[edit_log.EDIT_LOG_KEY].index.astype(str)
        return t

    # ------------------------------------------------------------------ what to decide
    def _rows(self, cell_ids) -> np.ndarray:
        cell_ids = np.unique(np.asarray(cell_ids, np.int64).ravel())
        order = np.argsort(self.ids, kind="stable")
        pos = np.clip(np.searchsorted(self.ids[order], cell_ids), 0, max(len(order) - 1, 0))
        ok = self.ids[order][pos] == cell_ids
        if not ok.all():
            bad = cell_ids[~ok][:10].tolist()
            raise SampleError(f"{int((~ok).sum())} cell id(s) are not in {self.label}: {bad}", path=self.path)
        return order[pos]

    @property
    def _disagree(self) -> np.ndarray:
        return self.table.obs["review_disagreement"].to_numpy(bool)

    def disagreements(self, *, undecided_only: bool = False) -> pd.DataFrame:
        """One row per disagreeing cell: ``cell_id``, the two calls (columns named by the readers),
        ``decision`` (missing until decided), ``x``, ``y`` (level-0 px, for stepping through them)."""
        obs = self.table.obs
        m = self._disagree
        dec = obs[self.adjudicated_key].astype(object).to_numpy()
        if undecided_only:
            m = m & pd.isna(dec)
        xy = np.asarray(self.table.obsm["spatial"], float)[m] if "spatial" in self.table.obsm else np.full((m.sum(), 2), np.nan)
        r1, r2 = self.readers
        return pd.DataFrame({"cell_id": self.ids[m], r1: obs[self.call_keys[r1]].astype(object).to_numpy()[m],
                             r2: obs[self.call_keys[r2]].astype(object).to_numpy()[m], "decision": dec[m],
                             "x": xy[:, 0], "y": xy[:, 1]})

    def pairs(self) -> pd.DataFrame:
        """Disagreements counted per pair of calls: ``<read 1>, <read 2>, n, n_undecided``."""
        d = self.disagreements()
        r1, r2 = self.readers
        if d.empty:
            return pd.DataFrame(columns=[r1, r2, "n", "n_undecided"])
        g = d.assign(und=d["decision"].isna()).groupby([r1, r2], sort=True)
        return g.agg(n=("cell_id", "size"), n_undecided=("und", "sum")).reset_index()

    # ------------------------------------------------------------------ decide
    def _check_open(self) -> None:
        if self.closed:
            raise SampleError(f"the adjudication of {self.label} is closed.", path=self.path)

    def decide(self, cell_ids, decision: str, *, note: str = "") -> int:
        """Set the adjudicated call of disagreeing cells (one or many) to ``decision``.

        ``decision`` is a cell type (one of either read's, or another) or ``"(excluded)"``.
        Returns the number of cells decided.

        Raises
        ------
        SampleError
            A cell is not in the sample or the reads agree on it.
        """
        self._check_open()
        rows = self._rows(cell_ids)
        if rows.size == 0:
            return 0
        agreed = ~self._disagree[rows]
        if agreed.any():
            raise SampleError(f"{int(agreed.sum())} of the {rows.size} cells are not disagreements (both reads "
                              f"agree, e.g. cell {int(self.ids[rows][agreed][0])}); adjudication decides "
                              "disagreements only.", path=self.path)
        decision = str(decision).strip()
        if not decision:
            raise SampleError("a decision cannot be empty.")
        obs = self.table.obs
        col = obs[self.adjudicated_key]
        if decision not in list(col.cat.categories):
            obs[self.adjudicated_key] = col.cat.add_categories([decision])
            col = obs[self.adjudicated_key]
        before = col.astype(object).to_numpy()[rows]
        codes = col.cat.codes.to_numpy().copy()
        codes[rows] = list(col.cat.categories).index(decision)
        obs[self.adjudicated_key] = pd.Categorical.from_codes(codes, categories=col.cat.categories)
        r1, r2 = self.readers
        old = {r1: _one_or_list(obs[self.call_keys[r1]].astype(object).to_numpy()[rows]),
               r2: _one_or_list(obs[self.call_keys[r2]].astype(object).to_numpy()[rows])}
        if not pd.isna(before).all():
            old["earlier_decision"] = _one_or_list(np.where(pd.isna(before), None, before))
        edit_log.record(self.table, "adjudicate", cell_ids=self.ids[rows], column=self.adjudicated_key, old=old,
                        new=decision, note=note, reviewer=self.adjudicator)
        return int(rows.size)

    def accept(self, cell_ids, reader: str, *, note: str = "") -> int:
        """Take ``reader``'s call for each of these disagreeing cells (the calls may differ per cell)."""
        if reader not in self.call_keys:
            raise SampleError(f"{reader!r} is not a reader of {self.label} (readers: {', '.join(self.readers)}).")
        rows = self._rows(cell_ids)
        calls = self.table.obs[self.call_keys[reader]].astype(object).to_numpy()[rows]
        n = 0
        for call in pd.unique(calls):
            n += self.decide(self.ids[rows][calls == call], str(call), note=note or f"call of {reader} accepted")
        return n

    def decide_pair(self, call_a: str, call_b: str, decision: str, *, note: str = "") -> int:
        """Decide every disagreement where read 1 said ``call_a`` and read 2 ``call_b`` (in bulk)."""
        d = self.disagreements()
        r1, r2 = self.readers
        ids = d.loc[(d[r1] == call_a) & (d[r2] == call_b), "cell_id"].to_numpy()
        if ids.size == 0:
            raise SampleError(f"no disagreement {r1}: {call_a!r} vs {r2}: {call_b!r} in {self.label}.")
        return self.decide(ids, decision, note=note)

    # ------------------------------------------------------------------ regions
    def region_agreement(self):
        r1, r2 = self.readers
        return region_agreement(self.reader_rois[r1], self.reader_rois[r2], pixel_size_um=self.pixel_size_um,
                                reader_a=r1, reader_b=r2)

    def region_disagreements(self) -> pd.DataFrame:
        """ROI classes whose regions differ: ``class, dice, iou, area_a, area_b, decision, note``."""
        ra = self.region_agreement()
        pc = ra.per_class.loc[ra.disagreeing_classes]
        out = pc[["dice", "iou", "area_a", "area_b", "note"]].copy()
        out["decision"] = [self.region_decisions.get(c, {}).get("choice") for c in out.index]
        return out.reset_index()

    def decide_region(self, cls: str, choice: str, *, note: str = "") -> list[ROI]:
        """Decide the regions of one ROI class: a reader's id, ``union``, ``intersection`` or ``none``.

        Returns the adjudicated ROIs of that class.
        """
        self._check_open()
        ra = self.region_agreement()
        if cls not in ra.disagreeing_classes:
            raise SampleError(f"the readers' {cls!r} regions of {self.label} do not differ "
                              f"(classes that differ: {', '.join(ra.disagreeing_classes) or 'none'}).")
        if choice not in (*self.readers, *REGION_CHOICES):
            raise SampleError(f"region decision {choice!r} is not one of {', '.join((*self.readers, *REGION_CHOICES))}.")
        from .region_agreement import _geometry

        r1, r2 = self.readers
        if choice in self.readers:
            rois = [ROI(name=r.name, polygon_yx=r.polygon_yx.copy(), cls=r.cls, holes_yx=list(r.holes_yx))
                    for r in self.reader_rois[choice] if r.cls == cls]
        elif choice == "none":
            rois = []
        else:
            ga, gb = _geometry(self.reader_rois[r1], cls), _geometry(self.reader_rois[r2], cls)
            if ga is not None and gb is not None:
                geom = ga.union(gb) if choice == "union" else ga.intersection(gb)
            else:  # one reader drew none: the union is the other's, the intersection is empty
                geom = (ga if ga is not None else gb) if choice == "union" else None
            rois = _geometry_to_rois(geom, cls, f"{cls} ({choice})")
        pc = ra.per_class.loc[cls]
        old = {r1: f"{sum(r.cls == cls for r in self.reader_rois[r1])} region(s), {pc['area_a']:.0f} px²",
               r2: f"{sum(r.cls == cls for r in self.reader_rois[r2])} region(s), {pc['area_b']:.0f} px²",
               "dice": None if not np.isfinite(pc["dice"]) else round(float(pc["dice"]), 4)}
        if cls in self.region_decisions:
            old["earlier_decision"] = self.region_decisions[cls]["choice"]
        self.region_decisions[cls] = {"choice": choice, "rois": _rois_json(rois), "note": note,
                                      "time": _now(), "by": self.adjudicator}
        self._store_meta()
        edit_log.record(self.table, "adjudicate_region", cell_ids=[], column="roi", old=old, new=choice,
                        note=f"{cls}: {note}" if note else cls, reviewer=self.adjudicator)
        return rois

    def final_rois(self) -> list[ROI]:
        """The adjudicated regions: per class the decision, or the (identical) regions of both reads."""
        return final_rois(self.readers, self.reader_rois, self.region_decisions, pixel_size_um=self.pixel_size_um)

    def _store_meta(self) -> None:
        meta = json.loads(self.table.uns[_REVIEW_UNS]["adjudication"])
        meta["region_decisions"] = self.region_decisions
        self.table.uns[_REVIEW_UNS] = {"adjudication": json.dumps(meta)}

    # ------------------------------------------------------------------ progress, saving
    def remaining(self) -> dict:
        """``{"cells": undecided disagreeing cells, "regions": undecided region classes}``."""
        und = int((self._disagree & self.table.obs[self.adjudicated_key].isna().to_numpy()).sum())
        regs = [c for c in self.region_agreement().disagreeing_classes if c not in self.region_decisions]
        return {"cells": und, "regions": regs}

    def save(self) -> Path:
        self._check_open()
        self._lock.refresh()
        self.table.uns[ROI_UNS_KEY] = rois_to_frame(self.final_rois())
        return _write_wc(self.table, self.path)

    def finish(self) -> None:
        """Save and mark the sample ``adjudicated`` (every disagreement decided).

        Raises
        ------
        SampleError
            Cells or region classes are still undecided (the message counts them).
        """
        self._check_open()
        left = self.remaining()
        if left["cells"] or left["regions"]:
            raise SampleError(f"{self.label}: {left['cells']} disagreeing cell(s) and {len(left['regions'])} "
                              f"region class(es) ({', '.join(left['regions']) or '-'}) are not decided yet.",
                              path=self.path)
        meta = dict(self.table.uns.get(UNS_KEY) or {})
        meta["review"] = {**dict(meta.get("review") or {}), "final_key": self.adjudicated_key}
        self.table.uns[UNS_KEY] = meta
        self.save()
        with self.project.updating(self.adjudicator):
            a = self.project.entry(self.sample).adjudication
            a.status = ADJUDICATED
            a.finished = _now()
        self._release()

    def __repr__(self) -> str:
        left = self.remaining()
        return (f"AdjudicationSession({self.label!r} by {self.adjudicator}: {int(self._disagree.sum())} disagreeing "
                f"cells, {left['cells']} undecided, regions undecided: {left['regions']})")


def _one_or_list(values):
    vals = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in np.asarray(values, object)]
    if vals and all(v == vals[0] for v in vals):
        return vals[0]
    return vals


__all__ = ["ADJUDICATED_SUFFIX", "EXCLUDED_CALL", "REGION_CHOICES", "AdjudicationSession", "adjudicated_key_of"]
