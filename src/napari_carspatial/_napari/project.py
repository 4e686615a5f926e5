"""The review project open in a viewer: the current reviewer's slides, reads curated through their
locked working copies, comparisons and adjudications. No Qt.

:func:`workspace_for` returns the viewer's :class:`ProjectWorkspace` (one per viewer session; the
Project dock is a view of it, scripts and tests drive it the same way)::

    ws = workspace_for(viewer)
    ws.open_project("review/")
    ws.session.set_reviewer("alice")
    ws.assignments()                  # label, role, status, due, overdue, progress, open
    item = ws.open(ws.next_label())   # the next slide: its read, locked, in the viewer
    ...                               # curate it (Curation dock: Save writes the working copy)
    ws.finish(item.label)             # done: saved, status done, lock released, read-only now
    ws.close(item.label)              # or remove its layers: saved, lock released

What opening a slide gives, by the reviewer's role and the sample's state:

==========================  ===================================================================
a read not done             the reviewer's :class:`~napari_carspatial.review.ReadSession` (the
                            lock is taken; a second writer is refused with the holder's name);
                            the sample's curation saves through :class:`ReadTarget` ("Save read
                            N" writes the working copy and refreshes the lock), autosave and
                            recovery are keyed by the working copy's path
a read done, the other not  the reviewer's own read, read-only (it may be reopened:
                            :meth:`ProjectWorkspace.reopen`)
both reads done             both reads side by side, read-only, with the disagreement layer
                            (:class:`~napari_carspatial._napari.disagreement.DisagreementView`)
the adjudication            the :class:`~napari_carspatial.review.AdjudicationSession` (locked)
                            and the disagreement layer with decisions
==========================  ===================================================================

The other reader's read is only ever read through the review API, which refuses it
(:class:`~napari_carspatial.review.RevealError`) until both reads are done.

Blinding: with the project's blinding on, the sample is named by its code (layer names, every
dock's sample list, the window title) and carries no clinical metadata; its table is the blinded
working copy.

Closing: removing a project sample's layers (or :meth:`ProjectWorkspace.close`) saves its read or
adjudication and releases the lock; :meth:`ProjectWorkspace.close_all` does it for every one (the
Project dock calls it when the viewer closes). When the viewer's reviewer changes, the previous
reviewer's slides close the same way (nobody sees another reviewer's read in progress).

Headless work (reading files, making the working copy) is :meth:`ProjectWorkspace.prepare`, which
touches no layer (a worker thread runs it); :meth:`ProjectWorkspace.show` adds the layers.

Saving: whoever saves a read ("Save read N" in the Curation dock, Save in the Project dock, or the
headless :meth:`~napari_carspatial.editing.CurationSession.save_to_target`) goes through
:class:`ReadTarget`; once the file is written the viewer session emits ``saved`` (``sid``,
``path``, ``kind``) on the main thread (a save in a worker thread is announced when the sample
stops being busy: every worker save marks it busy) and the workspace emits ``changed``, so the
Project dock shows the new share of cells reviewed and the read's status at once.

Project slides and segmentation: a slide opened from a project must keep the cells both reads
and the adjudication compare, so its mask may not be edited. :func:`segmentation_refusal` (and
:func:`project_item`, :func:`is_project_sample`, :attr:`OpenItem.segmentation_refusal`) tell a
dock whether a sample of the viewer is a project slide and why its segmentation edits are
refused (the slide's mask layers are shown with napari's paint tools off)::

    from napari_carspatial._napari import segmentation_refusal

    reason = segmentation_refusal(viewer, sid)   # sid, Sample, layer or sample name
    if reason is not None:
        notify(reason, "warning")                # "RV-7K3F9Q is a review project slide (read 1): ..."

One module (~850 lines) because :class:`ProjectWorkspace` is one object whose opening, closing,
saving, locking, blinding and reviewer-change handling share its private state (the open items, their
locks and their pending save announcements): every path that takes a read's lock, writes it and
releases it is in this one class; the project-slide queries at the end read that same state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from ..model import Sample, SampleError

log = logging.getLogger(__name__)

#: what an open slide is
READ, COMPARISON, ADJUDICATION = "read", "comparison", "adjudication"
#: how statuses are written for people
STATUS_TEXT = {"not_started": "not started", "in_progress": "in progress", "done": "done",
               "adjudicated": "adjudicated", "waiting": "waiting for reads"}
#: why segmentation edits are refused on a project slide (:func:`segmentation_refusal`)
SEGMENTATION_REFUSED = ("segmentation edits are refused on review project slides. Both reads and the adjudication "
                        "compare the same cells, cell by cell, so a changed mask would make them incomparable; "
                        "correct the mask before the sample is added to the project.")
#: the columns of :meth:`ProjectWorkspace.assignments`
ASSIGNMENT_COLUMNS = ["label", "role", "status", "status_text", "ready", "due", "overdue", "progress", "open"]


class ReadTarget:
    """The save target of a read opened from a project (see
    :meth:`napari_carspatial.editing.CurationSession.set_save_target`): "Save read N" writes the
    reader's working copy through :meth:`ReadSession.save` (atomic, lock refreshed, progress
    recorded) and pins the audit trail's reviewer to the reader."""

    def __init__(self, read, on_saved: Callable[[Path], None] | None = None):
        self.read = read
        self.reviewer = read.reviewer
        self.label = f"Save read {read.read_number}"
        #: called with the path once the working copy is written (in the thread that saved)
        self.on_saved = on_saved

    def save(self, core) -> Path:
        self.read.table = core.table   # a recovered table replaces the one the read opened with
        path = self.read.save()
        if self.on_saved is not None:
            self.on_saved(path)
        return path

    def holds(self) -> bool:
        """The read is open and its lock file is this process's (nobody broke or took it)."""
        from ..review import read_lock

        if self.read.closed:
            return False
        info = read_lock(self.read.path)
        return (info is not None and info.owner == self.read.reviewer and info.pid == os.getpid()
                and info.host == socket.gethostname())


