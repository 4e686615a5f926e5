"""Independent reads: one working copy per reader, locked while open, hidden from the other reader.

A read starts from a **working copy** of the sample's cell table (``reads/<code>/<reviewer>.h5ad``
in the project; the source table is never written). The copy keeps the cells, their centroids,
marker intensities and the cell-type column the reads start from; with blinding on it is also
scrubbed of what identifies the sample (the region name becomes the code, the obs names become
the cell ids, constant columns and columns whose values contain the sample, patient or file
names are dropped, and ``uns`` keeps only the pixel size, the SpatialData link and colours). The
reader curates it with :class:`~napari_carspatial.model.curation.Curation` (cell-type calls,
exclusions, ROIs, each action an audit row with the reader's id) and saves it back (atomic).

Only the reader may open their read (:meth:`ReviewProject.start_read`), and only while nobody
holds its lock. The other reader's working copy is refused by the API (:class:`RevealError`)
until both reads are done; after that both reads are frozen (a done read may be reopened only
while the other read is not done).

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import SampleError, edit_log
from ..model.cell_types import EXCLUDED_CALL  # noqa: F401 - the call of an excluded cell (re-exported)
from ..model.conventions import UNS_KEY, colors_key, instance_ids
from ..model.curation import (
    CURATED_SUFFIX,
    EXCLUDE_REASON_KEY,
    EXCLUDED_KEY,
    REVIEWED_KEY,
    ROI_CLASS_KEY,
    ROI_KEY,
    ROI_UNS_KEY,
    Curation,
    curated_key_for,
    rois_from_frame,
)
from .blinding import CLINICAL_COLUMNS, _tokens, blind_table  # noqa: F401 - re-exported: they lived here
from .columns import base_type_column
from .lock import FileLock, LockedSession
from .project import DONE, IN_PROGRESS, RevealError, ReviewProject, SampleEntry, _now

log = logging.getLogger(__name__)

def start_key_of(type_key: str) -> str:
    """The column a working copy's reads start from: the type column, or for a curated column its
    base name (``cell_type_curated`` -> ``cell_type``: the curated calls become the start)."""
    return type_key[: -len(CURATED_SUFFIX)] if type_key.endswith(CURATED_SUFFIX) else type_key


def read_key(start_key: str, reviewer: str) -> str:
    """Name of a reader's call column in merged tables and exports: ``<type>_read_<reviewer>``."""
    return f"{start_key}_read_{reviewer}"


#: file-name parts that say nothing about a sample (not used to find identifying columns)
def _source_file(row: dict) -> str | None:
    return row.get("table") or row.get("mask") or row.get("image")


def read_source(project: ReviewProject, entry: SampleEntry):
    """The sample as the manifest describes it (lazy image and mask), named by its sample id."""
    from ..cohort.batch import read_cohort_sample

    row = project.manifest_row(entry.sample)
    s = read_cohort_sample(row)
    if s.table is None:
        raise SampleError(f"sample {entry.sample!r} has no cell table to review.", path=_source_file(row),
                          hint="Give it a 'table' in the manifest, or quantify it first (carspatial quantify).")
    return s


def _type_key(project: ReviewProject, adata, where) -> str:
    key = project.type_key
    if key:
        if key not in adata.obs:
            raise SampleError(f"the table has no column {key!r} (the project's type_key); columns: "
                              f"{', '.join(map(str, adata.obs.columns))}.", path=where)
        return key
    meta = (adata.uns.get(UNS_KEY, {}) or {}).get("curation", {}) or {}
    cur = meta.get("curated_key")
    if isinstance(cur, str) and cur in adata.obs:
        return cur
    key = base_type_column(adata)
    if key is None:
        raise SampleError("the table has no cell-type column to review (looked for "
                          "cell_type, CellType, phenotype, ...).", path=where,
                          hint="Set 'type_key:' in the project file (carspatial project init --type-key).")
    return key


def _check_source(project: ReviewProject, entry: SampleEntry, row: dict) -> dict:
    """Record (first read) or check (later) the size and SHA-256 of the source file."""
    from ..io.write import sha256_file

    src = _source_file(row)
    if not src or not Path(src).exists():
        raise SampleError(f"the source of sample {entry.sample!r} is missing.", path=src)
    p = Path(src)
    size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    now = {"table": os.fspath(p.resolve()), "size": int(size), "sha256": sha256_file(p)}
    if entry.source and entry.source.get("sha256") and entry.source["sha256"] != now["sha256"]:
        raise SampleError(f"the source of {project.label(entry.sample)} changed since its first read began "
                          f"(SHA-256 {entry.source['sha256'][:12]}... then, {now['sha256'][:12]}... now); the two "
                          "reads would not be of the same table.", path=src,
                          hint="Restore the original file, or start the sample's reads again.")
    return now


