"""Autosave and recovery of a curation session: two small state machines, headless.

* :class:`Autosaver`: when to write a snapshot of the table to its recovery file (the policy),
  one writer at a time (a newer snapshot waits, the newest wins), and deleting the recovery
  file once the work was saved (after a write that was still running). The write itself runs
  through an injected ``runner(fn, on_done, on_error)``: :func:`run_now` (scripts, tests) or a
  napari thread worker (the Curation dock).
* :class:`Recovery`: the recovery file newer than the sample's source is offered once; "not
  now" sets it aside (renamed ``*.declined``, never deleted); "recover" makes it the sample's
  table when it holds the same cells. A file that cannot be read, or holds another table, is
  refused with a :class:`~napari_carspatial.model.SampleError` naming it.

Files live in the user cache folder (:func:`napari_carspatial.io.write.cache_dir`), never beside
the data; see :mod:`napari_carspatial.io.write`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import SampleError
from ..model.curation import rois_from_frame

if TYPE_CHECKING:   # pragma: no cover
    from .curation import CurationSession

log = logging.getLogger(__name__)

#: autosave after this many edits, or this many seconds with unsaved edits
AUTOSAVE_EDITS = 5
AUTOSAVE_SECONDS = 120.0


def _copy(a):
    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a.copy()


def snapshot_parts(adata) -> dict:
    """Private copies of everything a table holds, for :class:`AutosaveJob` (on the GUI thread).

    ``AnnData.copy()`` of 10^6 cells took 0.2-0.6 s on the GUI thread (every fifth edit): most
    of it is copying the 10^6 cell names and checking them unique again for the new object.
    Here the arrays are copied (edits after the snapshot never reach it) and the name indexes
    are shared (a pandas Index is immutable); the AnnData is made from the parts in the worker.
    """
    import copy

    obs = adata.obs.copy(deep=True)
    obs.index = adata.obs.index
    var = adata.var.copy(deep=True)
    var.index = adata.var.index
    return {"X": None if adata.X is None else _copy(adata.X), "obs": obs, "var": var,
            "uns": copy.deepcopy(dict(adata.uns)),
            **{k: {n: _copy(v) for n, v in getattr(adata, k).items()} for k in ("obsm", "varm", "layers", "obsp", "varp")}}


@dataclass
class AutosaveJob:
    """What one autosave writes: a snapshot of the table and the key of its recovery file.

    ``table`` is an AnnData, or the parts of one (:func:`snapshot_parts`), made into one where
    the job runs."""

    table: Any
    source: str | None
    name: str
    fingerprint: str | None

    def run(self) -> Path:
        from anndata import AnnData

        from ..io.write import autosave

        if isinstance(self.table, dict):
            self.table = AnnData(**self.table)
        return autosave(self.table, self.source, name=self.name, fingerprint=self.fingerprint)


def run_now(fn: Callable[[], Any], on_done: Callable[[Any], None], on_error: Callable[[BaseException], None]) -> None:
    """The default runner: run ``fn`` here and report."""
    try:
        result = fn()
    except (SampleError, OSError) as err:
        on_error(err)
        return
    on_done(result)


class Autosaver:
    """When and how a curation session is autosaved (a state machine; nothing here is Qt).

    * **policy**: after ``every_edits`` edits, or ``every_seconds`` with unsaved edits (see
      :class:`napari_carspatial.io.AutosavePolicy`); :meth:`maybe_autosave` is what a timer calls;
    * **one writer at a time**: :meth:`autosave_now` takes a snapshot (``table.copy()``, the live
      table is never written from a worker); while a write runs, a newer snapshot is queued (the
      newest wins) and written when it ends;
    * **saved meanwhile**: a successful "Save as" during a write marks the recovery file for
      deletion once the write has ended (it would hold older work than the saved file);
    * ``runner(fn, on_done, on_error)`` runs the write: :func:`run_now` (default) or a thread
      worker that calls back on the main thread.

    Attributes
    ----------
    last_path
        The recovery file written last (None before the first write).
    last_error
        The last write error (None after a successful write).
    on_written
        Callables getting the path after each successful write.
    on_failed
        Callables getting the error of a failed write.
    """

    def __init__(self, session: CurationSession, *, every_edits: int = AUTOSAVE_EDITS,
                 every_seconds: float = AUTOSAVE_SECONDS, runner=None, clock=time.monotonic,
                 enabled: bool = True):
        from ..io import AutosavePolicy

        self.session = session
        #: autosave when the policy says so (False: only count edits)
        self.enabled = bool(enabled)
        self.policy = AutosavePolicy(every_edits, every_seconds, clock=clock)
        self.runner = runner or run_now
        self.last_path: Path | None = None
        self.last_error: BaseException | None = None
        self.on_written: list[Callable[[Path], None]] = []
        self.on_failed: list[Callable[[BaseException], None]] = []
        self._writing = False
        self._queued: AutosaveJob | None = None
        self._discard_after: tuple | None = None

    @property
    def pending(self) -> int:
        """Edits not yet autosaved or saved."""
        return self.policy.pending

    @property
    def busy(self) -> bool:
        """A write is running or queued."""
        return self._writing or self._queued is not None

    def note_edit(self) -> None:
        """Count one edit (the session calls it); autosaves when the policy says so."""
        if self.policy.note_edit() and self.enabled:
            self.autosave_now()

    def maybe_autosave(self) -> bool:
        """Autosave when due (a timer calls this); True when a write was started or queued."""
        if self.enabled and self.policy.due():
            self.autosave_now()
            return True
        return False

    def job(self) -> AutosaveJob:
        """A snapshot of the table and the key of its recovery file."""
        src, name, fp = self.session.recovery.key()
        t = self.session.table
        return AutosaveJob(t.copy() if t.raw is not None else snapshot_parts(t), src, name, fp)

    def autosave_now(self) -> bool:
        """Write a snapshot now (or after the running write). True when a write started."""
        job = self.job()
        self.policy.saved()
        if self._writing:   # one writer at a time; the newest snapshot wins
            self._queued = job
            return False
        self._start(job)
        return True

    def _start(self, job: AutosaveJob) -> None:
        self._writing = True
        self.runner(job.run, self._written, self._failed)

    def _written(self, path) -> None:
        self.last_path = Path(path)
        self.last_error = None
        for cb in list(self.on_written):
            cb(self.last_path)
        self._finished()

    def _failed(self, err: BaseException) -> None:
        log.warning("autosave failed: %s", err)
        self.last_error = err
        for cb in list(self.on_failed):
            cb(err)
        self._finished()

    def _finished(self) -> None:
        self._writing = False
        if self._discard_after is not None:   # saved meanwhile: the recovery file is stale
            from ..io.write import discard_recovery

            src, name, fp = self._discard_after
            self._discard_after = None
            discard_recovery(src, name=name, fingerprint=fp)
        if self._queued is not None:
            job, self._queued = self._queued, None
            self._start(job)

    def saved(self) -> None:
        """The table was saved: no edits pending, the recovery file is deleted (after the running
        write, when there is one)."""
        from ..io.write import discard_recovery

        self.policy.saved()
        key = self.session.recovery.key()
        if self.busy:
            self._queued = None
            self._discard_after = key
        discard_recovery(key[0], name=key[1], fingerprint=key[2])


# =========================================================================== recovery
class Recovery:
    """Finding, declining and applying the recovery file of a curation session.

    :meth:`offer` finds a recovery file newer than the sample's source that was not offered
    before; :meth:`decline` sets it aside (renamed ``*.declined``, never deleted);
    :meth:`recover` reads it and, when it holds the same cells, makes it the sample's table.
    """

    def __init__(self, session: CurationSession):
        self.session = session
        #: the recovery file offered (None when none is)
        self.offered: Path | None = None
        self._seen: set[str] = set()

    def key(self) -> tuple[str | None, str, str | None]:
        """(source, name, fingerprint) naming the sample's recovery file (the real name, also
        while blinded; a fingerprint of the table only for data never saved)."""
        from ..io.write import table_fingerprint

        src = self.session.source
        fp = None if src else table_fingerprint(self.session.table)   # a few ms for 1e6 cells
        return src, self.session.real_name if self.session.blinded else self.session.sample.name, fp

    def offer(self) -> Path | None:
        """The recovery file to offer (newer than the source, not offered or declined before), or None.

        Nothing is offered while the session may not write (read-only, or its save target no
        longer holds its lock): recovering there could not be saved.
        """
        from ..io.write import find_recovery

        if not getattr(self.session, "writable", True):
            self.offered = None
            return None
        src, name, fp = self.key()
        try:
            rec = find_recovery(src, name=name, fingerprint=fp)
        except OSError as err:
            log.warning("cannot look for a recovery file of %s: %s", name, err)
            rec = None
        if rec is not None and os.fspath(rec) in self._seen:
            rec = None
        self.offered = rec
        return rec

    def decline(self) -> Path | None:
        """"Not now": the offered file is renamed ``*.declined`` (kept) and not offered again.
        Returns the new path (None when nothing was offered)."""
        from ..io.write import decline_recovery

        rec, self.offered = self.offered, None
        if rec is None:
            return None
        self._seen.add(os.fspath(rec))
        try:
            return decline_recovery(rec)
        except OSError as err:
            raise SampleError(f"cannot be set aside ({err}).", path=rec) from err

    def recover(self):
        """Make the offered recovery file the sample's table (ROIs and audit trail included).

        The curation restarts on the recovered table (selection cleared, undo history empty).
        Returns the recovered table.

        Raises
        ------
        SampleError
            Nothing is offered, the file cannot be read (naming it), or it holds another table
            (other cells); the open table is unchanged and the file kept (not offered again).
        """
        from ..io.write import recover
        from ..model.conventions import instance_ids

        rec = self.offered
        if rec is None:
            raise SampleError("no recovery file is offered.")
        s = self.session
        self._seen.add(os.fspath(rec))
        self.offered = None
        adata = recover(rec)
        try:
            same = adata.n_obs == s.table.n_obs and bool((instance_ids(adata) == instance_ids(s.table)).all())
        except (KeyError, ValueError):
            same = adata.n_obs == s.table.n_obs
        if not same:
            raise SampleError(f"holds another table ({adata.n_obs:,} cells, the open one {s.table.n_obs:,}); "
                              "not used. It is kept.", path=rec)
        blinded = s.blinded
        if blinded:
            s.set_blinded(False)
        s.sample.table = adata
        s.sample.rois[:] = rois_from_frame(adata.uns.get("carspatial_rois"))
        s._restart()
        if blinded:
            s.set_blinded(True)
        log.info("recovered the curation of %s from %s", s.sample.name, rec)
        return adata