@dataclass
class OpenItem:
    """One project slide open in the viewer.

    Attributes
    ----------
    label
        The code (blinding on) or sample id.
    role
        ``"read 1"``, ``"read 2"`` or ``"adjudication"``.
    kind
        :data:`READ` (the reviewer's read), :data:`COMPARISON` (both reads, read-only) or
        :data:`ADJUDICATION`.
    sample
        The sample shown (its table is the working copy for a read, a copy of both reads for a
        comparison or adjudication).
    read, adjudication, pair
        The review objects behind it (a writable read, an open adjudication, both reads).
    read_only
        Why edits are refused (None: the read is writable).
    sid
        Its id in the viewer session (after :meth:`ProjectWorkspace.show`).
    disagreements
        Its :class:`~napari_carspatial._napari.disagreement.DisagreementView` (comparison and
        adjudication).
    """

    label: str
    role: str
    kind: str
    sample: Sample
    read: object = None
    adjudication: object = None
    pair: object = None
    read_only: str | None = None
    sid: str | None = None
    disagreements: object = None
    readers: tuple = ()
    call_keys: dict = field(default_factory=dict)
    reader_rois: dict = field(default_factory=dict)
    #: who opened it (the slide closes when the viewer's reviewer changes)
    reviewer: str = ""

    @property
    def writable(self) -> bool:
        """The reviewer may change it (an open read, or an open adjudication's decisions)."""
        if self.read_only is not None:
            return False
        return self.read is not None or (self.adjudication is not None and not self.adjudication.closed)

    @property
    def curation_read_only(self) -> str | None:
        """Why the Curation dock may not edit it (None for a writable read)."""
        if self.read is not None:
            return None
        if self.kind == ADJUDICATION and self.read_only is None:
            return "the adjudication is decided in the Project dock"
        return self.read_only

    def describe(self) -> str:
        what = {READ: f"{self.role}", COMPARISON: "both reads", ADJUDICATION: "adjudication"}[self.kind]
        return f"{self.label} ({what}{', read-only' if self.read_only else ''})"

    @property
    def segmentation_refusal(self) -> str:
        """Why the segmentation of this slide may not be edited (always refused on a project slide:
        see :data:`SEGMENTATION_REFUSED`)."""
        return f"{self.label} is a review project slide ({self.role}): {SEGMENTATION_REFUSED}"