def make_working_copy(project: ReviewProject, entry: SampleEntry, reviewer: str, read: int):
    """Build a reader's working copy from the source (see :func:`blind_table`)."""
    row = project.manifest_row(entry.sample)
    src = read_source(project, entry)
    where = _source_file(row)
    tkey = _type_key(project, src.table, where)
    skey = start_key_of(tkey)
    adata = src.table
    if skey != tkey:  # start from the curated calls, under the base name
        adata = adata.copy()
        adata.obs[skey] = adata.obs[tkey].astype(str).where(adata.obs[tkey].notna(), None)
        adata.obs = adata.obs.drop(columns=[tkey])
    wc = blind_table(adata, code=entry.code, start_key=skey, tokens=_tokens(row), blinding=project.blinding)
    if src.pixel_size_um and "pixel_size_um" not in (wc.uns.get(UNS_KEY) or {}):
        wc.uns[UNS_KEY] = {**dict(wc.uns.get(UNS_KEY) or {}), "pixel_size_um": float(src.pixel_size_um)}
    wc.uns[UNS_KEY] = {**dict(wc.uns.get(UNS_KEY) or {}),
                       "review": {"code": entry.code, "reviewer": reviewer,
                                  "read": int(read), "start_key": skey, "source_key": tkey}}
    return wc


def writable_obs_index(adata) -> None:
    """Drop an ``obs`` index name that is also a column with other values (in place).

    anndata refuses to write such a table (the cytomapper table read from ``cells.csv`` has its
    index named ``CellNb`` holding strings next to the integer ``CellNb`` column).
    """
    name = adata.obs.index.name
    if (name is not None and name in adata.obs.columns
            and not pd.Series(adata.obs.index, index=adata.obs.index).equals(adata.obs[name])):
        adata.obs.index.name = None


def _write_wc(adata, path: Path) -> Path:
    from ..io.write import write_table

    path.parent.mkdir(parents=True, exist_ok=True)
    writable_obs_index(adata)
    return write_table(adata, path, overwrite=True, record=False)


def _read_h5ad(path: Path):
    import anndata as ad

    try:
        return ad.read_h5ad(path)
    except (OSError, ValueError, KeyError) as err:
        raise SampleError(f"cannot read the working copy ({type(err).__name__}: {err}).", path=path) from err


