"""Assigning reads and adjudications (:class:`AssignmentsMixin`, part of
:class:`~napari_carspatial.review.project.ReviewProject`): first and second readers, the
adjudicator, due dates, balanced assignment, and what happens to started work.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import itertools
import logging
import os

from ..model import SampleError
from .entries import (
    NOT_STARTED,
    AdjudicationEntry,
    ReadEntry,
    Reviewer,
    SampleEntry,
    _now,
    _parse_due,
    check_reviewer_id,
)

log = logging.getLogger(__name__)


class AssignmentsMixin:
    """Reviewers and assignments of a :class:`~napari_carspatial.review.project.ReviewProject`
    (uses its ``reviewers``, ``samples``, ``entry``, ``label``, ``updating``, ``file``, ``folder``)."""

    def add_reviewer(self, rid: str, name: str = "") -> Reviewer:
        """Add a reviewer (or update the display name of one)."""
        rid = check_reviewer_id(rid, path=self.file)
        with self.updating():
            r = self.reviewers.get(rid) or Reviewer(rid)
            if name:
                r.name = str(name)
            self.reviewers[rid] = r
        return self.reviewers[rid]

    def assign(self, samples, *, readers, adjudicator: str | None = None, due=None, force: bool = False,
               add_reviewers: bool = False) -> None:
        """Assign the first and second read (``readers = (first, second)``) and the adjudicator.

        Parameters
        ----------
        samples
            Sample ids or codes (``None``: every sample).
        readers
            Two distinct reviewer ids: read 1 and read 2. Ids that are not reviewers of the project
            are refused (a typo would register a new reader) unless ``add_reviewers`` or the
            project has no reviewers yet; then they are added.
        adjudicator
            Reviewer id (not one of the readers), or None to leave it as it is.
        due
            Due date (``YYYY-MM-DD``) of these samples, or None to leave it.
        force
            Reassign a read that has started (its working copy is kept on disk, never deleted). A
            sample whose reads change goes back to "adjudication not started": an adjudication of
            the old reads no longer applies (its file is kept, renamed ``<code>.superseded-<time>.h5ad``).
        add_reviewers
            Register reviewer ids that are not in the project yet.

        Raises
        ------
        SampleError
            Not two distinct readers, the adjudicator is a reader, an unknown reviewer id, or a
            started read would be reassigned without ``force``.
        """
        samples = [samples] if isinstance(samples, str) else samples
        readers = [check_reviewer_id(r, path=self.file) for r in readers]
        if len(readers) != 2 or readers[0] == readers[1]:
            raise SampleError(f"a sample needs two different readers (first and second read), got {readers}.")
        if adjudicator is not None:
            adjudicator = check_reviewer_id(adjudicator, path=self.file)
            if adjudicator in readers:
                raise SampleError(f"the adjudicator {adjudicator!r} cannot also read the sample.")
        due = _parse_due(due)
        self._check_known([*readers, *([adjudicator] if adjudicator else [])], add_reviewers)
        with self.updating():
            for rid in [*readers, *([adjudicator] if adjudicator else [])]:
                self.reviewers.setdefault(rid, Reviewer(rid))
            entries = [self.entry(s) for s in samples] if samples is not None else list(self.samples.values())
            problems = []
            for e in entries:
                for k, rid in enumerate(readers, start=1):
                    cur = next((r for r in e.reads if r.read == k), None)
                    if cur is not None and cur.reviewer != rid and cur.status != NOT_STARTED and not force:
                        problems.append(f"{self.label(e.sample)}: read {k} by {cur.reviewer} is {cur.status}")
                if (adjudicator and e.adjudication.reviewer not in (None, adjudicator)
                        and e.adjudication.status != NOT_STARTED and not force):
                    problems.append(f"{self.label(e.sample)}: adjudication by {e.adjudication.reviewer} is "
                                    f"{e.adjudication.status}")
            if problems:
                raise SampleError("not reassigned (work has started):\n  - " + "\n  - ".join(problems),
                                  path=self.file, hint="\nPass force=True (--force) to reassign anyway; "
                                                       "started working copies are kept.")
            for e in entries:
                new = []
                for k, rid in enumerate(readers, start=1):
                    cur = next((r for r in e.reads if r.read == k), None)
                    new.append(cur if cur is not None and cur.reviewer == rid else ReadEntry(k, rid))
                reads_changed = any(a is not b for a, b in zip(new, e.reads, strict=False)) or len(new) != len(e.reads)
                e.reads = new
                if adjudicator and e.adjudication.reviewer != adjudicator:
                    e.adjudication = AdjudicationEntry(adjudicator)
                elif reads_changed and e.adjudication.status != NOT_STARTED:
                    # the adjudication decided between the old reads: it starts again on the new ones
                    e.adjudication = AdjudicationEntry(e.adjudication.reviewer)
                if reads_changed:
                    self._supersede_adjudication(e)
                if due is not None:
                    e.due = due

    def _check_known(self, ids, add_reviewers: bool) -> None:
        """Refuse ids that are not reviewers of a project that has reviewers (a typo would register
        a new reader), unless ``add_reviewers``."""
        unknown = [r for r in dict.fromkeys(ids) if r not in self.reviewers]
        if unknown and self.reviewers and not add_reviewers:
            raise SampleError(f"{'reviewers' if len(unknown) > 1 else 'reviewer'} {', '.join(map(repr, unknown))} "
                              f"{'are' if len(unknown) > 1 else 'is'} not in the project (reviewers: "
                              f"{', '.join(self.reviewers)}); a typo?", path=self.file,
                              hint="To register a new reviewer, pass add_reviewers=True (--add-reviewer).")

    def _supersede_adjudication(self, e: SampleEntry) -> None:
        """Keep an adjudication file of reads that were reassigned, renamed out of the way."""
        path = self.folder / "adjudication" / f"{e.code}.h5ad"
        if path.exists():
            stamp = _now().replace(":", "").replace("-", "")
            new = path.with_name(f"{e.code}.superseded-{stamp}.h5ad")
            os.replace(path, new)
            log.warning("%s: reads reassigned; the adjudication of the old reads is kept as %s", self.label(e.sample),
                        new.name)

    def assign_balanced(self, readers, *, adjudicator: str | None = None, samples=None, due=None,
                        force: bool = False, add_reviewers: bool = False) -> None:
        """Assign every sample two of ``readers`` so that each reader gets about the same number of
        samples and of first reads (pairs rotate over the samples in code order)."""
        samples = [samples] if isinstance(samples, str) else samples
        readers = list(dict.fromkeys(check_reviewer_id(r) for r in readers))
        if len(readers) < 2:
            raise SampleError("balanced assignment needs at least two different readers.")
        if adjudicator is not None and adjudicator in readers:
            raise SampleError(f"the adjudicator {adjudicator!r} cannot also be a reader.")
        self._check_known([*readers, *([adjudicator] if adjudicator else [])], add_reviewers)
        add_reviewers = True   # checked for all of them at once: each sample's assign may add the rest
        ents = [self.entry(s) for s in samples] if samples is not None else list(self.samples.values())
        ents = sorted(ents, key=lambda e: e.code)  # code order: unrelated to patient / timepoint
        pairs = list(itertools.permutations(readers, 2))
        # order pairs so that consecutive samples move the load around all readers
        pairs.sort(key=lambda p: ((readers.index(p[1]) - readers.index(p[0])) % len(readers), readers.index(p[0])))
        for i, e in enumerate(ents):
            a, b = pairs[i % len(pairs)]
            self.assign([e.sample], readers=(a, b), adjudicator=adjudicator, due=due, force=force,
                        add_reviewers=add_reviewers)