class ProjectWorkspace:
    """The review project of one viewer (see the module docstring). Use :func:`workspace_for`.

    Events (``ws.events.<name>.connect(cb)``): ``project`` (a project was opened), ``opened``
    (``item``), ``closed`` (``item``), ``changed`` (statuses or the reviewer changed).
    """

    def __init__(self, session):
        from napari.utils.events import EmitterGroup

        self._session_ref = weakref.ref(session)
        self.project = None
        #: open slides by sample id
        self.items: dict[str, OpenItem] = {}
        self._title: str | None = None
        self.events = EmitterGroup(source=self, project=None, opened=None, closed=None, changed=None)
        #: saves written in a worker thread, announced when the sample stops being busy: {sid: path}
        self._pending_saves: dict[str, str] = {}
        self._pending_lock = threading.Lock()
        session.events.sample_removed.connect(self._on_removed)
        session.events.table_changed.connect(self._on_table_changed)
        session.events.reviewer_changed.connect(self._on_reviewer)
        session.events.busy.connect(self._on_busy)
        session.events.saved.connect(self._on_saved)

    # ------------------------------------------------------------------ basics
    @property
    def session(self):
        s = self._session_ref()
        if s is None:
            raise SampleError("the viewer of this review workspace is closed.")
        return s

    @property
    def viewer(self):
        return self.session.viewer

    @property
    def reviewer(self) -> str:
        """The current reviewer: the viewer session's (``session.set_reviewer``)."""
        return self.session.reviewer

    def _require_project(self):
        if self.project is None:
            raise SampleError("no review project is open (open its folder first).")
        return self.project

    def open_project(self, folder) -> object:
        """Open the review project in ``folder`` (its ``project.yaml``); slides of another project
        open in this viewer are closed first (saved, locks released)."""
        from ..review import load_project

        proj = load_project(folder)
        if self.project is not None and Path(self.project.folder).resolve() != Path(proj.folder).resolve():
            self.close_all()
        self.project = proj
        self.events.project(project=proj)
        return proj

    def reviewer_known(self) -> bool:
        return self.project is not None and self.reviewer in self.project.reviewers

    def reviewer_ids(self) -> list[str]:
        return [] if self.project is None else list(self.project.reviewers)

    # ------------------------------------------------------------------ what to do
    def assignments(self) -> pd.DataFrame:
        """The current reviewer's slides (see :data:`ASSIGNMENT_COLUMNS`): ``label``, ``role`` (read 1 /
        read 2 / adjudication), ``status`` (``not_started``, ``in_progress``, ``done``,
        ``adjudicated``, ``waiting`` for an adjudication whose reads are not done),
        ``status_text``, ``ready``, ``due``, ``overdue``, ``progress`` (fraction of the cells
        reviewed at the last save), ``open`` (in this viewer). Blinded labels only."""
        proj = self._require_project()
        proj.reload()
        who = self.reviewer
        today = date.today().isoformat()
        open_labels = {it.label for it in self.items.values()}
        rows = []
        for e in proj.samples.values():
            label = proj.label(e.sample)
            due = e.due or proj.due
            rd = e.read_of(who)
            if rd is not None:
                st = "adjudicated" if e.status == "adjudicated" else rd.status
                rows.append({"label": label, "role": f"read {rd.read}", "status": st, "ready": True, "due": due,
                             "progress": rd.progress})
            if e.adjudication.reviewer == who:
                st = e.adjudication.status if e.reads_done else "waiting"
                rows.append({"label": label, "role": "adjudication", "status": st, "ready": e.reads_done,
                             "due": due, "progress": None})
        for r in rows:
            r["status_text"] = STATUS_TEXT.get(r["status"], r["status"])
            r["overdue"] = bool(r["due"] and r["due"] < today and r["status"] not in ("done", "adjudicated"))
            r["open"] = r["label"] in open_labels
        return pd.DataFrame(rows, columns=ASSIGNMENT_COLUMNS)

    def next_label(self) -> str | None:
        """What to open next: the reviewer's work in progress first, then the earliest due, then code
        order (as ``carspatial project status``), skipping slides open here; None when nothing is
        left."""
        df = self.assignments()
        df = df[df["ready"] & ~df["status"].isin(["done", "adjudicated"]) & ~df["open"]]
        if df.empty:
            return None
        df = df.assign(_p=(df["status"] != "in_progress").astype(int), _d=df["due"].fillna("9999-12-31"))
        return str(df.sort_values(["_p", "_d", "label"]).iloc[0]["label"])

    def item(self, label_or_sid: str) -> OpenItem | None:
        """The open slide with this label (or sample id)."""
        if label_or_sid in self.items:
            return self.items[label_or_sid]
        return next((it for it in self.items.values() if it.label == label_or_sid), None)

    def item_of(self, what) -> OpenItem | None:
        """The open project slide ``what`` is (None when it is not one): a sample id of the viewer
        session, a :class:`~napari_carspatial.model.Sample`, one of its layers, or a sample name
        (the slide's label: its code with blinding on). Give the id, sample or layer where you have
        it: a name is matched last (another sample opened under the same name would match)."""
        if isinstance(what, Sample):
            return next((it for it in self.items.values() if it.sample is what), None)
        if not isinstance(what, str):
            from .session import sample_id_of

            sid = sample_id_of(what)
            return None if sid is None else self.items.get(sid)
        if what in self.items:
            return self.items[what]
        return next((it for it in self.items.values() if what in (it.label, it.sample.name)), None)

    # ------------------------------------------------------------------ adding samples
    def add_samples_job(self, manifest) -> Callable[[], object]:
        """The file work of "Add samples…" as a function (worker safe: it touches no layer and
        emits nothing): :meth:`~napari_carspatial.review.ReviewProject.add_samples_from` with
        ``manifest``; give its result to :meth:`samples_added` on the main thread."""
        proj = self._require_project()
        return lambda: proj.add_samples_from(manifest)

    def samples_added(self, res) -> str:
        """After :meth:`add_samples_job` ran: the project is re-read, everyone is told; returns the
        line to show (:meth:`~napari_carspatial.review.additions.AddedSamples.summary`, and with
        blinding on a note when the current reviewer reads one of the new samples)."""
        proj = self._require_project()
        proj.reload()
        text = res.summary()
        mine = [s for s in res.added if s in proj.samples and self.reviewer in proj.samples[s].readers]
        if proj.blinding and mine:
            text += (f" You read {len(mine)} of them: you know their codes are the new ones, so the read is not "
                     "blind to which samples were added late.")
        self.events.changed()
        return text

    def add_samples_from(self, manifest) -> str:
        """Add the samples of another cohort manifest to the open project (:meth:`add_samples_job`
        and :meth:`samples_added` in one; scripts and tests). Returns the line to show.

        Raises
        ------
        SampleError
            No project is open, the manifest is invalid (every problem listed) or would make the
            project's manifest invalid (nothing is written).
        """
        return self.samples_added(self.add_samples_job(manifest)())

    # ------------------------------------------------------------------ opening
    def prepare(self, label: str) -> OpenItem:
        """Everything needed to show ``label`` for the current reviewer, without touching a layer
        (safe in a worker thread): takes the lock of a read or an adjudication.

        Raises
        ------
        SampleError
            The reviewer is not assigned, the adjudication waits for reads, the slide is open
            here already, or the files cannot be read; :class:`~napari_carspatial.review.LockError`
            (a ``SampleError``) names whoever holds the lock.
        """
        item = self._prepare(label)
        item.reviewer = self.reviewer
        return item

    def _prepare(self, label: str) -> OpenItem:
        proj = self._require_project()
        proj.reload()
        who = self.reviewer
        entry = proj.entry(label)
        label = proj.label(entry.sample)
        if self.item(label) is not None:
            raise SampleError(f"{label} is open in this viewer already.")
        rd = entry.read_of(who)
        if rd is not None:
            role = f"read {rd.read}"
            if rd.status != "done":
                read = proj.start_read(label, who)
                try:
                    sample = read.sample()
                except BaseException:
                    self._quiet_close(read)
                    raise
                return OpenItem(label, role, READ, sample, read=read)
            if entry.reads_done:
                return self._comparison(entry, role, reason="both reads are done; they are frozen")
            table = proj.read_table(label, who, requester=who)
            from ..model.curation import ROI_UNS_KEY, rois_from_frame

            sample = self._sample(entry, table, proj.read_path(label, who),
                                  rois=rois_from_frame(table.uns.get(ROI_UNS_KEY)))
            return OpenItem(label, role, READ, sample,
                            read_only=f"your read {rd.read} is done (reopen it to change it while the other read "
                                      "is not done)")
        if entry.adjudication.reviewer == who:
            if not entry.reads_done:
                statuses = ", ".join(f"{r.reviewer}: {STATUS_TEXT[r.status]}" for r in entry.reads) or "no readers"
                raise SampleError(f"{label}: the adjudication waits until both reads are done ({statuses}).",
                                  path=proj.file)
            adj = proj.start_adjudication(label, who)
            try:
                sample = self._sample(entry, adj.table.copy(), adj.path, rois=[])
            except BaseException:
                self._quiet_close(adj)
                raise
            return OpenItem(label, "adjudication", ADJUDICATION, sample, adjudication=adj, readers=tuple(adj.readers),
                            call_keys=dict(adj.call_keys), reader_rois=dict(adj.reader_rois))
        raise SampleError(f"{who} is not assigned to {label} (readers: {', '.join(entry.readers) or 'none'}; "
                          f"adjudicator: {entry.adjudication.reviewer or 'none'}).", path=proj.file)

    def _comparison(self, entry, role: str, *, reason: str) -> OpenItem:
        proj = self.project
        pair = proj.reads(entry.sample)   # RevealError until both reads are done
        sample = self._sample(entry, pair.table, proj.adjudication_path(entry.sample), rois=[])
        return OpenItem(proj.label(entry.sample), role, COMPARISON, sample, pair=pair, read_only=reason,
                        readers=tuple(pair.readers), call_keys=dict(pair.call_keys), reader_rois=dict(pair.rois))

    def _sample(self, entry, table, path, *, rois) -> Sample:
        """The sample to show (as :meth:`ReadSession.sample`): image and mask from the manifest,
        ``table``, named by the label, no clinical metadata when blinded."""
        from ..review.reads import read_source

        proj = self.project
        src = read_source(proj, entry)
        meta = {} if proj.blinding else src.public_metadata()
        return Sample(name=proj.label(entry.sample), image=list(src.image), channel_names=list(src.channel_names),
                      pixel_size_um=src.pixel_size_um, labels=src.labels, table=table, rois=list(rois),
                      metadata=meta, paths={"table": os.fspath(path)})

    @staticmethod
    def _quiet_close(obj) -> None:
        try:
            obj.close()
        except SampleError as err:   # pragma: no cover - the lock was broken meanwhile
            log.warning("%s", err)

    def discard(self, item: OpenItem) -> None:
        """A prepared slide that will not be shown (cancelled): save and release its lock."""
        self._release(item)

    def show(self, item: OpenItem) -> OpenItem:
        """Add a prepared slide to the viewer (main thread): layers, curation with its save target
        or read-only, blinding, the disagreement layer, the window title."""
        from .layers import add_sample_layers

        session = self.session
        viewer = self.viewer
        others = [s.name for sid, s in session.samples().items() if sid not in self.items]
        add_sample_layers(viewer, item.sample)
        sid = session.register(item.sample)
        item.sid = sid
        self.items[sid] = item
        try:
            view = session.curation(sid, reviewer=item.read.reviewer if item.read is not None else self.reviewer)
            if item.read is not None:
                view.core.set_save_target(self._target(item.read, sid))
            else:
                view.core.set_read_only(item.curation_read_only)
            if self.project.blinding:
                view.set_blinded(True, alias=item.label)
            self._settings_changed(sid)
            self._colors_on_top(sid)
            self._lock_mask(sid)
            if item.kind in (COMPARISON, ADJUDICATION):
                from .disagreement import DisagreementView

                item.disagreements = DisagreementView(session, sid, readers=item.readers, call_keys=item.call_keys,
                                                      adjudication=item.adjudication, reader_rois=item.reader_rois)
                item.disagreements.show()
        except BaseException:
            self.close(item.label)
            raise
        if self._title is None:
            self._title = viewer.title
        viewer.title = f"napari-carspatial review: {item.label}"
        if self.project.blinding and others:
            from .notifications import notify

            notify(f"{len(others)} other sample(s) are open in this viewer with their names; close them to "
                   "keep the read blinded.", "warning")
        self.events.opened(item=item)
        self.events.changed()
        return item

    def open(self, label: str) -> OpenItem:
        """:meth:`prepare` and :meth:`show` in one (scripts, tests; the dock prepares in a worker)."""
        item = self.prepare(label)
        try:
            return self.show(item)
        except BaseException:
            if item.sid is None:
                self._release(item)
            raise

    # ------------------------------------------------------------------ working on an open slide
    def _item(self, label_or_sid: str) -> OpenItem:
        it = self.item(label_or_sid)
        if it is None:
            raise SampleError(f"{label_or_sid} is not open in this viewer.")
        return it

    def core(self, label_or_sid: str):
        """The headless curation session of an open slide."""
        it = self._item(label_or_sid)
        return self.session.curation(it.sid).core

    def save(self, label_or_sid: str) -> Path:
        """Save an open read (its working copy) or adjudication (:meth:`save_job` + :meth:`saved`).

        Raises
        ------
        SampleError
            Read-only, or the lock was broken (``LockError``; the work stays in memory).
        """
        return self.saved(label_or_sid, self.save_job(label_or_sid)())

    def save_job(self, label_or_sid: str) -> Callable[[], Path]:
        """The file work of Save as a function: safe in a worker thread (it touches no layer and
        emits nothing; mark the sample busy meanwhile so nobody edits the table); give its result
        to :meth:`saved` on the main thread."""
        it = self._item(label_or_sid)
        if it.adjudication is not None and not it.adjudication.closed:
            return it.adjudication.save
        if it.read is None:
            raise SampleError(f"{it.label} is read-only: {it.read_only or it.curation_read_only}.")
        core = self.core(it.sid)
        target = core.save_target
        if target is None or core.read_only:
            raise SampleError(f"{it.label} cannot be saved here ({core.read_only_reason or 'no save target'}).")
        return lambda: target.save(core)

    def saved(self, label_or_sid: str, path) -> Path:
        """After :meth:`save_job` ran: the recovery file goes, everyone is told (the session's
        ``saved`` event, then ``changed``)."""
        it = self._item(label_or_sid)
        if it.read is None:
            self._announce(it, path, "adjudication")
            return Path(path)
        core = self.core(it.sid)
        core.autosaver.saved()
        with self._pending_lock:
            pending = self._pending_saves.pop(it.sid, None)
        if pending is not None:   # written in a worker: say it now; on this thread ReadTarget said it already
            self._announce(it, pending, "read")
        elif getattr(core.save_target, "on_saved", None) is None:   # a target that says nothing itself
            self._announce(it, path, "read")
        return Path(path)

    def finish(self, label_or_sid: str) -> None:
        """Mark an open read done (saved, status done, lock released) or finish an adjudication
        (refused while anything is undecided); the slide stays open, read-only
        (:meth:`finish_job` + :meth:`finished`)."""
        self.finish_job(label_or_sid)()
        self.finished(label_or_sid)

    def finish_job(self, label_or_sid: str) -> Callable[[], Path]:
        """The file work of "Mark done" / "Finish adjudication" (worker safe, as :meth:`save_job`);
        then call :meth:`finished` on the main thread.

        Raises
        ------
        SampleError
            Read-only, or (adjudication) cells or region classes are still undecided.
        """
        it = self._item(label_or_sid)
        if it.adjudication is not None and not it.adjudication.closed:
            adj = it.adjudication
            left = adj.remaining()
            if left["cells"] or left["regions"]:
                adj.finish()   # raises the message that counts them

            def job():
                adj.finish()
                return adj.path
            return job
        if it.read is None:
            raise SampleError(f"{it.label} is read-only: {it.read_only or it.curation_read_only}.")
        core = self.core(it.sid)
        read = it.read

        def job():
            read.table = core.table
            read.finish()
            return read.path
        return job

    def finished(self, label_or_sid: str) -> None:
        """After :meth:`finish_job` ran: the slide becomes read-only, everyone is told (the
        session's ``saved`` event, then ``changed``)."""
        it = self._item(label_or_sid)
        path, kind = None, "read"
        if it.adjudication is not None:
            it.read_only = "the adjudication is finished"
            path, kind = it.adjudication.path, "adjudication"
        elif it.read is not None:
            core = self.core(it.sid)
            core.autosaver.saved()
            it.read_only = f"your read {it.read.read_number} is done"
            core.set_read_only(it.read_only)
            path = it.read.path
            it.read = None
            self._settings_changed(it.sid)
        if path is None:
            self.events.changed()
        else:
            self._announce(it, path, kind)

    def reopen(self, label_or_sid: str) -> OpenItem:
        """Reopen the reviewer's done read for writing (allowed while the other read is not done)."""
        it = self._item(label_or_sid)
        if it.kind != READ or it.read is not None:
            raise SampleError(f"{it.label}: only a done read can be reopened.")
        proj = self._require_project()
        read = proj.start_read(it.label, self.reviewer, reopen=True)
        label = it.label
        self.close(label)
        try:
            sample = read.sample()
        except BaseException:
            self._quiet_close(read)
            raise
        return self.show(OpenItem(label, f"read {read.read_number}", READ, sample, read=read, reviewer=self.reviewer))

    def close(self, label_or_sid: str) -> None:
        """Close an open slide: its layers leave the viewer; its read or adjudication is saved and
        its lock released."""
        it = self._item(label_or_sid)
        layers = self.session.layers_of(it.sid) if it.sid else []
        if layers:
            for lyr in list(layers):
                if lyr in self.viewer.layers:
                    self.viewer.layers.remove(lyr)   # the last one out: _on_removed releases
        if self.item(it.label) is it:   # no layers (or the session did not drop it): release here
            self.items.pop(it.sid, None)
            self._release(it)

    def close_all(self) -> None:
        """Close every open slide (the viewer closes)."""
        for it in list(self.items.values()):
            try:
                self.close(it.label)
            except SampleError as err:   # pragma: no cover - the viewer is going away
                log.warning("%s", err)
                self.items.pop(it.sid, None)
                self._release(it)

    # ------------------------------------------------------------------ saves landing
    def _target(self, read, sid: str) -> ReadTarget:
        return ReadTarget(read, on_saved=lambda path, sid=sid: self._target_saved(sid, path))

    def _target_saved(self, sid: str, path) -> None:
        """A read's working copy was written through its :class:`ReadTarget` (any thread)."""
        if threading.current_thread() is threading.main_thread():
            it = self.items.get(sid)
            if it is not None:
                self._announce(it, path, "read")
            return
        with self._pending_lock:   # a worker: announced on the main thread when the sample is idle again
            self._pending_saves[sid] = os.fspath(path)

    def _announce(self, it: OpenItem, path, kind: str) -> None:
        """The session's ``saved`` event (which makes :meth:`_on_saved` emit ``changed``)."""
        with self._pending_lock:
            self._pending_saves.pop(it.sid, None)
        session = self.session
        if it.sid is not None and session.entry(it.sid) is not None:
            session.announce_saved(it.sid, path, kind=kind)
        else:
            self.events.changed()

    def _on_busy(self, event) -> None:
        if event.busy:
            return
        with self._pending_lock:
            path = self._pending_saves.pop(event.sid, None)
        it = self.items.get(event.sid)
        if path is not None and it is not None:
            self._announce(it, path, "read")

    def _on_saved(self, event) -> None:
        """A save of a project slide landed (announced by anyone): the statuses and the share of
        cells reviewed are new."""
        if event.sid not in self.items:
            return
        with self._pending_lock:
            self._pending_saves.pop(event.sid, None)
        self.events.changed()

    # ------------------------------------------------------------------ session events
    def _release(self, it: OpenItem) -> None:
        """Save and release the lock of a slide leaving the viewer."""
        from .notifications import notify

        try:
            if it.read is not None and not it.read.closed:
                it.read.table = it.sample.table
                it.read.close()
            if it.adjudication is not None and not it.adjudication.closed:
                it.adjudication.close()
        except SampleError as err:
            notify(f"{it.label} was not saved when it was closed: {err}", "error")
        if not self.items and self._title is not None:
            with contextlib.suppress(SampleError):   # the viewer is gone
                self.viewer.title = self._title
            self._title = None
        self.events.closed(item=it)
        self.events.changed()

    def _on_removed(self, event) -> None:
        it = self.items.pop(event.sid, None)
        with self._pending_lock:
            self._pending_saves.pop(event.sid, None)
        if it is not None:
            self._release(it)

    def _on_table_changed(self, event) -> None:
        """A replaced table (recovery) gets a new curation core: keep its save target."""
        it = self.items.get(event.sid)
        if it is None or not event.structure:
            return
        session = self.session
        core = session.curation(it.sid).core
        if it.read is not None:
            it.read.table = it.sample.table
            if core.save_target is None:
                core.set_save_target(self._target(it.read, it.sid))
        elif not core.read_only:
            core.set_read_only(it.curation_read_only)

    def _colors_on_top(self, sid: str) -> None:
        """The sample's cell colours, highlights and region layers above its image channels (a dock
        may have coloured the cells while the channels were still being added)."""
        from .session import ROLE_IMAGE, role_of

        layers = self.viewer.layers
        mine = [lyr for lyr in self.session.layers_of(sid) if role_of(lyr) != ROLE_IMAGE]
        images = [i for i, lyr in enumerate(layers) if lyr in self.session.layers_of(sid, ROLE_IMAGE)]
        if not images:
            return
        top = max(images)
        for lyr in mine:
            i = layers.index(lyr)
            if i < top:
                layers.move(i, len(layers))

    def _lock_mask(self, sid: str) -> None:
        """The slide's cell mask layers are not editable from the viewer (napari's paint, fill and
        erase tools are off: ``Layer.editable``), as the Segmentation dock refuses edits
        (:func:`segmentation_refusal`)."""
        from .session import ROLE_LABELS

        for lyr in self.session.layers_of(sid, ROLE_LABELS):
            lyr.editable = False

    def _settings_changed(self, sid: str) -> None:
        """Tell the curation's views (the Curation dock) that its save target, read-only state or
        blinding changed (the view's ``blinded`` event carries the current state)."""
        session = self.session
        if session.has_curation(sid):
            view = session.curation(sid)
            view.events.blinded(value=view.blinded)

    def _on_reviewer(self, event=None) -> None:
        """Another reviewer: the previous one's slides close (saved, locks released), so nobody sees
        someone else's read in progress."""
        who = self.reviewer
        for it in [it for it in self.items.values() if it.reviewer and it.reviewer != who]:
            self.close(it.label)
        self.events.changed()


