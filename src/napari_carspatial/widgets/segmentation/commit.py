"""The Segmentation dock's commit and save section: undo / redo / commit, "Commit after each
operation", "Save corrected mask…" (``<mask>.corrected.zarr`` next to the original, the table
under a new name). Large commits and saves run in a worker while the sample is busy for every dock."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import hover_features, notify
from ...editing import CommitResult
from ...model import SampleError
from .operations import SHORTCUTS, key_label

log = logging.getLogger(__name__)


class CommitView(QWidget):
    """Undo, Redo, Commit, auto-commit, Save corrected mask…, the last commit's report."""

    #: commits whose region has more pixels than this run in a worker thread
    THREAD_MIN_PIXELS = 1536 * 1536

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.last_result: CommitResult | None = None
        self.last_saved: tuple[Path, Path] | None = None
        self._worker = None
        self.undo_button = QPushButton(f"Undo ({key_label(SHORTCUTS['undo'])})")
        self.redo_button = QPushButton(f"Redo ({key_label(SHORTCUTS['redo'])})")
        self.commit_button = QPushButton(f"Commit ({key_label(SHORTCUTS['commit'])})")
        self.commit_button.setToolTip("Write the edits to the mask and re-measure the affected cells")
        self.auto_box = QCheckBox("Commit after each operation")
        self.auto_box.setChecked(True)
        self.auto_box.setToolTip("The table follows every operation at once; painting is committed with Commit")
        self.save_button = QPushButton("Save corrected mask…")
        self.save_button.setToolTip("Write <mask>.corrected.zarr next to the original mask and the table under a new name")
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
        lay.addWidget(self.result_label)
        self.undo_button.clicked.connect(lambda: dock.ops.undo())
        self.redo_button.clicked.connect(lambda: dock.ops.redo())
        self.commit_button.clicked.connect(lambda: self.commit())
        self.save_button.clicked.connect(self.save_dialog)

    # ------------------------------------------------------------------ commit
    def commit(self, *, action: str | None = None, wait: bool = False):
        """Write the region's edits back, re-measure the affected cells and refresh the display.

        Regions larger than :attr:`THREAD_MIN_PIXELS` are committed in a worker thread (the
        sample is busy meanwhile: every dock waits) unless ``wait``. Returns the
        :class:`~napari_carspatial.editing.CommitResult` when run here.
        """
        d = self.dock
        if d.edit is None or d.is_busy:
            return None
        d.edit.record_paint()
        if not d.edit.dirty:
            d.set_status("Nothing to commit")
            return None
        action, note = d.edit.commit_action(action)
        ed, region = d.editor, d.region
        if wait or region.data.size <= self.THREAD_MIN_PIXELS:
            try:
                res = ed.commit(region, action=action, note=note)
            except (SampleError, ValueError, OSError, KeyError) as err:
                self._commit_failed(err)
                return None
            self._committed(res)
            return res
        from napari.qt.threading import create_worker

        d.set_busy(True, "Committing: re-measuring the edited cells…")
        worker = create_worker(ed.commit, region, action=action, note=note)
        worker.returned.connect(self._committed)
        worker.errored.connect(self._commit_failed)
        worker.finished.connect(lambda: d.set_busy(False))
        worker.start()
        self._worker = worker
        return None

    def _commit_failed(self, err):
        log.error("commit failed", exc_info=err)
        notify(f"Commit failed, the edits stay in the edit layer: {err}", "error")

    def _committed(self, res: CommitResult):
        """Main thread: the session shows the new mask and tells every dock the table changed
        (hover features, colouring, gating values follow); report."""
        d = self.dock
        self.last_result = res
        s = d.sample
        if s is None:
            return
        d.session.labels_changed(d.sid, res.bbox)
        d.session.table_changed(d.sid, structure=bool(res.added or res.removed), reason=f"segmentation: {res.message()}")
        feats = hover_features(s)
        if d.edit_layer is not None and feats is not None:
            d.edit_layer.features = feats
        msg = res.message()
        ms = 1000 * res.seconds.get("total", 0.0)
        self.result_label.setText(f"Last commit: {msg} ({ms:.0f} ms). Table: {s.table.n_obs:,} cells."
                                  if s.table is not None else f"Last commit: {msg}")
        d.set_status("Committed")
        notify(f"{s.name}: {msg}")
        d.update_state()

    # ------------------------------------------------------------------ save
    def save(self, table_path, mask_path=None, *, wait: bool = False):
        """Save the corrected mask (next to the original unless ``mask_path``) and the table.

        Pending edits are committed first. Runs in a worker thread unless ``wait``; sets
        :attr:`last_saved` = (mask folder, table file) when done.
        """
        d = self.dock
        ed = d.editor
        if ed is None:
            return None
        if d.is_busy:
            notify(f"{d.session.busy(d.sid) or 'A commit is running'}; save again in a moment.", "warning")
            return None
        if d.edit is not None and d.edit.dirty:
            self.commit(wait=True)
        s = d.sample
        src_table = s.paths.get("table")
        if src_table and os.path.abspath(table_path) == os.path.abspath(src_table):
            notify(f"{table_path} is the source table; choose a new name.", "warning")
            return None

        def work():
            from ...io import write_table
            from ...io.mask_store import save_corrected_mask

            out = save_corrected_mask(ed.store, mask_path, source=s.paths.get("mask"), pixel_size_um=s.pixel_size_um,
                                      note=f"napari-carspatial segmentation correction of {s.name}")
            paths = {k: v for k, v in s.paths.items() if k in ("image", "table")}
            paths["mask"] = out
            return out, write_table(s.table, table_path, overwrite=True, paths=paths)

        def done(result):
            self.last_saved = result
            d.set_status(f"Saved {result[0].name} and {result[1].name}")
            notify(f"Corrected mask saved to {result[0]}; table to {result[1]}")

        def failed(err):
            notify(f"Saving failed: {err}", "error")

        if wait:
            try:
                done(work())
            except (SampleError, ValueError, OSError) as err:
                failed(err)
            return self.last_saved
        from napari.qt.threading import create_worker

        d.set_busy(True, "Saving the corrected mask…")
        worker = create_worker(work)
        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: d.set_busy(False))
        worker.start()
        self._worker = worker
        return None

    def save_dialog(self):
        from ...io import proposed_name

        s = self.dock.sample
        if s is None:
            return
        if s.paths.get("mask") is None:
            mask_dir = QFileDialog.getSaveFileName(self, "Save corrected mask as", f"{s.name}.corrected.zarr",
                                                   "OME-Zarr (*.zarr)")[0]
            if not mask_dir:
                return
        else:
            mask_dir = None
        src = s.paths.get("table") or s.paths.get("image") or os.path.join(os.path.expanduser("~"), f"{s.name}.h5ad")
        path, _ = QFileDialog.getSaveFileName(self, "Save corrected table as",
                                              os.fspath(Path(proposed_name(src)).with_suffix(".h5ad")),
                                              "AnnData (*.h5ad);;AnnData zarr (*.zarr)")
        if path:
            self.save(path, mask_dir)
