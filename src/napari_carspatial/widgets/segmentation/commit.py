"""The Segmentation dock's commit and save section: undo / redo / commit, "Commit after each
operation", and one "Save table and corrected mask…" (one file dialog, one act: the corrected
mask ``<mask>.corrected.zarr`` next to the original, the table under a new name whose provenance
names it; :func:`napari_carspatial.editing.segmentation.save_corrected`).

Commits and saves run in napari thread workers: the sample is busy for every dock meanwhile, the
GUI thread only applies the result (the new pyramid, the table change) when they return."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...editing import CommitResult
from ...editing.segmentation import corrected_mask_path, save_corrected
from ...model import SampleError
from .operations import SHORTCUTS, key_label
from .region import region_features

log = logging.getLogger(__name__)


class CommitView(QWidget):
    """Undo, Redo, Commit, auto-commit, Save table and corrected mask…, the last commit's report."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.last_result: CommitResult | None = None
        self.last_saved: tuple[Path, Path] | None = None
        #: name of the thread the last commit / save ran in (tests check it is not the GUI's)
        self.last_thread: str | None = None
        self._worker = None
        self._progress = (0, 0)
        # short names (they must fit a 300 px column side by side); the shortcut is in the tooltip
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip(f"Undo the last operation ({key_label(SHORTCUTS['undo'])})")
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip(f"Redo the operation undone last ({key_label(SHORTCUTS['redo'])})")
        self.commit_button = QPushButton("Commit")
        self.commit_button.setToolTip("Write the edits to the mask and re-measure the affected cells "
                                      f"({key_label(SHORTCUTS['commit'])})")
        self.auto_box = QCheckBox("Commit after each operation")
        self.auto_box.setChecked(True)
        self.auto_box.setToolTip("The table follows every operation at once; painting is committed with Commit")
        self.save_button = QPushButton("Save table and corrected mask…")
        self.save_button.setToolTip("One act: the corrected mask (<mask>.corrected.zarr next to the original, "
                                    "never over it) and the table under a new name")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        # its room is kept while hidden: showing it must not re-lay out the dock (a taller dock can
        # resize the canvas, and napari then re-slices every layer: ~0.3-1 s at 10^6 cells)
        sp = self.progress.sizePolicy()
        sp.setRetainSizeWhenHidden(True)
        self.progress.setSizePolicy(sp)
        self.progress.hide()
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        row.addWidget(self.commit_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.auto_box)
        lay.addWidget(self.save_button)
        lay.addWidget(self.progress)
        lay.addWidget(self.result_label)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll)
        self.undo_button.clicked.connect(lambda: dock.ops.undo())
        self.redo_button.clicked.connect(lambda: dock.ops.redo())
        self.commit_button.clicked.connect(lambda: self.commit())
        self.save_button.clicked.connect(self.save_dialog)

    # ------------------------------------------------------------------ workers
    @property
    def running(self) -> bool:
        """A commit or save of this dock is running."""
        return self._worker is not None

    def run_worker(self, fn, message: str, on_done, on_error, *, then=None, session_busy: bool = True):
        """``fn()`` in a napari thread worker, the dock busy meanwhile (and the sample for every
        dock when ``session_busy``: the worker writes its table); ``on_done(result)`` and
        ``then()`` on the GUI thread."""
        from napari.qt.threading import create_worker

        d = self.dock

        def work():
            self.last_thread = threading.current_thread().name
            return fn()

        d.set_busy(True, message, session=session_busy)
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress.show()
        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self._then = None

        def done(result):
            on_done(result)
            self._then = then   # after the sample is idle again (_finished)

        worker.returned.connect(done)
        worker.errored.connect(on_error)
        worker.finished.connect(self._finished)
        self._worker = worker
        self._timer.start()
        worker.start()
        return None

    def _finished(self):
        self._timer.stop()
        self._worker = None
        self.progress.hide()
        self.dock.set_busy(False)
        then, self._then = getattr(self, "_then", None), None
        if then is not None:
            then()

    def _poll(self):
        done, total = self._progress
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / max(total, 1)))
            self.progress.setFormat(f"checksums {done / 2**20:,.0f} of {total / 2**20:,.0f} MB")

    def wait(self, timeout_s: float = 120.0) -> bool:
        """Process events until the running commit / save finished (scripts, tests)."""
        import time

        from qtpy.QtWidgets import QApplication

        t0 = time.monotonic()
        while self._worker is not None and time.monotonic() - t0 < timeout_s:
            QApplication.processEvents()
            time.sleep(0.005)
        return self._worker is None

    # ------------------------------------------------------------------ commit
    def commit(self, *, action: str | None = None, wait: bool = False, then=None):
        """Write the region's edits back, re-measure the affected cells and refresh the display.

        Runs in a worker thread (the sample is busy meanwhile: every dock waits) unless ``wait``;
        ``then()`` runs on the GUI thread after a successful commit. Returns the
        :class:`~napari_carspatial.editing.CommitResult` when run here.
        """
        d = self.dock
        if d.edit is None or d.is_busy:
            return None
        d.edit.record_paint()
        if not d.edit.dirty:
            d.set_status("Nothing to commit")
            if then is not None:
                then()
            return None
        action, note = d.edit.commit_action(action)
        ed, region = d.editor, d.region
        if wait:
            try:
                res = ed.commit(region, action=action, note=note)
            except (SampleError, ValueError, OSError, KeyError) as err:
                self._commit_failed(err)
                return None
            self._committed(res)
            if then is not None:
                then()
            return res
        return self.run_worker(lambda: ed.commit(region, action=action, note=note),
                         "Committing: re-measuring the edited cells…", self._committed, self._commit_failed, then=then)

    def _commit_failed(self, err):
        if not isinstance(err, (SampleError, ValueError, OSError, KeyError)):
            log.error("commit failed", exc_info=err)
        notify(f"Commit failed, the edits stay in the edit layer: {err}", "error")

    def _committed(self, res: CommitResult):
        """GUI thread: the session shows the new mask and tells every dock the table changed
        (hover features, colouring, gating values follow); report."""
        d = self.dock
        self.last_result = res
        s = d.sample
        if s is None:
            return
        d.session.labels_changed(d.sid, res.bbox)
        if res.rows_added or res.rows_removed:   # rows appended / dropped: docks may follow incrementally
            upd = d.editor.row_positions(res.updated) if d.editor is not None else None
            d.session.table_changed(d.sid, structure=True, rows_added=res.rows_added, rows_removed=res.rows_removed,
                                    rows=None if upd is None else upd[upd >= 0],
                                    reason=f"segmentation: {res.message()}")
        else:
            d.session.table_changed(d.sid, structure=bool(res.added or res.removed),
                                    reason=f"segmentation: {res.message()}")
        if d.edit_layer is not None and d.edit is not None and (res.added or res.removed):
            # hover features of the region's cells only (looked up by row, not the 10^6-row table)
            ids = d.edit.ids_after_commit(res)
            feats = region_features(s, ids, d.editor.row_positions(ids))
            if feats is not None:
                d.edit_layer.features = feats
        msg = res.message()
        ms = 1000 * res.seconds.get("total", 0.0)
        self.result_label.setText(f"Last commit: {msg} ({ms:.0f} ms). Table: {s.table.n_obs:,} cells."
                                  if s.table is not None else f"Last commit: {msg}")
        d.set_status(f"Committed: {msg}")
        notify(f"{s.name}: {msg}")
        d.update_state()

    # ------------------------------------------------------------------ save
    def save(self, table_path, mask_path=None, *, wait: bool = False):
        """Save the corrected mask (next to the original unless ``mask_path``) and the table, as
        one act. Pending edits are committed first. Runs in a worker thread unless ``wait``;
        sets :attr:`last_saved` = (mask folder, table file) when done."""
        d = self.dock
        ed = d.editor
        if ed is None:
            return None
        if d.is_busy:
            notify(f"{d.session.busy(d.sid) or 'A commit is running'}; save again in a moment.", "warning")
            return None
        s = d.sample
        src_table = s.paths.get("table")
        if src_table and os.path.abspath(table_path) == os.path.abspath(src_table):
            notify(f"{table_path} is the source table; choose a new name.", "warning")
            return None
        if d.edit is not None and d.edit.dirty:
            if wait:
                self.commit(wait=True)
            else:   # commit in its worker, then save in the next one
                return self.commit(then=lambda: self.save(table_path, mask_path))

        def report(done, total):
            self._progress = (done, total)

        def work():
            return save_corrected(ed, table_path, mask_path=mask_path, overwrite=True, progress=report)

        if wait:
            try:
                self._saved(work())
            except (SampleError, ValueError, OSError) as err:
                self._save_failed(err)
            return self.last_saved
        self._progress = (0, 0)
        return self.run_worker(work, "Saving the corrected mask and the table…", self._saved, self._save_failed)

    def _saved(self, result):
        self.last_saved = result
        self.dock.set_status(f"Saved {result[0].name} and {result[1].name}")
        notify(f"Corrected mask saved to {result[0]}; table to {result[1]}")

    def _save_failed(self, err):
        if not isinstance(err, (SampleError, ValueError, OSError)):
            log.error("save failed", exc_info=err)
        notify(f"Saving failed: {err}", "error")

    def save_dialog(self):
        from ...io import proposed_name

        s = self.dock.sample
        if s is None:
            return
        src = s.paths.get("table") or s.paths.get("image") or os.path.join(os.path.expanduser("~"), f"{s.name}.h5ad")
        if "::" in os.fspath(src):
            src = os.path.join(os.path.dirname(os.fspath(src).split("::")[0]), f"{s.name}.h5ad")
        path, _ = QFileDialog.getSaveFileName(self, "Save corrected table (the corrected mask is saved with it)",
                                              os.fspath(Path(proposed_name(src)).with_suffix(".h5ad")),
                                              "AnnData (*.h5ad);;AnnData zarr (*.zarr)")
        if path:
            self.dock.set_status(f"The corrected mask goes to {corrected_mask_path(s, path)}")
            self.save(path)