_workspaces: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def workspace_for(viewer_or_session) -> ProjectWorkspace:
    """The :class:`ProjectWorkspace` of a viewer (or its session), made on first use; it lives as
    long as the viewer's session."""
    from .session import ViewerSession, session_for

    session = viewer_or_session if isinstance(viewer_or_session, ViewerSession) else session_for(viewer_or_session)
    ws = _workspaces.get(session)
    if ws is None:
        ws = ProjectWorkspace(session)
        _workspaces[session] = ws
    return ws


def _existing_workspace(viewer_or_session) -> ProjectWorkspace | None:
    """The workspace of a viewer (or its session) if one was made; never makes one."""
    from .session import ViewerSession, session_for

    session = viewer_or_session if isinstance(viewer_or_session, ViewerSession) else session_for(viewer_or_session)
    return _workspaces.get(session)


def project_item(viewer_or_session, sample) -> OpenItem | None:
    """The review-project slide ``sample`` is in this viewer, or None.

    Parameters
    ----------
    viewer_or_session
        The napari viewer or its :class:`~napari_carspatial._napari.ViewerSession`.
    sample
        A sample id of the session, a :class:`~napari_carspatial.model.Sample`, one of its layers,
        or a sample name (matched last; see :meth:`ProjectWorkspace.item_of`).

    Returns
    -------
    OpenItem or None
        The open slide (its ``label``, ``role``, ``kind``, ``read_only``), None for any other sample.
    """
    ws = _existing_workspace(viewer_or_session)
    return None if ws is None else ws.item_of(sample)


