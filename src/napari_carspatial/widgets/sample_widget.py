"""The "Samples" dock: open samples (folder, image + mask + table, demo) and see what is loaded."""

from __future__ import annotations

import logging
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import notify, session_for
from .progressive import add_samples_progressively

log = logging.getLogger(__name__)


class _PathRow(QWidget):
    def __init__(self, placeholder: str, *, folder: bool = False, parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.button = QPushButton("…")
        self.button.setFixedWidth(28)
        self._folder = folder
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit)
        lay.addWidget(self.button)
        self.button.clicked.connect(self._browse)

    def _browse(self):
        if self._folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file")
        if path:
            self.edit.setText(path)

    def path(self) -> str | None:
        text = self.edit.text().strip()
        return text or None


class SampleWidget(QWidget):
    """Open multiplexed samples and list the ones shown in the viewer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self.session = session_for(self.viewer)

        demo_box = QGroupBox("Demo: synthetic CAR T-treated pancreatic tumour")
        self.demo_timepoint = QComboBox()
        self.demo_timepoint.addItems(["post", "pre"])
        self.demo_timepoint.setToolTip("post = after CAR T infusion; pre = before (no CAR T cells)")
        self.demo_button = QPushButton("Load demo")
        dl = QHBoxLayout(demo_box)
        dl.addWidget(QLabel("timepoint"))
        dl.addWidget(self.demo_timepoint)
        dl.addWidget(self.demo_button, 1)

        open_box = QGroupBox("Open a sample")
        self.image_path = _PathRow("image file, or a steinbock / MCMICRO / SpatialData folder")
        self.folder_button = QPushButton("Folder…")
        self.mask_path = _PathRow("mask (optional)")
        self.table_path = _PathRow("cell table .h5ad / .csv (optional)")
        self.open_button = QPushButton("Open")
        form = QFormLayout(open_box)
        row = QHBoxLayout()
        row.addWidget(self.image_path, 1)
        row.addWidget(self.folder_button)
        form.addRow("image", row)
        form.addRow("mask", self.mask_path)
        form.addRow("table", self.table_path)
        form.addRow(self.open_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["sample", "value"])
        self.tree.setColumnWidth(0, 150)

        lay = QVBoxLayout(self)
        lay.addWidget(demo_box)
        lay.addWidget(open_box)
        lay.addWidget(self.status)
        lay.addWidget(QLabel("Loaded samples"))
        lay.addWidget(self.tree, 1)

        self.demo_button.clicked.connect(self._load_demo)
        self.open_button.clicked.connect(self._open)
        self.folder_button.clicked.connect(self._choose_folder)
        self.session.events.sample_added.connect(self.refresh)
        self.session.events.sample_removed.connect(self.refresh)
        self.refresh()

    # -------------------------------------------------------------- actions
    def _choose_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a sample folder")
        if path:
            self.image_path.edit.setText(path)

    def _load_demo(self):
        from ..datasets import demo_sample

        tp = self.demo_timepoint.currentText()
        self._run(lambda: demo_sample(timepoint=tp), f"Generating the {tp}-infusion demo…")

    def _open(self):
        from ..io import read_sample

        path = self.image_path.path()
        if not path:
            self._error("Choose an image file or a sample folder first.")
            return
        mask, table = self.mask_path.path(), self.table_path.path()
        self._run(lambda: read_sample(path, mask=mask, table=table), f"Opening {Path(path).name}…")

    def _run(self, func, message: str):
        """Read in a worker thread; add layers on the main thread when done."""
        from napari.qt.threading import create_worker

        self._set_busy(True, message)
        worker = create_worker(func, _progress={"desc": message, "total": 0})
        worker.returned.connect(self._on_loaded)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._set_busy(False))
        self._worker = worker
        worker.start()
        return worker

    def _on_loaded(self, result):
        samples = result if isinstance(result, list) else [result]
        add_samples_progressively(self.viewer, samples, on_done=self.refresh)
        self.status.setText(f"Loaded {', '.join(s.name for s in samples)}.")
        self.refresh()

    def _on_error(self, err):
        from ..model import SampleError

        if isinstance(err, SampleError):
            self._error(str(err))
        else:
            log.error("loading failed", exc_info=err)
            self._error(f"Could not open the sample: {type(err).__name__}: {err}")

    def _error(self, message: str):
        self.status.setText(message)
        notify(message, "error")

    def _set_busy(self, busy: bool, message: str = ""):
        for b in (self.demo_button, self.open_button):
            b.setEnabled(not busy)
        if busy:
            self.status.setText(message)

    # -------------------------------------------------------------- listing
    def refresh(self, event=None):
        self.tree.clear()
        for sid, s in self.session.samples().items():
            top = QTreeWidgetItem([s.name, ""])
            top.setData(0, Qt.UserRole, sid)
            shp = s.shape_yx
            rows = [
                ("size (y × x)", f"{shp[0]} × {shp[1]} px" if shp else "—"),
                ("pixel size", f"{s.pixel_size_um:g} µm" if s.pixel_size_um else "unknown"),
                ("channels", f"{s.n_channels}: {', '.join(s.channel_names[:6])}{' …' if s.n_channels > 6 else ''}"),
                ("pyramid levels", str(len(s.image))),
                ("cells", f"{s.n_cells:,}" if s.table is not None else "no table"),
            ]
            for k, v in s.metadata.items():
                if k != "sample" and v not in (None, ""):
                    rows.append((k, str(v)))
            for k, v in rows:
                QTreeWidgetItem(top, [k, v])
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