class ReadSession(LockedSession):
    """One reader's open read of one sample: the working copy, its curation and its lock.

    Attributes
    ----------
    label
        What the reader sees (the code when blinding is on).
    reviewer
        Who reads.
    read_number
        First (1) or second (2) read.
    path
        The working copy.
    table
        The working copy (AnnData).
    curation
        :class:`~napari_carspatial.model.curation.Curation` on ``table`` with ``reviewer`` as the
        audit trail's reviewer: ``assign`` / ``exclude`` / ``include`` / ``confirm`` /
        ``add_roi`` / ... / ``undo`` / ``redo``.

    Notes
    -----
    Use as a context manager (saves and releases the lock on exit), or call :meth:`save`,
    :meth:`finish` (done: saved, status ``done``, lock released) or :meth:`close`.
    """

    def __init__(self, project: ReviewProject, entry: SampleEntry, reviewer: str, read: int, table, lock: FileLock):
        self.project = project
        self._entry = entry
        self.reviewer = reviewer
        self.read_number = int(read)
        self.label = project.label(entry.sample)
        self.path = project.read_path(entry.sample, reviewer)
        self.table = table
        self.start_key = str(((table.uns.get(UNS_KEY) or {}).get("review") or {}).get("start_key")
                             or base_type_column(table))
        self.curation = Curation(table, type_key=self.start_key, reviewer=reviewer)
        self._lock = lock
        self.closed = False

    @classmethod
    def open(cls, project: ReviewProject, sample_or_code: str, reviewer: str, *, break_stale: bool = False,
             reopen: bool = False) -> ReadSession:
        project.reload()
        entry = project.entry(sample_or_code)
        label = project.label(entry.sample)
        rd = entry.read_of(reviewer)
        if rd is None:
            who = ", ".join(f"read {r.read}: {r.reviewer}" for r in entry.reads) or "nobody yet"
            raise SampleError(f"{reviewer} is not assigned to read {label} ({who}).", path=project.file,
                              hint="`carspatial project assign` assigns readers.")
        other = next((r for r in entry.reads if r.reviewer != reviewer), None)
        if rd.status == DONE:
            if other is not None and other.status == DONE:
                raise SampleError(f"both reads of {label} are done; they are frozen (the other read is "
                                  "visible now, so changing yours would not be independent).", path=project.file)
            if not reopen:
                raise SampleError(f"your read {rd.read} of {label} is done.", path=project.file,
                                  hint="Pass reopen=True to change it (allowed while the other read is not done).")
        path = project.read_path(entry.sample, reviewer)
        lock = FileLock(path, owner=reviewer, purpose=f"read {rd.read} of {label}")
        lock.acquire(break_stale=break_stale)
        try:
            if path.exists():
                table = _read_h5ad(path)
                new_source = None
            else:  # written at the first save (until then it is the source, rebuilt the same way)
                row = project.manifest_row(entry.sample)
                new_source = _check_source(project, entry, row)
                table = make_working_copy(project, entry, reviewer, rd.read)
            session = cls(project, entry, reviewer, rd.read, table, lock)
            with project.updating(reviewer):
                e = project.entry(entry.sample)
                r = e.read_of(reviewer)
                if r is None:  # reassigned meanwhile
                    raise SampleError(f"{reviewer} is no longer assigned to read {label}.", path=project.file)
                if new_source is not None:
                    if e.source and e.source.get("sha256") not in (None, new_source["sha256"]):
                        raise SampleError(f"the source of {label} changed since its first read began.",
                                          path=new_source["table"])
                    e.source = e.source or new_source
                r.status = IN_PROGRESS
                r.started = r.started or _now()
                r.finished = None
            session._entry = project.entry(entry.sample)
        except BaseException:
            lock.release()
            raise
        log.info("%s opened read %d of %s", reviewer, rd.read, label)
        return session

    # ------------------------------------------------------------------ the sample for a viewer
    def sample(self, *, image: bool = True):
        """The sample to show: image and mask from the manifest (lazy), the working copy as its
        table, its ROIs, named by :attr:`label`, without clinical metadata when blinded."""
        from ..model import Sample

        src = read_source(self.project, self._entry)
        meta = {} if self.project.blinding else src.public_metadata()
        return Sample(name=self.label, image=list(src.image) if image else [],
                      channel_names=list(src.channel_names), pixel_size_um=src.pixel_size_um,
                      labels=src.labels, table=self.table, rois=self.curation.rois, metadata=meta,
                      paths={"table": os.fspath(self.path)})

    def progress(self) -> dict:
        """The curation's progress (reviewed cells, per ROI)."""
        return self.curation.progress()

    # ------------------------------------------------------------------ saving
    def _check_open(self) -> None:
        if self.closed:
            raise SampleError(f"the read of {self.label} by {self.reviewer} is closed.", path=self.path)

    def save(self, *, _done: bool = False) -> Path:
        """Write the working copy (atomic), refresh the lock and record the progress.

        Raises
        ------
        LockError
            The lock was broken by someone else meanwhile (nothing is written; save elsewhere).
        """
        self._check_open()
        self._lock.refresh()
        _write_wc(self.table, self.path)
        frac = float(self.table.obs[REVIEWED_KEY].to_numpy(bool).mean()) if self.table.n_obs else 0.0
        with self.project.updating(self.reviewer):
            r = self.project.entry(self._entry.sample).read_of(self.reviewer)
            if r is not None:
                r.progress = round(frac, 4)
                if _done:
                    r.status = DONE
                    r.finished = _now()
        return self.path

    def finish(self) -> None:
        """Save, mark this read ``done`` and release the lock."""
        self._check_open()
        self.save(_done=True)
        self._release()
        log.info("%s finished read %d of %s", self.reviewer, self.read_number, self.label)

    def __repr__(self) -> str:
        return f"ReadSession({self.label!r}, read {self.read_number} by {self.reviewer}, {self.table.n_obs} cells)"


# =========================================================================== revealing reads
def _statuses(entry: SampleEntry) -> str:
    return ", ".join(f"{r.reviewer}: {r.status.replace('_', ' ')}" for r in sorted(entry.reads, key=lambda r: r.read))


def _require_both_done(project: ReviewProject, entry: SampleEntry, what: str) -> None:
    if not entry.reads_done:
        raise RevealError(f"{what} of {project.label(entry.sample)} stays hidden until both reads are done "
                          f"({_statuses(entry) or 'no readers assigned'}).", path=project.file,
                          hint="Independent reads: neither reader sees the other's calls before both are done.")


def read_table(project: ReviewProject, sample_or_code: str, reviewer: str, *, requester: str):
    """One reader's working copy (freshly read from disk; changing it changes nothing).

    Raises
    ------
    RevealError
        ``requester`` is not ``reviewer`` and the sample's reads are not both done.
    """
    project.reload()
    entry = project.entry(sample_or_code)
    if entry.read_of(reviewer) is None:
        raise SampleError(f"{reviewer} does not read {project.label(entry.sample)}.", path=project.file)
    if requester != reviewer:
        _require_both_done(project, entry, f"the read of {reviewer}")
    path = project.read_path(entry.sample, reviewer)
    if not path.exists():
        raise SampleError(f"{reviewer} has not started reading {project.label(entry.sample)}.", path=path)
    return _read_h5ad(path)


