"""The review project: a folder with a project file, built from a cohort manifest.

Layout::

    PROJECT/
      project.yaml                 the project file (below); project.yaml.lock while it is updated
      reads/<code>/<reviewer>.h5ad one working copy per reader (never the source table)
      adjudication/<code>.h5ad     both reads side by side plus the adjudicated column
      export/                      final tables with provenance (carspatial project export)

The project file is plain YAML (``format_version: 1``)::

    format: napari-carspatial review project
    format_version: 1
    name: CART-PANC-01 double read
    created: '2025-06-01T09:00:00+00:00'
    manifest: ../cohort/manifest.csv       # relative to the project folder when possible
    manifest_sha256: 9f2c...
    type_key: cell_type                    # column the reads start from (null: detected per sample)
    blinding: true                         # reviewers see coded ids only
    code_salt: 5e0c2a61d1b94c7f            # makes the codes; keep it with the project
    due: '2025-07-01'                      # default due date of every sample
    reviewers:
    - {id: alice, name: Dr A. Example}
    samples:
    - sample: P01-pre
      code: RV-7K3F9Q
      due: null                            # overrides the project's due date
      reads:
      - {read: 1, reviewer: alice, status: done, started: '...', finished: '...', progress: 0.42}
      - {read: 2, reviewer: bob, status: in_progress, started: '...', finished: null, progress: 0.1}
      adjudication: {reviewer: carol, status: not_started, started: null, finished: null}
      source: {table: /data/P01-pre.h5ad, size: 123456, sha256: ...}   # recorded at the first read

Statuses per sample and reviewer: ``not_started``, ``in_progress``, ``done`` (reads) and
``adjudicated`` (the adjudicator's entry). The sample's own status is derived: ``not_started``,
``in_progress`` (a read is not done), ``done`` (both reads done, adjudication pending or not
needed) or ``adjudicated``.

Every change of the project file is a read-modify-write under the project lock (the file is
re-read, changed and written atomically), so two reviewers finishing at once lose nothing.

The entries and statuses are in :mod:`.entries`, assigning in :mod:`.assign`
(:class:`~.assign.AssignmentsMixin`); their names are re-exported here.

Headless: no napari, no Qt.

One module (575 lines) because :class:`ReviewProject` is one read-modify-write object on the project
file under its lock, and its loader and initialiser write and read the same YAML schema documented
above; the entries and assignment logic are already in :mod:`.entries` and :mod:`.assign`.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..model import SampleError
from ..model.atomic import atomic_write_text
from .assign import AssignmentsMixin
from .entries import (  # noqa: F401 - re-exported: the entries and statuses lived here
    _ID,
    ADJUDICATED,
    ADJUDICATION_STATUSES,
    DONE,
    FORMAT,
    FORMAT_VERSION,
    IN_PROGRESS,
    NOT_STARTED,
    PROJECT_FILE,
    READ_STATUSES,
    STATUSES,
    AdjudicationEntry,
    ReadEntry,
    RevealError,
    Reviewer,
    SampleEntry,
    _codes,
    _now,
    _parse_due,
    _sha256,
    check_reviewer_id,
    sample_code,
)
from .lock import FileLock

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)


# =========================================================================== the project
class ReviewProject(AssignmentsMixin):
    """A review project (see the module docstring). Create with :func:`init_project`, open with
    :func:`load_project`.

    Attributes
    ----------
    folder
        The project folder.
    name
        From the project file.
    created
        From the project file.
    due
        From the project file.
    blinding
        From the project file.
    type_key
        From the project file.
    reviewers
        ``{id: Reviewer}``.
    samples
        ``{sample id: SampleEntry}`` in manifest order.

    Parameters
    ----------
    folder
        The project folder.
    data
        The parsed project file (``None``: an empty project; use :func:`load_project`).
    """

    def __init__(self, folder: str | os.PathLike, data: dict | None = None):
        self.folder = Path(folder)
        self._manifest = None
        if data is not None:
            self._load_dict(data)

    # ------------------------------------------------------------------ file
    @property
    def file(self) -> Path:
        return self.folder / PROJECT_FILE

    @property
    def manifest_path(self) -> Path:
        p = Path(self._manifest_ref)
        return p if p.is_absolute() else (self.folder / p).resolve()

    @property
    def manifest(self):
        """The cohort manifest (:class:`~napari_carspatial.cohort.manifest.Manifest`)."""
        if self._manifest is None:
            from ..cohort.manifest import read_manifest

            if not self.manifest_path.is_file():
                raise SampleError("the project's cohort manifest is missing.", path=self.manifest_path,
                                  hint=f"It is named in {self.file}; put it back or edit 'manifest:' there.")
            self._manifest = read_manifest(self.manifest_path, check_files=False)
            if self.manifest_sha256 and _sha256(self.manifest_path) != self.manifest_sha256:
                new = [s for s in self._manifest.samples if s not in self.samples]
                log.warning("%s changed since the review project was made%s", self.manifest_path,
                            f"; {len(new)} new sample(s) are not in the project" if new else "")
        return self._manifest

    def _load_dict(self, d: dict) -> None:
        problems = []
        where = self.file
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise SampleError(f"not a review project file (expected 'format: {FORMAT}').", path=where)
        ver = d.get("format_version")
        if not isinstance(ver, int) or ver < 1:
            raise SampleError(f"format_version {ver!r} is not valid (expected {FORMAT_VERSION}).", path=where)
        if ver > FORMAT_VERSION:
            raise SampleError(f"format_version {ver} was written by a newer napari-carspatial "
                              f"(this one reads up to {FORMAT_VERSION}).", path=where, hint="Upgrade napari-carspatial.")
        self.format_version = ver
        self.name = str(d.get("name") or self.folder.name)
        self.created = str(d.get("created") or "")
        self._manifest_ref = str(d.get("manifest") or "")
        if not self._manifest_ref:
            problems.append("no 'manifest:' (the cohort manifest the project was built from)")
        self.manifest_sha256 = str(d.get("manifest_sha256") or "")
        self.type_key = d.get("type_key") or None
        self.blinding = bool(d.get("blinding", True))
        #: the reads start without the table's cell-type calls (readers call every cell themselves)
        self.hide_original_calls = bool(d.get("hide_original_calls", False))
        self.code_salt = str(d.get("code_salt") or "")
        if not self.code_salt:
            problems.append("no 'code_salt:' (it makes the blinded codes)")
        self.due = _parse_due(d.get("due"), path=where, where="project: ")
        self.reviewers: dict[str, Reviewer] = {}
        for r in d.get("reviewers") or []:
            if not isinstance(r, dict) or "id" not in r:
                problems.append(f"reviewer entry {r!r} needs an 'id'")
                continue
            rid = str(r["id"])
            if not _ID.match(rid):
                problems.append(f"reviewer id {rid!r} is not allowed (letters, digits, '.', '_', '-')")
            self.reviewers[rid] = Reviewer(rid, str(r.get("name") or ""))
        self.samples: dict[str, SampleEntry] = {}
        codes = set()
        for i, s in enumerate(d.get("samples") or []):
            w = f"samples[{i}]"
            if not isinstance(s, dict) or "sample" not in s or "code" not in s:
                problems.append(f"{w}: needs 'sample' and 'code'")
                continue
            sid, code = str(s["sample"]), str(s["code"])
            if sid in self.samples:
                problems.append(f"{w}: duplicate sample {sid!r}")
                continue
            if code in codes:
                problems.append(f"{w}: duplicate code {code!r}")
            codes.add(code)
            reads = []
            for r in s.get("reads") or []:
                st = r.get("status", NOT_STARTED)
                if st not in READ_STATUSES:
                    problems.append(f"{w} ({sid}): read status {st!r} not one of {', '.join(READ_STATUSES)}")
                if r.get("reviewer") not in self.reviewers:
                    problems.append(f"{w} ({sid}): reader {r.get('reviewer')!r} is not in 'reviewers'")
                reads.append(ReadEntry(int(r.get("read", len(reads) + 1)), str(r.get("reviewer")), st,
                                       r.get("started"), r.get("finished"), r.get("progress")))
            if len(reads) > 2:
                problems.append(f"{w} ({sid}): {len(reads)} reads (a sample has a first and a second read)")
            a = s.get("adjudication") or {}
            ast = a.get("status", NOT_STARTED)
            if ast not in ADJUDICATION_STATUSES:
                problems.append(f"{w} ({sid}): adjudication status {ast!r} not one of {', '.join(ADJUDICATION_STATUSES)}")
            if a.get("reviewer") is not None and a.get("reviewer") not in self.reviewers:
                problems.append(f"{w} ({sid}): adjudicator {a.get('reviewer')!r} is not in 'reviewers'")
            due = None
            try:
                due = _parse_due(s.get("due"), path=where, where=f"{w} ({sid}): ")
            except SampleError as err:
                problems.append(err.problem)
            self.samples[sid] = SampleEntry(sid, code, due, reads,
                                            AdjudicationEntry(a.get("reviewer"), ast, a.get("started"), a.get("finished")),
                                            s.get("source"))
        if problems:
            raise SampleError(f"{len(problems)} problem(s) in the project file:\n  - " + "\n  - ".join(problems),
                              path=where)

    def to_dict(self) -> dict:
        """The project file content (plain types)."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "created": self.created,
            "manifest": self._manifest_ref, "manifest_sha256": self.manifest_sha256, "type_key": self.type_key,
            "blinding": self.blinding, "hide_original_calls": self.hide_original_calls,
            "code_salt": self.code_salt, "due": self.due,
            "reviewers": [{"id": r.id, "name": r.name} for r in self.reviewers.values()],
            "samples": [{
                "sample": e.sample, "code": e.code, "due": e.due,
                "reads": [{"read": r.read, "reviewer": r.reviewer, "status": r.status, "started": r.started,
                           "finished": r.finished, "progress": r.progress} for r in sorted(e.reads, key=lambda r: r.read)],
                "adjudication": {"reviewer": e.adjudication.reviewer, "status": e.adjudication.status,
                                 "started": e.adjudication.started, "finished": e.adjudication.finished},
                "source": e.source,
            } for e in self.samples.values()],
        }

    def _write(self) -> None:
        import yaml

        text = ("# napari-carspatial review project; see docs/review.md. Edit with `carspatial project`.\n"
                + yaml.dump(self.to_dict(), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                            allow_unicode=True, width=120))
        try:
            atomic_write_text(self.file, text)
        except OSError as err:
            raise SampleError(f"cannot write the project file ({err}).", path=self.file,
                              hint="Is the folder writable?") from err

    def reload(self) -> ReviewProject:
        """Re-read the project file (other reviewers may have changed it)."""
        self._load_dict(_read_yaml(self.file))
        return self

    @contextmanager
    def updating(self, who: str = "project"):
        """Read-modify-write of the project file under its lock: re-read, yield, write."""
        # a short critical section: a lock older than 5 min (or of a dead process) is broken
        lock = FileLock(self.file, owner=who, purpose="project file update", stale_after_s=300.0)
        lock.acquire(wait_s=10.0, break_stale=True)
        try:
            self.reload()
            yield self
            self._write()
        finally:
            lock.release()

    # ------------------------------------------------------------------ samples and codes
    def entry(self, sample_or_code: str) -> SampleEntry:
        """The entry of a sample, given its id or its blinded code."""
        key = str(sample_or_code)
        if key in self.samples:
            return self.samples[key]
        for e in self.samples.values():
            if e.code == key:
                return e
        raise SampleError(f"no sample or code {key!r} in the project.", path=self.file,
                          hint="`carspatial project status` lists them.")

    def label(self, sample_or_code: str) -> str:
        """What a reviewer sees: the code when blinding is on, else the sample id."""
        e = self.entry(sample_or_code)
        return e.code if self.blinding else e.sample

    def due_of(self, sample_or_code: str) -> str | None:
        e = self.entry(sample_or_code)
        return e.due or self.due

    def manifest_row(self, sample_or_code: str) -> dict:
        e = self.entry(sample_or_code)
        man = self.manifest
        if e.sample not in man.table.index:
            raise SampleError(f"sample {e.sample!r} of the project is no longer in the cohort manifest.",
                              path=man.path)
        return man.row_dict(e.sample)

    def read_path(self, sample_or_code: str, reviewer: str) -> Path:
        """The working copy of one reader."""
        e = self.entry(sample_or_code)
        return self.folder / "reads" / e.code / f"{check_reviewer_id(reviewer)}.h5ad"

    def adjudication_path(self, sample_or_code: str) -> Path:
        return self.folder / "adjudication" / f"{self.entry(sample_or_code).code}.h5ad"

    # reviewers and assignments: AssignmentsMixin (review/assign.py)

    # ------------------------------------------------------------------ status
    def status(self, *, reviewer: str | None = None, unblind: bool = False) -> pd.DataFrame:
        """One row per sample: label (code when blinded, unless ``unblind``), readers and their
        statuses and progress, adjudicator and status, the sample status, due date and overdue.

        ``reviewer`` keeps the samples that reviewer reads or adjudicates.
        """
        today = date.today().isoformat()
        rows = []
        blinded = self.blinding and not unblind
        # blinded: in code order, so the order of the rows does not give away the manifest's
        # (patient, timepoint) order
        entries = sorted(self.samples.values(), key=lambda e: e.code) if blinded else self.samples.values()
        for e in entries:
            if reviewer and reviewer not in e.readers and e.adjudication.reviewer != reviewer:
                continue
            r = dict.fromkeys(("read1", "read1_status", "read1_progress", "read2", "read2_status", "read2_progress"))
            for rd in e.reads:
                r[f"read{rd.read}"] = rd.reviewer
                r[f"read{rd.read}_status"] = rd.status
                r[f"read{rd.read}_progress"] = rd.progress
            due = e.due or self.due
            rows.append({"sample": e.sample if (unblind or not self.blinding) else e.code, "code": e.code, **r,
                         "adjudicator": e.adjudication.reviewer, "adjudication_status": e.adjudication.status,
                         "status": e.status, "due": due,
                         "overdue": bool(due and due < today and e.status not in (DONE, ADJUDICATED))})
        return pd.DataFrame(rows, columns=["sample", "code", "read1", "read1_status", "read1_progress", "read2",
                                           "read2_status", "read2_progress", "adjudicator", "adjudication_status",
                                           "status", "due", "overdue"])

    def assigned_to(self, reviewer: str) -> pd.DataFrame:
        """What one reviewer has to do: ``label, role (read 1 / read 2 / adjudication), status,
        ready (an adjudication is ready when both reads are done), due`` (blinded labels)."""
        rows = []
        for e in self.samples.values():
            for rd in e.reads:
                if rd.reviewer == reviewer:
                    rows.append({"label": self.label(e.sample), "role": f"read {rd.read}", "status": rd.status,
                                 "ready": True, "due": e.due or self.due})
            if e.adjudication.reviewer == reviewer:
                rows.append({"label": self.label(e.sample), "role": "adjudication",
                             "status": e.adjudication.status, "ready": e.reads_done, "due": e.due or self.due})
        return pd.DataFrame(rows, columns=["label", "role", "status", "ready", "due"])

    def next_for(self, reviewer: str) -> str | None:
        """The label of what ``reviewer`` should open next: work in progress first, then the
        earliest due, then code order; None when nothing is left."""
        df = self.assigned_to(reviewer)
        df = df[df["ready"] & ~df["status"].isin([DONE, ADJUDICATED])]
        if df.empty:
            return None
        df = df.assign(_p=(df["status"] != IN_PROGRESS).astype(int), _d=df["due"].fillna("9999-12-31"))
        return str(df.sort_values(["_p", "_d", "label"]).iloc[0]["label"])

    # ------------------------------------------------------------------ reads, agreement, adjudication
    def start_read(self, sample_or_code: str, reviewer: str, *, break_stale: bool = False,
                   reopen: bool = False):
        """Open ``reviewer``'s read of a sample for writing (see :class:`~.reads.ReadSession`)."""
        from .reads import ReadSession

        return ReadSession.open(self, sample_or_code, reviewer, break_stale=break_stale, reopen=reopen)

    def read_table(self, sample_or_code: str, reviewer: str, *, requester: str):
        """One reader's working copy (read-only copy). Readers see their own read any time; anyone
        else only once both reads of the sample are done.

        Raises
        ------
        RevealError
            The read belongs to someone else and the reads are not both done.
        """
        from .reads import read_table

        return read_table(self, sample_or_code, reviewer, requester=requester)

    def reads(self, sample_or_code: str):
        """Both reads side by side (:class:`~.reads.ReadPair`); only once both are done."""
        from .reads import read_pair

        return read_pair(self, sample_or_code)

    def sample_agreement(self, sample_or_code: str, *, n_boot: int | None = None, seed: int = 0):
        """Cell and region agreement of one sample's two reads (both done); ``n_boot`` default
        :data:`~.agreement.N_BOOT`, as everywhere the interval is reported."""
        from .agreement import N_BOOT, SampleAgreement

        return SampleAgreement.of(self.reads(sample_or_code), n_boot=N_BOOT if n_boot is None else n_boot, seed=seed)

    def trial_agreement(self, *, n_boot: int | None = None, seed: int = 0, unblind: bool = True):
        """Agreement over every sample whose reads are both done (:class:`~.agreement.TrialAgreement`)."""
        from .agreement import N_BOOT, combine_agreements

        n_boot = N_BOOT if n_boot is None else n_boot
        res = {}
        for e in self.samples.values():
            if e.reads_done:
                res[e.sample if unblind else e.code] = self.sample_agreement(e.sample, n_boot=n_boot, seed=seed)
        return combine_agreements(res, n_boot=n_boot, seed=seed)

    def start_adjudication(self, sample_or_code: str, adjudicator: str, *, break_stale: bool = False):
        """Open the adjudication of a sample (both reads done; see :class:`~.adjudication.AdjudicationSession`)."""
        from .adjudication import AdjudicationSession

        return AdjudicationSession.open(self, sample_or_code, adjudicator, break_stale=break_stale)

    def add_samples(self, *, samples=None, readers=None, adjudicator: str | None = None, due=None):
        """Add the manifest's samples that are not in the project yet, assigned like the others
        (see :func:`~.additions.add_samples`)."""
        from .additions import add_samples

        return add_samples(self, samples=samples, readers=readers, adjudicator=adjudicator, due=due)

    def add_samples_from(self, source, *, readers=None, adjudicator: str | None = None, due=None):
        """Add the samples of another cohort manifest: appended to the project's manifest (validated)
        and assigned like the others; those in the project already are named, not added (see
        :func:`~.additions.add_samples_from`)."""
        from .additions import add_samples_from

        return add_samples_from(self, source, readers=readers, adjudicator=adjudicator, due=due)

    def export(self, out=None, *, samples=None, n_boot: int | None = None, seed: int = 0):
        """Write the final tables with provenance (see :func:`~.export.export_project`)."""
        from .export import export_project

        return export_project(self, out, samples=samples, n_boot=n_boot, seed=seed)

    def __repr__(self) -> str:
        n = len(self.samples)
        counts = pd.Series([e.status for e in self.samples.values()]).value_counts().to_dict() if n else {}
        return f"ReviewProject({self.name!r}, {n} samples, {counts}, blinding={self.blinding})"


