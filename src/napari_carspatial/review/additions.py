"""Samples appended to the cohort manifest after the review project was made.

:func:`add_samples` (``carspatial project add-samples PROJECT``) adds them to the project file and
assigns them like the samples already there: the same readers and adjudicator, each new sample
given the pair of readers with the fewest reads so far (read 1 to the one with fewer first reads),
so the load stays balanced, and the adjudicator with the fewest adjudications. Their codes are made
with the project's salt (unique among the codes already given). Samples that left the manifest are
reported, never removed (their reads are kept).

:func:`add_samples_from` (the Project dock's "Add samples…", ``carspatial project add-samples
PROJECT --from NEW.csv``) takes the new samples from another manifest: its rows are validated
(columns, timepoints, files), appended to the project's cohort manifest (atomically, under a lock,
only if the whole manifest stays valid) and added as above. A sample already in the project is
named and left alone.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field

from ..model import SampleError
from .entries import SampleEntry, _codes, _parse_due, check_reviewer_id

log = logging.getLogger(__name__)


@dataclass
class AddedSamples:
    """What :func:`add_samples` did.

    Attributes
    ----------
    added
        ``{sample id: code}`` of the samples added (manifest order).
    assigned
        ``{sample id: (read 1, read 2, adjudicator)}``; empty when the project has no assignments
        to follow and no ``readers`` were given (assign them later).
    missing
        Samples of the project that are no longer in the manifest (kept in the project).
    already
        Samples asked for that are in the project already (:func:`add_samples_from`; not added
        again, nothing of them changed).
    appended
        Samples whose rows :func:`add_samples_from` appended to the project's cohort manifest.
    """

    added: dict[str, str] = field(default_factory=dict)
    assigned: dict[str, tuple] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a person: how many samples were added and assigned, and which asked-for
        samples are in the project already. New samples are counted, not named (with blinding
        on, naming them next to their codes would unblind them).

        Returns
        -------
        str
            E.g. ``"2 samples added, assigned like the others."`` or ``"P01-pre is in the
            project already; not added."``.
        """
        parts = []
        n = len(self.added)
        if n:
            parts.append(f"{n} sample{'s' if n != 1 else ''} added, "
                         + ("assigned like the others" if self.assigned else
                            "not assigned yet (the project has no assignments to follow: assign them)"))
        if self.already:
            names = ", ".join(self.already)
            one = len(self.already) == 1
            parts.append(f"{names} {'is' if one else 'are'} in the project already; not added")
        if not parts:
            parts.append("no new samples to add")
        return "; ".join(parts) + "."


def _loads(project) -> tuple[Counter, Counter, Counter]:
    """Reads, first reads and adjudications per reviewer over the project's samples."""
    reads, firsts, adjs = Counter(), Counter(), Counter()
    for e in project.samples.values():
        for r in e.reads:
            reads[r.reviewer] += 1
            firsts[r.reviewer] += r.read == 1
        if e.adjudication.reviewer:
            adjs[e.adjudication.reviewer] += 1
    return reads, firsts, adjs


def plan_assignments(project, new: list[str], *, readers=None, adjudicator=None) -> dict[str, tuple]:
    """Readers and adjudicator of each new sample (see the module docstring); ``new`` in the order
    they are given (code order, unrelated to patient or timepoint)."""
    reads, firsts, adjs = _loads(project)
    pool = list(dict.fromkeys(readers)) if readers else sorted(reads)
    adj_pool = [adjudicator] if adjudicator else sorted(adjs)
    if readers and len(pool) < 2:
        raise SampleError(f"give at least two readers, got {pool}.", path=project.file)
    if not pool:   # nothing assigned yet and nothing given: the samples wait for `assign`
        return {}
    if len(pool) < 2:
        raise SampleError(f"the project's samples have only one reader ({pool[0]}); give the readers "
                          "(--reader A --reader B).", path=project.file)
    bad = [a for a in adj_pool if a in pool]
    if adjudicator and bad:
        raise SampleError(f"the adjudicator {adjudicator!r} cannot also be a reader.", path=project.file)
    out = {}
    for s in new:
        a, b = min(itertools.combinations(pool, 2), key=lambda p: (reads[p[0]] + reads[p[1]],
                                                                  max(reads[p[0]], reads[p[1]]), pool.index(p[0])))
        if (firsts[b], reads[b]) < (firsts[a], reads[a]):
            a, b = b, a
        cands = [x for x in adj_pool if x not in (a, b)]
        adj = min(cands, key=lambda x: (adjs[x], adj_pool.index(x))) if cands else None
        reads[a] += 1
        reads[b] += 1
        firsts[a] += 1
        if adj:
            adjs[adj] += 1
        out[s] = (a, b, adj)
    return out


