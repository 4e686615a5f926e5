"""The Curation dock's save bar: undo / redo, "Save as…" (never over the sample's own files) and
"Export SpatialData…". The writing is :meth:`napari_carspatial.editing.CurationSession.save`
(and :func:`napari_carspatial.io.export_spatialdata`), run in a napari thread worker: the GUI
thread only starts it and shows its progress, so a reviewer can keep looking at the slide.

A save has two steps, both in the worker: the checksums of the sample's source files for the
provenance record (the first save of a 1 GB image reads it once; later saves find the checksum
in the user cache, keyed by file identity: :func:`napari_carspatial.io.write.sha256_file`), then
the atomic table write. Meanwhile the sample is busy for every dock (edits wait), the bar shows
a progress bar and a Cancel button (cancelling stops the checksums; a table write that has
started finishes, atomically).

A sample whose curation has a save target (a review read: its working copy) shows the target's
button instead of "Save as…"; it writes through the target in the same worker (the steps of the
headless ``CurationSession.save_to_target``: the read-only check here, the target's write in the
worker, the recovery file discarded here after it succeeded). A read-only one cannot save.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...model import SampleError

log = logging.getLogger(__name__)

#: how often the progress bar reads the worker's progress, ms
POLL_MS = 100


class SaveCancelled(Exception):
    """The reviewer cancelled a save before the table was written."""


class SaveJob:
    """What one save (or export) does in its worker, and how far it got (read by the GUI thread).

    Attributes
    ----------
    phase
        Text for the progress row ("checksumming the sources…" for the provenance record, "writing…").
    done, total
        Bytes checksummed so far / to checksum (``total`` 0: no determinate progress).
    thread
        Name of the thread that ran the job (tests check it is not the GUI thread).
    """

    def __init__(self, core, path, *, overwrite: bool, kind: str = "table"):
        self.core = core
        self.path = Path(path)
        self.overwrite = overwrite
        self.kind = kind
        self.phase = "Starting…"
        self.done = 0
        self.total = 0
        self.thread: str | None = None
        self.cancelled = threading.Event()
        #: the table write started: Cancel can no longer stop it (it finishes, atomically)
        self.writing = False

    def report(self, done: int, total: int) -> None:
        """Progress callback of the checksums (worker thread); raises when cancelled."""
        if self.cancelled.is_set():
            raise SaveCancelled()
        self.done, self.total = int(done), int(total)

    def run(self) -> Path:
        from ...io.write import checksums_pending, provenance

        self.thread = threading.current_thread().name
        sample = self.core.sample
        if self.kind == "target":   # the read's working copy: no provenance checksums (not recorded)
            if self.cancelled.is_set():
                raise SaveCancelled()
            self.phase, self.writing = "writing…", True
            return self.core.save_target.save(self.core)
        if self.kind == "spatialdata":
            from ...io import export_spatialdata

            self.phase, self.writing = "writing…", True
            return export_spatialdata(sample, self.path, overwrite=self.overwrite)
        paths = {k: v for k, v in sample.paths.items() if k in ("image", "mask", "table")}
        pending = checksums_pending(paths)
        if pending:
            self.phase = "checksumming the sources…"
            self.total = pending
            provenance(paths, progress=self.report)   # cached: the save below finds them
        if self.cancelled.is_set():
            raise SaveCancelled()
        self.phase, self.writing = "writing…", True
        self.done = self.total = 0
        return self.core.save(self.path, overwrite=self.overwrite)


class SaveBar(QWidget):
    """Undo, Redo, Save as…, Export SpatialData…, and the progress of a running save."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        #: the file the last "Save as" wrote
        self.saved_path: Path | None = None
        #: the running save (None when idle)
        self.job: SaveJob | None = None
        #: the last finished save (tests read its thread)
        self.last_job: SaveJob | None = None
        self.worker = None
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.undo_button.setToolTip("Undo the last curation action (Ctrl+Z)")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("Write the curated table (.h5ad or .zarr) to a new file; the source table is never overwritten")
        self.sdata_button = QPushButton("Export SpatialData…")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMaximumWidth(150)
        self.progress_label = QLabel()   # one line, clipped (full text in its tooltip): the bar keeps its height
        self.progress_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the save before the table is written (nothing is written)")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        row.addStretch(1)
        row.addWidget(self.save_button)
        row.addWidget(self.sdata_button)
        # while a save runs, its progress takes the buttons' place (same row: the dock does not grow)
        row.addWidget(self.progress_label, 100)   # the stretch before Save keeps a sliver
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        self._show_progress(False)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.undo_button.clicked.connect(dock.undo)
        self.redo_button.clicked.connect(dock.redo)
        self.save_button.clicked.connect(self.save_as_dialog)
        self.sdata_button.clicked.connect(self.export_spatialdata_dialog)
        self.cancel_button.clicked.connect(self.cancel)

    def refresh_undo(self, core) -> None:
        c = core.curation if core else None
        self.undo_button.setEnabled(bool(c and c.can_undo))
        self.redo_button.setEnabled(bool(c and c.can_redo))
        self.undo_button.setToolTip(f"Undo: {c.undo_stack[-1].description} (Ctrl+Z)" if c and c.can_undo else "Nothing to undo")
        self.redo_button.setToolTip(f"Redo: {c.redo_stack[-1].description} (Ctrl+Shift+Z)" if c and c.can_redo else "Nothing to redo")
        self.refresh_target(core)

    def refresh_target(self, core) -> None:
        """The save target's button ("Save read 1") when the curation has one, else "Save as…";
        disabled while read-only."""
        target = getattr(core, "save_target", None) if core is not None else None
        if target is not None:
            self.save_button.setText(target.label)
            self.save_button.setToolTip("Write your working copy of this read (the project's file; the source is never written)")
        else:
            self.save_button.setText("Save as…")
            self.save_button.setToolTip("Write the curated table (.h5ad or .zarr) to a new file; the source table is never overwritten")
        ro = bool(core is not None and core.read_only)
        self.save_button.setEnabled(not ro)
        if ro:
            self.save_button.setToolTip(f"Read-only: {core.read_only_reason}")

    def save_to_target(self, *, wait: bool = False) -> Path | None:
        """"Save" through the curation's save target in a worker thread (``wait``: here, and
        return the path). Errors (read-only, a broken lock) are notifications naming the file; the
        work stays in memory (and the recovery file is kept)."""
        core = self.dock.core
        if core is None or core.save_target is None:
            return None
        if core.read_only:
            notify(f"{core.sample.name} is read-only: {core.read_only_reason}.", "warning")
            return None
        path = getattr(getattr(core.save_target, "read", None), "path", None) or core.sample.name   # for the progress text
        return self._start(SaveJob(core, path, overwrite=True, kind="target"), wait=wait)

    def default_dir(self, name: str) -> str:
        """``name`` next to the sample's source (the current folder for unsaved data)."""
        src = self.dock.core.source if self.dock.core else None
        return os.fspath(Path(src).with_name(name)) if src else name

    # ------------------------------------------------------------------ saving
    @property
    def busy(self) -> bool:
        """A save or export of this bar is running."""
        return self.job is not None

    def save(self, path, *, overwrite: bool = False, wait: bool = False) -> Path | None:
        """Write the curated table to ``path`` in a worker thread (``wait``: here, and return the path).

        The sample's own files are never overwritten, whatever ``overwrite`` says. Errors are
        notifications; the work stays in memory. Without ``wait`` this returns None at once;
        :attr:`saved_path` is set when the file is written.
        """
        core = self.dock.core
        if core is None:
            return None
        if core.is_source(path):
            notify(f"{path} is the file this sample was opened from; it is never overwritten. "
                   "Choose another name.", "warning")
            self.dock.set_status("Not saved: that is the source file. Choose another name.")
            return None
        return self._start(SaveJob(core, path, overwrite=overwrite), wait=wait)

    def export_spatialdata(self, path, *, overwrite: bool = False, wait: bool = False):
        """Export the sample as a SpatialData store in a worker (``wait``: here, and return the path)."""
        core = self.dock.core
        if core is None:
            return None
        return self._start(SaveJob(core, path, overwrite=overwrite, kind="spatialdata"), wait=wait)

    def _start(self, job: SaveJob, *, wait: bool):
        if self.job is not None:
            notify("A save is already running; wait for it to finish.", "warning")
            return None
        view = self.dock.view
        sid = view.sid if view is not None else None
        if sid is not None and self.dock.session.busy(sid):
            notify(f"{job.core.sample.name} is busy ({self.dock.session.busy(sid)}); save when that is done.", "warning")
            return None
        if wait:
            try:
                out = job.run()
            except SampleError as err:
                self._failed(job, err)
                return None
            self._done(job, out)
            return out
        from napari.qt.threading import create_worker

        self.job = job
        if sid is not None:
            self.dock.session.set_busy(sid, "exporting" if job.kind == "spatialdata" else "saving")
        self._show_progress(True)
        self._poll()
        worker = create_worker(job.run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda out, job=job: self._done(job, out))
        worker.errored.connect(lambda err, job=job: self._failed(job, err))
        worker.finished.connect(lambda job=job, sid=sid: self._finished(job, sid))
        self.worker = worker
        self._timer.start()
        worker.start()
        return None

    def cancel(self) -> None:
        """Stop the running save before the table is written."""
        if self.job is not None:
            self.job.cancelled.set()
            self.progress_label.setText("Cancelling…")

    def wait(self, timeout_s: float = 600.0) -> bool:
        """Process events until the running save finished (scripts and tests); True when idle."""
        import time

        from qtpy.QtWidgets import QApplication

        t0 = time.monotonic()
        while self.job is not None and time.monotonic() - t0 < timeout_s:
            QApplication.processEvents()
            time.sleep(0.005)
        return self.job is None

    def _show_progress(self, on: bool) -> None:
        for w in (self.progress, self.progress_label, self.cancel_button):
            w.setVisible(on)
        for w in (self.undo_button, self.redo_button, self.save_button, self.sdata_button):
            w.setVisible(not on)   # they wait for the save anyway (the sample is busy)
        self.save_button.setEnabled(not on)
        self.sdata_button.setEnabled(not on)

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        what = "Export" if job.kind == "spatialdata" else "Save"
        self.progress_label.setText(f"{what} to {job.path.name}: {job.phase}")
        self.progress_label.setToolTip(f"{what} to {job.path}: {job.phase}")
        self.cancel_button.setEnabled(not job.writing)
        self.cancel_button.setToolTip("The write has started; it finishes (atomically, never half a file)" if job.writing
                                      else "Stop the save before the table is written (nothing is written)")
        if job.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * job.done / max(job.total, 1)))
            self.progress.setFormat(f"{job.done / 2**20:,.0f} of {job.total / 2**20:,.0f} MB")
        else:
            self.progress.setRange(0, 0)   # busy indicator: the table write has no finer steps
            self.progress.setFormat("")

    def _done(self, job: SaveJob, out) -> None:
        out = Path(out)
        if job.kind == "spatialdata":
            notify(f"SpatialData store written to {out}")
            self.dock.set_status(f"Exported to {out}")
            return
        self.saved_path = out
        self.dock.set_status(f"Saved to {out}")
        if job.kind == "target":
            job.core.autosaver.saved()   # as CurationSession.save_to_target: the recovery file goes
            notify(f"{job.core.sample.name}: saved to {out}")
            return
        notify(f"Curated table saved to {out}")

    def _failed(self, job: SaveJob, err) -> None:
        if isinstance(err, SaveCancelled):
            self.dock.set_status(f"Save to {job.path.name} cancelled; nothing was written.")
            return
        if not isinstance(err, (SampleError, OSError)):
            log.error("save failed", exc_info=err)
        keep = " Nothing was lost: your work is still open here." if job.kind == "target" else ""
        notify((str(err) if isinstance(err, SampleError) and err.path else f"Saving {job.path} failed: {err}") + keep,
               "error")
        self.dock.set_status(f"Not saved: {err}")

    def _finished(self, job: SaveJob, sid) -> None:
        self._timer.stop()
        self.last_job = job
        self.job = None
        self.worker = None
        self._show_progress(False)
        self.refresh_target(self.dock.core)   # read-only keeps Save disabled
        if sid is not None:
            self.dock.session.set_busy(sid, None)

    # ------------------------------------------------------------------ dialogs
    def save_as_dialog(self):
        from ...io import proposed_name

        core = self.dock.core
        if core is None:
            return
        if core.save_target is not None:
            self.save_to_target()
            return
        src = core.source or os.path.join(os.path.expanduser("~"), f"{core.sample.name}.h5ad")
        path, _ = QFileDialog.getSaveFileName(self, "Save curated table as", os.fspath(proposed_name(src)),
                                              "AnnData (*.h5ad);;AnnData zarr (*.zarr)",
                                              options=QFileDialog.DontConfirmOverwrite)
        if not path:
            return
        if core.is_source(path):
            self.save(path)   # refuses, with the message
            return
        overwrite = False
        if os.path.exists(path):
            if QMessageBox.question(self, "Replace file?", f"{path} exists. Replace it?",
                                    QMessageBox.Yes | QMessageBox.No) != QMessageBox.Yes:
                return
            overwrite = True
        self.save(path, overwrite=overwrite)

    def export_spatialdata_dialog(self):
        core = self.dock.core
        if core is None:
            return
        path = QFileDialog.getExistingDirectory(self, "Folder for the SpatialData store", self.default_dir("."))
        if path:
            self.export_spatialdata(Path(path) / f"{core.sample.name}_curated.sdata.zarr")
