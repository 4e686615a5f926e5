"""The Project dock: composes the project header, the slides table and its actions, and the
disagreements section over the viewer's :class:`~napari_carspatial._napari.ProjectWorkspace`.

Opening a slide reads its files and takes its lock in a napari thread worker (with a busy
indicator); the layers are added on the main thread. One project slide is open at a time: opening
another saves and closes the current one (its lock released). Closing the viewer closes them all.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from pathlib import Path

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import ADJUDICATION, READ, notify, session_for, workspace_for
from ...model import SampleError
from .disagreements import DisagreementPanel
from .slides import SlidesTable

log = logging.getLogger(__name__)


class _CloseWatcher(QObject):
    """Child of the napari main window: when it closes for good, every project slide of the viewer
    is saved and its lock released."""

    def __init__(self, window, workspace):
        super().__init__(window)
        self._ws = weakref.ref(workspace)
        self._window = window
        window.installEventFilter(self)
        ref = self._ws
        window.destroyed.connect(lambda *_a: _close_all(ref))

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:
            ref, win = self._ws, self._window
            if event.spontaneous():   # the user closed it: napari may still ask to confirm
                QTimer.singleShot(0, lambda: _close_all(ref) if not _visible(win) else None)
            else:
                _close_all(ref)
        return False


def _visible(window) -> bool:
    try:
        return bool(window.isVisible())
    except RuntimeError:   # deleted
        return False


def _close_all(ref) -> None:
    ws = ref()
    if ws is not None and ws.items:
        with contextlib.suppress(SampleError, RuntimeError):
            ws.close_all()


class ProjectWidget(QWidget):
    """Project dock (see the package docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    workspace
        The viewer's :class:`~napari_carspatial._napari.ProjectWorkspace`.
    slides, disagreements
        The sections.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.workspace = workspace_for(self.session)
        self._worker = None   # opening a slide
        self._job = None      # saving / finishing the open slide
        self._adding = None   # adding samples
        self._cleaned = False

        self.project_label = QLabel("No review project open.")
        self.project_label.setWordWrap(True)
        self.open_project_button = QPushButton("Open project…")
        self.open_project_button.setToolTip("The folder with the review project's project.yaml")
        self.add_samples_button = QPushButton("Add samples…")
        self.add_samples_button.setToolTip("Add samples listed in a cohort manifest (CSV / YAML): appended to the "
                                           "project's manifest and assigned like the others")
        self.reviewer_box = QComboBox()
        self.reviewer_box.setToolTip("Who you are in this project (written in every audit row)")
        # sized by a short name, not by its longest entry: the "reviewer" label keeps its room
        self.reviewer_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.reviewer_box.setMinimumContentsLength(14)
        self.blind_label = QLabel()
        self.blind_label.setStyleSheet("color: gray")
        self.blind_label.setWordWrap(True)   # two lines rather than squeezing the "reviewer" label away
        self.slides = SlidesTable(self)
        self.next_button = QPushButton("Open next")
        self.next_button.setToolTip("Open your next slide: work in progress first, then the earliest due")
        self.open_button = QPushButton("Open")
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Write your working copy of the open slide (the source is never written)")
        self.done_button = QPushButton("Mark done")
        self.reopen_button = QPushButton("Reopen")
        self.reopen_button.setToolTip("Change your done read (allowed while the other read is not done)")
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Save and close the open slide (its lock is released)")
        self.current_label = QLabel()
        self.current_label.setWordWrap(True)
        self.disagreements = DisagreementPanel(self)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray; font-size: 10px")

        top = QHBoxLayout()
        top.addWidget(self.project_label, 1)
        top.addWidget(self.open_project_button)
        top.addWidget(self.add_samples_button)
        form = QFormLayout()
        rev = QHBoxLayout()
        rev.addWidget(self.reviewer_box, 1)
        rev.addWidget(self.blind_label)
        form.addRow("reviewer", rev)
        row1 = QHBoxLayout()
        row1.addWidget(self.next_button)
        row1.addWidget(self.open_button)
        row1.addStretch(1)
        row1.addWidget(self.close_button)
        row2 = QHBoxLayout()
        row2.addWidget(self.save_button)
        row2.addWidget(self.done_button)
        row2.addWidget(self.reopen_button)
        row2.addStretch(1)
        self.setMinimumWidth(440)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(form)
        lay.addWidget(self.slides, 1)
        lay.addLayout(row1)
        lay.addWidget(self.current_label)
        lay.addLayout(row2)
        lay.addWidget(self.disagreements)
        lay.addWidget(self.status)

        self.open_project_button.clicked.connect(self.open_project_dialog)
        self.add_samples_button.clicked.connect(self.add_samples_dialog)
        self.reviewer_box.activated.connect(self._on_reviewer_picked)
        self.next_button.clicked.connect(self.open_next)
        self.open_button.clicked.connect(lambda: self.open_label(self.slides.current_label()))
        self.save_button.clicked.connect(self.save)
        self.done_button.clicked.connect(self.finish)
        self.reopen_button.clicked.connect(self.reopen)
        self.close_button.clicked.connect(self.close_current)
        self.workspace.events.changed.connect(self._on_changed)
        self.workspace.events.project.connect(self._on_changed)
        self.session.events.reviewer_changed.connect(self._on_changed)
        self.session.events.saved.connect(self._on_saved)
        self.refresh()

    # ================================================================== small shared pieces
    def set_status(self, text: str) -> None:
        self.status.setText(text)

    @property
    def current(self):
        """The project slide open in the viewer (None when none is)."""
        items = list(self.workspace.items.values())
        return items[-1] if items else None

    def _on_changed(self, event=None):
        with contextlib.suppress(RuntimeError):   # the dock is being deleted
            self.refresh()

    def _on_saved(self, event) -> None:
        """A save of a project slide landed (from this dock or the Curation dock): say so with the
        share of cells reviewed (the table itself follows the workspace's ``changed``)."""
        it = self.workspace.item(event.sid)
        if it is None:
            return
        text = f"{it.label} saved ({Path(event.path).name})"
        if event.kind == "read":
            with contextlib.suppress(KeyError, SampleError):   # the slide closed meanwhile
                p = self.workspace.core(it.sid).progress()
                text += f": {p['n_reviewed']} of {p['n_cells']} cells reviewed"
        with contextlib.suppress(RuntimeError):
            self.set_status(text + ".")

    def refresh(self) -> None:
        ws = self.workspace
        proj = ws.project
        self.reviewer_box.blockSignals(True)
        self.reviewer_box.clear()
        if proj is None:
            self.project_label.setText("No review project open.")
            self.blind_label.setText("")
            self.slides.fill(None)
        else:
            n = len(proj.samples)
            self.project_label.setText(f"<b>{proj.name}</b> · {n} slide{'s' if n != 1 else ''}")
            self.blind_label.setText("Blinded: slides by code only" if proj.blinding else "Not blinded: sample names shown")
            self.blind_label.setToolTip("Patient, arm, timepoint and outcome are hidden: layer names, sample lists and "
                                        "the window title show the code" if proj.blinding else "")
            ids = ws.reviewer_ids()
            if not ws.reviewer_known():
                self.reviewer_box.addItem(f"{ws.reviewer} (not in this project: pick yourself)", None)
            for rid in ids:
                name = proj.reviewers[rid].name
                self.reviewer_box.addItem(f"{rid} ({name})" if name else rid, rid)
            i = self.reviewer_box.findData(ws.reviewer)
            self.reviewer_box.setCurrentIndex(max(i, 0))
            try:
                self.slides.fill(ws.assignments() if ws.reviewer_known() else None)
            except SampleError as err:
                notify(str(err), "error")
                self.slides.fill(None)
        self.reviewer_box.blockSignals(False)
        self._refresh_current()

    def _refresh_current(self) -> None:
        it = self.current
        busy = self._worker is not None or self._job is not None
        known = self.workspace.project is not None and self.workspace.reviewer_known()
        self.next_button.setEnabled(known and not busy)
        self.add_samples_button.setEnabled(self.workspace.project is not None and self._adding is None)
        self.open_button.setEnabled(known and not busy and self.slides.rowCount() > 0)
        self.close_button.setEnabled(it is not None and not busy)
        self.save_button.setEnabled(it is not None and it.writable and not busy)
        self.done_button.setEnabled(it is not None and it.writable and not busy)
        self.done_button.setText("Finish adjudication" if it is not None and it.kind == ADJUDICATION else "Mark done")
        self.done_button.setToolTip("Every disagreement must be decided first" if it is not None and it.kind == ADJUDICATION
                                    else "Your read is finished: saved, status done, lock released")
        can_reopen = False
        if it is not None and it.kind == READ and it.read is None and self.workspace.project is not None:
            with contextlib.suppress(SampleError, KeyError):
                e = self.workspace.project.entry(it.label)
                can_reopen = not e.reads_done
        self.reopen_button.setVisible(can_reopen)
        if self._worker is not None:
            self.current_label.setText("Opening…")
        elif self._job is not None and it is not None:
            self.current_label.setText(f"<b>{it.label}</b>: {self.session.busy(it.sid) or 'working'}…")
        elif it is None:
            self.current_label.setText("No slide open.")
        else:
            ro = f"<br><i>read-only: {it.read_only}</i>" if it.read_only else ""
            self.current_label.setText(f"Open: <b>{it.label}</b> ({it.role}){ro}")
        self.disagreements.set_view(it.disagreements if it is not None else None)
        self.slides.set_min_rows(3 if it is not None and it.disagreements is not None else 6)

    # ================================================================== project and reviewer
    def open_project(self, folder) -> bool:
        """Open the review project in ``folder``; errors are notifications."""
        try:
            self.workspace.open_project(folder)
        except SampleError as err:
            notify(str(err), "error")
            return False
        self.set_status(f"Project {self.workspace.project.name} opened from {folder}")
        self.refresh()
        return True

    def open_project_dialog(self):
        folder = QFileDialog.getExistingDirectory(self, "Review project folder (with project.yaml)")
        if folder:
            self.open_project(folder)

    def add_samples_dialog(self):
        proj = self.workspace.project
        if proj is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest with the samples to add",
                                              str(proj.manifest_path.parent),
                                              "Cohort manifest (*.csv *.tsv *.yaml *.yml);;All files (*)")
        if path:
            self.add_samples(path)

    def add_samples(self, manifest, *, in_worker: bool = True):
        """Add the samples of the cohort manifest ``manifest`` to the open project (files read and
        written in a worker); the outcome is one notification line. Returns the worker (None when
        refused or run here)."""
        try:
            job = self.workspace.add_samples_job(manifest)
        except SampleError as err:
            notify(str(err), "warning")
            return None
        if self._adding is not None:
            notify("Samples are being added; wait until that is done.", "warning")
            return None

        def done(res):
            try:
                text = self.workspace.samples_added(res)
            except SampleError as err:
                notify(str(err), "warning")
                return
            notify(text)
            with contextlib.suppress(RuntimeError):   # the dock closed meanwhile
                self.set_status(text)

        def failed(err):
            if isinstance(err, SampleError):
                notify(str(err), "warning")
            else:
                log.error("adding samples from %s failed", manifest, exc_info=err)
                notify(f"Samples from {manifest} were not added ({type(err).__name__}: {err}).", "error")

        if not in_worker:
            try:
                res = job()
            except SampleError as err:
                failed(err)
                return None
            done(res)
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(job, _start_thread=False, _progress={"desc": "Adding samples", "total": 0})
        worker.returned.connect(done)
        worker.errored.connect(failed)

        def _end():
            self._adding = None
            with contextlib.suppress(RuntimeError):
                self._refresh_current()

        worker.finished.connect(_end)
        self._adding = worker
        self._refresh_current()
        worker.start()
        return worker

    def set_reviewer(self, rid: str) -> None:
        """Set who is reviewing (the viewer's reviewer: the Curation dock and the audit trail follow)."""
        self.session.set_reviewer(rid)

    def _on_reviewer_picked(self, index: int):
        rid = self.reviewer_box.itemData(index)
        if rid:
            self.set_reviewer(rid)

    # ================================================================== opening
    def open_next(self):
        """Open the reviewer's next slide (work in progress first, then the earliest due)."""
        try:
            label = self.workspace.next_label()
        except SampleError as err:
            notify(str(err), "error")
            return None
        if label is None:
            notify(f"Nothing left to open for {self.workspace.reviewer}: every slide is done.")
            return None
        return self.open_label(label)

    def open_label(self, label: str | None, *, in_worker: bool = True):
        """Open slide ``label``: the current project slide is saved and closed first; the files are
        read (and the lock taken) in a worker thread. Returns the worker (None when refused)."""
        if label is None:
            notify("Pick a slide in the table first.", "warning")
            return None
        if self._worker is not None:
            notify("A slide is being opened; wait until it is shown.", "warning")
            return None
        cur = self.current
        if cur is not None and cur.label == label:
            self.set_status(f"{label} is open already.")
            return None
        if self._job is not None:
            notify("The open slide is being saved; open the next one when that is done.", "warning")
            return None
        if not in_worker:
            try:
                item = self.workspace.prepare(label)
            except SampleError as err:
                notify(str(err), "warning")
                return None
            self._show(item)
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(self.workspace.prepare, label, _start_thread=False,
                               _progress={"desc": f"Opening {label}", "total": 0})
        worker.returned.connect(self._show)
        worker.errored.connect(lambda err, lab=label: self._open_failed(lab, err))
        worker.finished.connect(self._worker_done)
        self._worker = worker
        self._refresh_current()
        worker.start()
        return worker

    def _worker_done(self):
        self._worker = None
        with contextlib.suppress(RuntimeError):
            self._refresh_current()

    def _open_failed(self, label: str, err) -> None:
        if isinstance(err, SampleError):
            notify(str(err), "warning")
        else:
            log.error("opening %s failed", label, exc_info=err)
            notify(f"{label} could not be opened ({type(err).__name__}: {err}).", "error")

    def _show(self, item) -> None:
        if self._cleaned:
            self.workspace.discard(item)   # the dock closed meanwhile
            return
        for cur in list(self.workspace.items.values()):   # one project slide at a time
            self.workspace.close(cur.label)
            self.set_status(f"{cur.label} saved and closed.")
        try:
            self.workspace.show(item)
        except (SampleError, KeyError, ValueError) as err:
            notify(f"{item.label} could not be shown: {err}", "error")
            return
        what = {"read": "curate it in the Curation dock; Save writes your working copy",
                "comparison": "both reads, read-only",
                "adjudication": "step through the disagreements below and decide them"}[item.kind]
        self.set_status(f"{item.label} opened ({item.role}): {what}.")
        self.refresh()

    # ================================================================== the open slide
    def _in_background(self, it, what: str, job, done):
        """Run ``job`` (file work) in a worker while the sample is busy (the docks refuse edits),
        then ``done(result)`` on the main thread. Returns the worker."""
        from napari.qt.threading import create_worker

        sid = self.session.sid_of(it.sample) or it.sid
        if self._refuse_busy(it):
            return None
        self.session.set_busy(sid, what)
        worker = create_worker(job, _start_thread=False, _progress={"desc": f"{it.label}: {what}", "total": 0})
        worker.returned.connect(done)
        worker.errored.connect(lambda err: notify(str(err), "warning") if isinstance(err, SampleError)
                               else notify(f"{it.label}: {what} failed ({type(err).__name__}: {err})", "error"))

        def _end(sid=sid):
            self.session.set_busy(sid, None)
            self._job = None
            with contextlib.suppress(RuntimeError):
                self._refresh_current()

        worker.finished.connect(_end)
        self._job = worker
        self._refresh_current()
        worker.start()
        return worker

    def save(self):
        """Save the open read (its working copy) or adjudication, in a worker. Returns the worker."""
        it = self.current
        if it is None or self._job is not None:
            return None
        try:
            job = self.workspace.save_job(it.label)
        except SampleError as err:
            notify(str(err), "warning")
            return None

        def done(path, label=it.label):
            with contextlib.suppress(SampleError):   # closed meanwhile (the status says it via _on_saved)
                self.workspace.saved(label, path)

        return self._in_background(it, "saving", job, done)

    def finish(self):
        """Mark the open read done, or finish the adjudication (refused while anything is
        undecided), in a worker. Returns the worker (None when refused)."""
        it = self.current
        if it is None or self._job is not None:
            return None
        try:
            job = self.workspace.finish_job(it.label)
        except SampleError as err:
            notify(str(err), "warning")
            return None
        adj = it.kind == ADJUDICATION

        def done(_path, label=it.label):
            with contextlib.suppress(SampleError):
                self.workspace.finished(label)
            self.set_status(f"{label}: {'adjudication finished' if adj else 'read done'}. Open next when you are ready.")
            notify(f"{label} {'adjudicated' if adj else 'done'}.")
            with contextlib.suppress(RuntimeError):
                self.refresh()

        return self._in_background(it, "adjudication finishing" if adj else "marking the read done", job, done)

    def reopen(self):
        it = self.current
        if it is None:
            return None
        try:
            item = self.workspace.reopen(it.label)
        except SampleError as err:
            notify(str(err), "warning")
            return None
        self.set_status(f"{item.label} reopened for changes.")
        self.refresh()
        return item

    def _refuse_busy(self, it) -> bool:
        """The slide is busy elsewhere (the Curation dock's Save read N is writing): say so, True."""
        msg = self.session.busy(self.session.sid_of(it.sample) or it.sid)
        if msg:
            notify(f"{it.label} is busy ({msg}); try again when that is done.", "warning")
        return bool(msg)

    def close_current(self):
        it = self.current
        if it is None or self._job is not None or self._refuse_busy(it):
            return
        self.workspace.close(it.label)
        self.set_status(f"{it.label} saved and closed.")
        self.refresh()

    # ================================================================== closing with the viewer
    def showEvent(self, event):  # noqa: N802 - Qt API
        super().showEvent(event)
        self._watch_window()

    def _watch_window(self) -> None:
        """Close every project slide when the napari window closes (once per window)."""
        w = self.parentWidget()
        while w is not None and not isinstance(w, QMainWindow):
            w = w.parentWidget()
        if w is None or w.property("carspatial_project_watcher"):
            return
        w.setProperty("carspatial_project_watcher", True)
        _CloseWatcher(w, self.workspace)

    def closeEvent(self, event):  # noqa: N802 - Qt API
        self.cleanup()
        super().closeEvent(event)

    def cleanup(self):
        """The dock closes: stop listening (open slides stay open; the viewer's close closes them)."""
        if self._cleaned:
            return
        self._cleaned = True
        for ev, cb in ((self.workspace.events.changed, self._on_changed),
                       (self.workspace.events.project, self._on_changed),
                       (self.session.events.reviewer_changed, self._on_changed),
                       (self.session.events.saved, self._on_saved)):
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                ev.disconnect(cb)

    def deleteLater(self):  # noqa: N802 - Qt API
        self.cleanup()
        super().deleteLater()