def _check_reviewers(project, readers, adjudicator) -> None:
    for rid in [*(readers or []), *([adjudicator] if adjudicator else [])]:
        check_reviewer_id(rid, path=project.file)
        if rid not in project.reviewers:
            raise SampleError(f"reviewer {rid!r} is not in the project (reviewers: {', '.join(project.reviewers)}); "
                              "a typo?", path=project.file, hint="Register them with `carspatial project assign`.")


def add_samples(project, *, samples=None, readers=None, adjudicator: str | None = None, due=None) -> AddedSamples:
    """Add the cohort manifest's samples that are not in the project yet.

    Parameters
    ----------
    project
        The :class:`~napari_carspatial.review.project.ReviewProject`.
    samples
        Only these new sample ids (default: every manifest sample not in the project).
    readers
        The readers to balance the new samples over (default: the project's readers).
    adjudicator
        The new samples' adjudicator (default: the project's adjudicator with the fewest
        adjudications who does not read the sample).
    due
        Due date of the new samples (default: the project's).

    Returns
    -------
    AddedSamples

    Raises
    ------
    SampleError
        The manifest cannot be read, a given sample is not in it (or is in the project already),
        an unknown reviewer id, or the adjudicator is a reader.
    """
    from ..cohort.manifest import read_manifest
    from .entries import AdjudicationEntry, ReadEntry

    due = _parse_due(due)
    project.reload()
    man = read_manifest(project.manifest_path, check_files=False)
    in_manifest = list(man.samples)
    new = [s for s in in_manifest if s not in project.samples]
    if samples is not None:
        want = [str(s) for s in ([samples] if isinstance(samples, str) else samples)]
        unknown = [s for s in want if s not in in_manifest]
        there = [s for s in want if s in project.samples]
        if unknown or there:
            parts = ([f"not in the manifest: {', '.join(unknown)}"] if unknown else []) + (
                [f"in the project already: {', '.join(there)}"] if there else [])
            raise SampleError("cannot add " + "; ".join(parts) + ".", path=project.manifest_path)
        new = [s for s in new if s in want]
    _check_reviewers(project, readers, adjudicator)
    res = AddedSamples(missing=[s for s in project.samples if s not in in_manifest])
    for s in res.missing:
        log.warning("sample %s of the review project is no longer in the manifest %s (kept in the project)",
                    project.label(s), project.manifest_path)
    from ..io.provenance import sha256_file

    with project.updating("add-samples"):
        new = [s for s in new if s not in project.samples]   # re-read under the lock
        codes = _codes(new, project.code_salt, taken={e.code for e in project.samples.values()})
        order = sorted(new, key=lambda s: codes[s])
        plan = plan_assignments(project, order, readers=readers, adjudicator=adjudicator)
        for s in new:
            e = SampleEntry(s, codes[s], due)
            if s in plan:
                a, b, adj = plan[s]
                e.reads = [ReadEntry(1, a), ReadEntry(2, b)]
                e.adjudication = AdjudicationEntry(adj)
                res.assigned[s] = plan[s]
            project.samples[s] = e
            res.added[s] = codes[s]
        project.manifest_sha256 = sha256_file(project.manifest_path)
    project._manifest = None   # the cached manifest is the old one
    log.info("review project %s: %d sample(s) added from %s", project.file, len(res.added), project.manifest_path)
    return res


# =========================================================================== from another manifest
def _canonical(col) -> str:
    from ..cohort.manifest import _ALIASES

    c = str(col).strip().lower()
    return _ALIASES.get(c, c)


def _cell(v) -> str:
    """A manifest value as text ("" for a missing one)."""
    import pandas as pd

    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def _path_text(p: str, folder) -> str:
    """A path written into the manifest at ``folder``: relative when under it, else absolute."""
    import os
    from pathlib import Path

    p = Path(p)
    try:
        return p.resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return os.fspath(p.resolve())


def _new_rows(source, sids: list[str], folder) -> list[dict]:
    """The source manifest's rows of ``sids`` as text, canonical column names, paths for ``folder``."""
    from ..cohort.manifest import PATH_COLUMNS

    rows = []
    for s in sids:
        r = source.row_dict(s)
        out = {}
        for k, v in r.items():
            if k in ("day", "responder"):   # derived by read_manifest, not manifest columns
                continue
            if k in PATH_COLUMNS and v:
                out[k] = _path_text(v, folder)
            elif k in ("crs_grade", "icans_grade") and _cell(v):
                out[k] = str(int(v))
            else:
                out[k] = _cell(v)
        rows.append(out)
    return rows


def _validate(tmp) -> None:
    """The manifest written to ``tmp`` is valid (its warnings, e.g. a patient without a pair, were
    said when the manifests were read; they would name the temporary file here)."""
    from ..cohort.manifest import read_manifest

    mlog = logging.getLogger("napari_carspatial.cohort.manifest")
    was = mlog.disabled
    mlog.disabled = True
    try:
        read_manifest(tmp, check_files=False)
    finally:
        mlog.disabled = was


