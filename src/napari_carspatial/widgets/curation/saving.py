"""The Curation dock's save bar: undo / redo, "Save as…" (never over the sample's own files) and
"Export SpatialData…". The writing is :meth:`napari_carspatial.editing.CurationSession.save`.

A sample whose curation has a save target (a review read: its working copy) shows the target's
button instead of "Save as…" (``CurationSession.save_to_target``); a read-only one cannot save."""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QMessageBox, QPushButton, QWidget

from ..._napari import notify
from ...model import SampleError


class SaveBar(QWidget):
    """Undo, Redo, Save as…, Export SpatialData…"""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        #: the file the last "Save as" wrote
        self.saved_path: Path | None = None
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.undo_button.setToolTip("Undo the last curation action (Ctrl+Z)")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("Write the curated table (.h5ad or .zarr) to a new file; the source table is never overwritten")
        self.sdata_button = QPushButton("Export SpatialData…")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.undo_button)
        lay.addWidget(self.redo_button)
        lay.addStretch(1)
        lay.addWidget(self.save_button)
        lay.addWidget(self.sdata_button)
        self.undo_button.clicked.connect(dock.undo)
        self.redo_button.clicked.connect(dock.redo)
        self.save_button.clicked.connect(self.save_as_dialog)
        self.sdata_button.clicked.connect(self.export_spatialdata_dialog)

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

    def save_to_target(self) -> Path | None:
        """"Save" through the curation's save target; errors (a broken lock) are notifications."""
        core = self.dock.core
        if core is None or core.save_target is None:
            return None
        try:
            out = core.save_to_target()
        except SampleError as err:
            notify(str(err), "error")
            return None
        self.saved_path = out
        self.dock.set_status(f"Saved to {out}")
        notify(f"{core.sample.name}: saved")
        return out

    def default_dir(self, name: str) -> str:
        """``name`` next to the sample's source (the current folder for unsaved data)."""
        src = self.dock.core.source if self.dock.core else None
        return os.fspath(Path(src).with_name(name)) if src else name

    def save(self, path, *, overwrite: bool = False) -> Path | None:
        """Write the curated table to ``path``. The sample's own files are never overwritten,
        whatever ``overwrite`` says. Errors are notifications; the work stays in memory."""
        core = self.dock.core
        if core is None:
            return None
        if core.is_source(path):
            notify(f"{path} is the file this sample was opened from; it is never overwritten. "
                   "Choose another name.", "warning")
            self.dock.set_status("Not saved: that is the source file. Choose another name.")
            return None
        try:
            out = core.save(path, overwrite=overwrite)
        except SampleError as err:
            notify(str(err), "error")
            return None
        self.saved_path = out
        self.dock.set_status(f"Saved to {out}")
        notify(f"Curated table saved to {out}")
        return out

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

    def export_spatialdata(self, path, *, overwrite: bool = False):
        from ...io import export_spatialdata

        core = self.dock.core
        if core is None:
            return None
        try:
            return export_spatialdata(core.sample, path, overwrite=overwrite)
        except SampleError as err:
            notify(str(err), "error")
            return None

    def export_spatialdata_dialog(self):
        core = self.dock.core
        if core is None:
            return
        path = QFileDialog.getExistingDirectory(self, "Folder for the SpatialData store", self.default_dir("."))
        if path:
            out = self.export_spatialdata(Path(path) / f"{core.sample.name}_curated.sdata.zarr")
            if out is not None:
                notify(f"SpatialData store written to {out}")