# =========================================================================== create / open
def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise SampleError("no review project file here.", path=path,
                          hint="Create one with `carspatial project init PROJECT --manifest MANIFEST`.")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = " ".join(str(err).strip().splitlines()[:2])
        raise SampleError(f"the project file is not valid YAML ({first}).", path=path) from None
    return d


def load_project(path: str | os.PathLike) -> ReviewProject:
    """Open a review project (its folder or its ``project.yaml``).

    Parameters
    ----------
    path
        The project folder or its ``project.yaml``.

    Returns
    -------
    ReviewProject
        The project.

    Raises
    ------
    SampleError
        No project file, not YAML, a newer format version, or invalid entries (every problem is
        listed).
    """
    p = Path(path)
    folder = p.parent if p.name == PROJECT_FILE or p.is_file() else p
    file = folder / PROJECT_FILE if p.is_dir() or not p.is_file() else p
    proj = ReviewProject(folder)
    proj._load_dict(_read_yaml(file))
    return proj


def init_project(folder: str | os.PathLike, manifest: str | os.PathLike, *, name: str | None = None,
                 reviewers: Iterable[str | tuple[str, str]] = (), blinding: bool = True, due: str | date | None = None,
                 type_key: str | None = None, hide_original_calls: bool = False) -> ReviewProject:
    """Create a review project from a cohort manifest.

    Parameters
    ----------
    folder
        The project folder (created; must not hold a project already).
    manifest
        Cohort manifest (CSV / YAML, see ``docs/cohorts.md``), validated with
        :func:`~napari_carspatial.cohort.manifest.read_manifest`.
    name
        Project name (default: the trials of the manifest, else the folder name).
    reviewers
        Reviewer ids (or ``(id, name)`` pairs) to register now.
    blinding
        Reviewers see a coded id only (``RV-XXXXXX``, stable per sample) and no clinical data.
    due
        Default due date (``YYYY-MM-DD``).
    type_key
        The cell-type column the reads start from (default: detected per sample).
    hide_original_calls
        The readers do not see the table's cell-type calls: every cell starts without a call (the
        classes stay offered) and each reader calls the cells themselves.

    Returns
    -------
    ReviewProject
        The new project, saved.

    Raises
    ------
    SampleError
        A project exists in ``folder`` already, the folder cannot be created, or the manifest is
        invalid.
    """
    from ..cohort.manifest import read_manifest

    folder = Path(folder)
    man = read_manifest(manifest)
    if (folder / PROJECT_FILE).exists():
        raise SampleError("a review project exists here already; not overwritten.", path=folder / PROJECT_FILE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SampleError(f"cannot create the project folder ({err}).", path=folder) from err
    mpath = Path(man.path)
    try:
        ref = os.path.relpath(mpath, folder.resolve())
    except ValueError:  # another drive (Windows)
        ref = os.fspath(mpath)
    salt = secrets.token_hex(8)
    trials = sorted({str(t) for t in man.table.get("trial", pd.Series(dtype=str)) if t})
    revs = []
    for r in reviewers:
        rid, rname = (r, "") if isinstance(r, str) else (r[0], r[1])
        revs.append({"id": check_reviewer_id(rid), "name": rname})
    codes = _codes(man.samples, salt)
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "name": name or (", ".join(trials) + " review" if trials else folder.resolve().name),
        "created": _now(), "manifest": Path(ref).as_posix(), "manifest_sha256": _sha256(mpath),
        "type_key": type_key, "blinding": bool(blinding), "hide_original_calls": bool(hide_original_calls),
        "code_salt": salt, "due": _parse_due(due),
        "reviewers": revs,
        "samples": [{"sample": s, "code": codes[s], "due": None, "reads": [], "adjudication": {}, "source": None}
                    for s in man.samples],
    }
    proj = ReviewProject(folder, data)
    proj._manifest = man
    lock = FileLock(proj.file, owner="init", purpose="project file update")
    lock.acquire(wait_s=5.0)
    try:
        if proj.file.exists():
            raise SampleError("a review project exists here already; not overwritten.", path=proj.file)
        proj._write()
    finally:
        lock.release()
    log.info("review project %s: %d samples from %s", proj.file, len(proj.samples), man.path)
    return proj