@dataclass
class ReadPair:
    """Both reads of one sample side by side (available once both are done).

    Attributes
    ----------
    table
        The working copy's cells with, per reader ``r``, ``<type>_read_<r>`` (the call: the
        curated type, or ``"(excluded)"`` for an excluded cell), ``exclude_reason_read_<r>`` and
        ``reviewed_read_<r>``; ``<type>`` is the start column.
    readers
        (read 1, read 2) reviewer ids.
    call_keys
        ``{reviewer: column}``.
    rois
        Each reader's ROIs.
    logs
        Each reader's audit trail.
    """

    sample: str
    code: str
    label: str
    readers: tuple[str, str]
    start_key: str
    table: object
    call_keys: dict[str, str]
    rois: dict[str, list] = field(default_factory=dict)
    logs: dict[str, pd.DataFrame] = field(default_factory=dict)
    pixel_size_um: float | None = None


def _call_column(adata, start_key: str) -> pd.Categorical:
    cur_key = curated_key_for(start_key)
    cur = adata.obs[cur_key] if cur_key in adata.obs else adata.obs[start_key]
    vals = cur.astype(object).where(cur.notna(), None).to_numpy().copy()
    exc = adata.obs[EXCLUDED_KEY].to_numpy(bool) if EXCLUDED_KEY in adata.obs else np.zeros(adata.n_obs, bool)
    vals[exc] = EXCLUDED_CALL
    cats = [str(c) for c in (cur.cat.categories if isinstance(cur.dtype, pd.CategoricalDtype) else pd.unique(cur.dropna()))]
    if exc.any() and EXCLUDED_CALL not in cats:
        cats.append(EXCLUDED_CALL)
    return pd.Categorical(vals, categories=cats)


def read_pair(project: ReviewProject, sample_or_code: str) -> ReadPair:
    """Both reads of a sample (see :class:`ReadPair`).

    Raises
    ------
    RevealError
        The reads are not both done.
    """
    project.reload()
    entry = project.entry(sample_or_code)
    _require_both_done(project, entry, "the reads")
    r1, r2 = entry.readers
    tabs = {r: _read_h5ad(project.read_path(entry.sample, r)) for r in (r1, r2)}
    a, b = tabs[r1], tabs[r2]
    ida, idb = instance_ids(a), instance_ids(b)
    if not np.array_equal(ida, idb):
        raise SampleError(f"the two working copies of {project.label(entry.sample)} hold different cells "
                          f"({len(ida)} vs {len(idb)}).", path=project.read_path(entry.sample, r2))
    start_key = str(((a.uns.get(UNS_KEY) or {}).get("review") or {}).get("start_key") or base_type_column(a))
    base = a.copy()
    drop = [c for c in (curated_key_for(start_key), EXCLUDED_KEY, EXCLUDE_REASON_KEY, REVIEWED_KEY, ROI_KEY,
                        ROI_CLASS_KEY) if c in base.obs]
    base.obs = base.obs.drop(columns=drop)
    for k in (ROI_UNS_KEY, edit_log.EDIT_LOG_KEY, colors_key(curated_key_for(start_key))):
        base.uns.pop(k, None)
    keys = {}
    for r, t in tabs.items():
        k = read_key(start_key, r)
        keys[r] = k
        base.obs[k] = _call_column(t, start_key)
        reason = t.obs[EXCLUDE_REASON_KEY] if EXCLUDE_REASON_KEY in t.obs else pd.Series([None] * t.n_obs)
        base.obs[f"{EXCLUDE_REASON_KEY}_read_{r}"] = pd.Categorical(np.asarray(reason.astype(object)))
        base.obs[f"{REVIEWED_KEY}_read_{r}"] = (t.obs[REVIEWED_KEY].to_numpy(bool) if REVIEWED_KEY in t.obs
                                                else np.zeros(t.n_obs, bool))
    meta = dict(base.uns.get(UNS_KEY) or {})
    meta["review"] = {k: v for k, v in dict(meta.get("review") or {}).items() if k not in ("reviewer", "read")}
    base.uns[UNS_KEY] = meta
    from ..model import pixel_size_um

    return ReadPair(sample=entry.sample, code=entry.code, label=project.label(entry.sample), readers=(r1, r2),
                    start_key=start_key, table=base, call_keys=keys,
                    rois={r: rois_from_frame(t.uns.get(ROI_UNS_KEY)) for r, t in tabs.items()},
                    logs={r: edit_log.get_log(t) for r, t in tabs.items()},
                    pixel_size_um=pixel_size_um(a))