def is_project_sample(viewer_or_session, sample) -> bool:
    """Whether ``sample`` is a review-project slide open in this viewer (see :func:`project_item`)."""
    return project_item(viewer_or_session, sample) is not None


def segmentation_refusal(viewer_or_session, sample) -> str | None:
    """Why segmentation edits of ``sample`` are refused, or None when they are allowed.

    Every slide opened from a review project refuses them (a read, both reads, an adjudication,
    done or not): the reads and the adjudication compare the same cells, cell by cell. The
    Segmentation dock shows the text and opens no edit region.

    Parameters
    ----------
    viewer_or_session
        The napari viewer or its :class:`~napari_carspatial._napari.ViewerSession`.
    sample
        A sample id, :class:`~napari_carspatial.model.Sample`, layer or sample name (see
        :func:`project_item`).

    Returns
    -------
    str or None
        One line naming the slide (its code with blinding on) and the reason; None for a sample
        that is not a project slide.
    """
    it = project_item(viewer_or_session, sample)
    return None if it is None else it.segmentation_refusal


__all__ = ["ADJUDICATION", "ASSIGNMENT_COLUMNS", "COMPARISON", "READ", "SEGMENTATION_REFUSED", "STATUS_TEXT", "OpenItem",
           "ProjectWorkspace", "ReadTarget", "is_project_sample", "project_item", "segmentation_refusal",
           "workspace_for"]
