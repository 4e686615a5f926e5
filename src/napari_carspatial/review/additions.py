"""Samples appended to the cohort manifest after the review project was made.

:func:`add_samples` (``carspatial project add-samples PROJECT``) adds them to the project file and
assigns them like the samples already there: the same readers and adjudicator, each new sample
given the pair of readers with the fewest reads so far (read 1 to the one with fewer first reads),
so the load stays balanced, and the adjudicator with the fewest adjudications. Their codes are made
with the project's salt (unique among the codes already given). Samples that left the manifest are
reported, never removed (their reads are kept).

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
    """

    added: dict[str, str] = field(default_factory=dict)
    assigned: dict[str, tuple] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


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
    for rid in [*(readers or []), *([adjudicator] if adjudicator else [])]:
        check_reviewer_id(rid, path=project.file)
        if rid not in project.reviewers:
            raise SampleError(f"reviewer {rid!r} is not in the project (reviewers: {', '.join(project.reviewers)}); "
                              "a typo?", path=project.file, hint="Register them with `carspatial project assign`.")
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


__all__ = ["AddedSamples", "add_samples", "plan_assignments"]