def _append_rows(path, rows: list[dict]) -> None:
    """Append ``rows`` to the manifest at ``path`` (CSV / TSV / YAML), keeping its rows and column
    names as they are; the result is validated before it replaces the file."""
    from pathlib import Path

    import pandas as pd

    from ..model.atomic import atomic_write

    path = Path(path)
    suf = path.suffix.lower()
    if suf in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        target = data.setdefault("samples", []) if isinstance(data, dict) else data
        names = {_canonical(k): k for d in target if isinstance(d, dict) for k in d}
        for r in rows:
            target.append({names.get(k, k): v for k, v in r.items() if v != ""})

        def write(tmp):
            tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
            _validate(tmp)   # the whole manifest stays valid
    else:
        sep = "," if suf == ".csv" else "\t"
        old = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
        names = {_canonical(c): c for c in old.columns}
        extra = [k for r in rows for k, v in r.items() if k not in names and v != ""]   # no empty new columns
        cols = list(old.columns) + list(dict.fromkeys(extra))
        new = pd.DataFrame([{names.get(k, k): v for k, v in r.items() if k in names or k in extra} for r in rows],
                           columns=cols).fillna("")
        merged = pd.concat([old.reindex(columns=cols, fill_value=""), new], ignore_index=True)

        def write(tmp):
            merged.to_csv(tmp, sep=sep, index=False)
            _validate(tmp)
    try:
        atomic_write(path, write)
    except SampleError as err:
        raise SampleError(f"the new samples would make the cohort manifest invalid ({err.problem}); nothing "
                          "was changed.", path=path) from None
    except OSError as err:
        raise SampleError(f"cannot write the cohort manifest ({err.strerror or err}); nothing was changed.",
                          path=path, hint="Is its folder writable?") from None


def add_samples_from(project, source, *, readers=None, adjudicator: str | None = None, due=None) -> AddedSamples:
    """Add the samples of another cohort manifest (``source``) to the project.

    Each sample of ``source`` that is not in the project is appended to the project's cohort
    manifest (unless it is there already), then added and assigned as :func:`add_samples` does
    (new code, balanced readers, the adjudicator). Samples already in the project are listed in
    :attr:`AddedSamples.already` and left alone. ``source`` may be the project's own manifest
    (after rows were appended to it by hand): then only its new samples are added.

    Parameters
    ----------
    project
        The :class:`~napari_carspatial.review.project.ReviewProject`.
    source
        A cohort manifest (CSV / TSV / YAML; see ``docs/cohorts.md``) with the samples to add;
        validated with its files (relative paths are resolved against its folder).
    readers
        The readers to balance the new samples over (default: the project's readers).
    adjudicator
        The new samples' adjudicator (default: as :func:`add_samples`).
    due
        Due date of the new samples (default: the project's).

    Returns
    -------
    AddedSamples
        What was added (:meth:`AddedSamples.summary` says it in one line).

    Raises
    ------
    SampleError
        ``source`` is not a valid manifest (every problem listed, missing files included), its
        rows would make the project's manifest invalid (e.g. a second ``pre`` sample of a
        patient; nothing is written), an unknown reviewer, or the project's manifest is locked.
    """
    from pathlib import Path

    from ..cohort.manifest import read_manifest
    from .lock import FileLock

    project.reload()
    src = read_manifest(source, check_files=True)
    target = project.manifest_path
    if not target.is_file():
        raise SampleError("the project's cohort manifest is missing.", path=target,
                          hint=f"It is named in {project.file}; put it back or edit 'manifest:' there.")
    same = Path(src.path).resolve() == target.resolve()
    already = [s for s in src.samples if s in project.samples]
    todo = [s for s in src.samples if s not in project.samples]
    appended: list[str] = []
    if todo:   # refused readers or assignments refuse before the manifest is touched
        _check_reviewers(project, readers, adjudicator)
        plan_assignments(project, todo, readers=readers, adjudicator=adjudicator)
    if todo and not same:
        lock = FileLock(target, owner="add-samples", purpose="cohort manifest update", stale_after_s=300.0)
        try:
            lock.acquire(wait_s=10.0, break_stale=True)
        except OSError as err:   # a read-only folder: no lock file either
            raise SampleError(f"cannot write next to the cohort manifest ({err.strerror or err}); nothing was "
                              "changed.", path=target, hint="Is its folder writable?") from None
        try:
            in_target = set(read_manifest(target, check_files=False).samples)
            appended = [s for s in todo if s not in in_target]
            if appended:
                _append_rows(target, _new_rows(src, appended, target.parent))
        finally:
            lock.release()
        project._manifest = None
    res = AddedSamples()
    if todo:
        res = add_samples(project, samples=todo, readers=readers, adjudicator=adjudicator, due=due)
    res.already = [] if same else already
    res.appended = appended
    if appended:
        log.info("cohort manifest %s: %d row(s) appended from %s", target, len(appended), src.path)
    return res


__all__ = ["AddedSamples", "add_samples", "add_samples_from", "plan_assignments"]
