"""The "Samples" dock: open samples (folder, image + mask + table, demo), see what is loaded, and
measure the cells of a sample that has a mask but no table, and cache a pyramid of a slide stored
without one (in a worker, with progress and cancel; :class:`~.progressive.SampleJobs`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import notify, session_for
from .progressive import SampleJobs, add_samples_progressively, arrange

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

        cells_box = QGroupBox("Cells and pyramid")
        self.measure_button = QPushButton("Measure cells")
        self.measure_button.setToolTip("Measure every cell of the selected sample's mask on its image "
                                       "(mean intensity per channel, area, centroid, shape) into a cell table")
        self.auto_measure = QCheckBox("measure on open when a sample has a mask and no table")
        self.auto_measure.setChecked(True)
        self.auto_pyramid = QCheckBox("cache a pyramid of a slide stored without one (once; later opens are fast)")
        self.auto_pyramid.setChecked(True)
        self.auto_pyramid.setToolTip("The lower levels are written to an OME-Zarr in your user cache folder; "
                                     "the file itself is never changed.")
        self.measure_status = QLabel("")
        self.measure_status.setWordWrap(True)
        self.measure_progress = QProgressBar()
        self.measure_progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel")
        prow = QHBoxLayout()
        prow.addWidget(self.measure_progress, 1)
        prow.addWidget(self.cancel_button)
        cl = QVBoxLayout(cells_box)
        cl.addWidget(self.measure_button)
        cl.addWidget(self.auto_measure)
        cl.addWidget(self.auto_pyramid)
        cl.addWidget(self.measure_status)
        cl.addLayout(prow)

        lay = QVBoxLayout(self)
        lay.addWidget(demo_box)
        lay.addWidget(open_box)
        lay.addWidget(self.status)
        lay.addWidget(cells_box)
        lay.addWidget(QLabel("Loaded samples"))
        lay.addWidget(self.tree, 1)

        #: slow work after the layers are in (measuring cells, caching a pyramid), in a worker
        self.jobs = SampleJobs(self.session, self)
        self._pyramid: dict[str, str | None] = {}
        self.demo_button.clicked.connect(self._load_demo)
        self.open_button.clicked.connect(self._open)
        self.folder_button.clicked.connect(self._choose_folder)
        self.measure_button.clicked.connect(self.measure_selected)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.tree.itemSelectionChanged.connect(self._update_measure_state)
        self._was_running = False
        self.jobs.changed.connect(self._on_jobs_changed)
        self.jobs.measured.connect(lambda sid: self.refresh())
        self.jobs.pyramid_cached.connect(self._on_pyramid_cached)
        self._fit_pending = False
        self.session.events.sample_added.connect(self._on_sample_added)
        self.session.events.sample_removed.connect(self.refresh)
        self.session.events.table_changed.connect(self._on_table_changed)
        self.refresh()
        self._start_pending()     # samples shown before the dock was made (File > Open, carspatial open)

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
        # layers first: a mask without a table is measured after the layers are up (measure_selected)
        self._run(lambda: read_sample(path, mask=mask, table=table, measure=False), f"Opening {Path(path).name}…")

    def _run(self, func, message: str):
        """Read (and arrange: a montage of many acquisitions) in a worker thread; add layers on the
        main thread when done."""
        from napari.qt.threading import create_worker

        def work():
            result = func()
            return arrange(result if isinstance(result, list) else [result])

        self._set_busy(True, message)
        worker = create_worker(work, _progress={"desc": message, "total": 0}, _ignore_errors=True)
        worker.returned.connect(self._on_loaded)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._set_busy(False))
        self._worker = worker
        worker.start()
        return worker

    def _on_loaded(self, arrangement):
        add_samples_progressively(self.viewer, arrangement, on_done=self.refresh)
        names = [s.name for s in (arrangement.montage_of or arrangement.samples)]
        shown = f"Loaded {len(names)} acquisitions as {arrangement.samples[0].name}." if arrangement.montage_of \
            else f"Loaded {', '.join(names)}."
        self.status.setText(shown)
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

    # -------------------------------------------------------------- measuring cells
    def selected_sid(self) -> str | None:
        """The sample chosen in the list (its top item), else the only sample shown."""
        item = self.tree.currentItem()
        while item is not None and item.parent() is not None:
            item = item.parent()
        if item is not None:
            return item.data(0, Qt.UserRole)
        samples = self.session.samples()
        return next(iter(samples)) if len(samples) == 1 else None

    def measure_selected(self) -> bool:
        """The "Measure cells" action: measure the chosen sample in a worker (False when it cannot)."""
        sid = self.selected_sid()
        s = self.session.sample(sid)
        if s is None:
            self._error("Choose a sample in the list first.")
            return False
        if s.table is not None:
            self._error(f"{s.name} already has a cell table ({s.n_cells:,} cells).")
            return False
        if not s.labels or not s.image:
            self._error(f"{s.name}: measuring cells needs an image and a segmentation mask.")
            return False
        return self.jobs.measure(sid)

    def _start_pending(self) -> None:
        """Queue what the samples shown need: the pyramid first (the slide moves smoothly sooner),
        then the cells."""
        from ..io.measure_job import needs_measuring

        for sid, s in self.session.samples().items():
            if self.auto_pyramid.isChecked() and self._pyramid_state(sid) == "flat":
                self.jobs.cache_pyramid(sid)
            # layers first: only once the sample's cells are on the canvas
            if self.auto_measure.isChecked() and needs_measuring(s) and self.session.labels_layer(sid) is not None:
                self.jobs.measure(sid)

    def _pyramid_state(self, sid: str) -> str | None:
        if sid not in self._pyramid:
            from ..io.pyramid_job import pyramid_state

            self._pyramid[sid] = pyramid_state(self.session.sample(sid))
        return self._pyramid[sid]

    def _on_pyramid_cached(self, sid: str) -> None:
        self._pyramid.pop(sid, None)
        self.refresh()

    def _on_sample_added(self, event=None):
        self.refresh()
        # File > Open adds all of a sample's layers in one go, the tiles layer (which carries the
        # sample id) first: start on the next event-loop turn, when the layers are in
        QTimer.singleShot(0, self._start_pending)
        e = self.session.entry(getattr(event, "sid", None)) if event is not None else None
        if e is not None and e.from_reader and not self._fit_pending:
            # napari fits the view to the first layer while the others are still arriving (an .mcd's
            # tiles layer came out ~7 % too tight, cutting ROI_002): fit again once all are in
            self._fit_pending = True
            QTimer.singleShot(0, self._fit_opened)

    def _fit_opened(self) -> None:
        self._fit_pending = False
        self.viewer.reset_view()

    def _on_table_changed(self, event=None):
        if event is None or event.structure or event.columns is None:
            self.refresh()

    def _on_jobs_changed(self):
        if self.jobs.running != self._was_running:     # a job started or ended: the rows
            self._was_running = self.jobs.running
            self.refresh()
        else:
            self._update_measure_state()

    def _update_measure_state(self, *_):
        m = self.jobs
        running = m.running
        self.measure_progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.measure_progress.setValue(int(round(100 * m.job.progress)))
        self.measure_status.setText(m.message())
        sid = self.selected_sid()
        s = self.session.sample(sid)
        can = s is not None and s.table is None and bool(s.labels) and bool(s.image)
        self.measure_button.setEnabled(can and not (m.kind == "measure" and m.sid == sid))
        if s is not None and s.table is not None:
            self.measure_button.setToolTip(f"{s.name} already has a cell table ({s.n_cells:,} cells)")
        elif s is not None and not s.labels:
            self.measure_button.setToolTip(f"{s.name} has no segmentation mask to measure")
        else:
            self.measure_button.setToolTip("Measure every cell of the selected sample's mask on its image "
                                           "(mean intensity per channel, area, centroid, shape) into a cell table")

    # -------------------------------------------------------------- listing
    def _cells_text(self, sid, s) -> str:
        if s.table is not None:
            return f"{s.n_cells:,}"
        if not s.labels:
            return "no mask"
        if (self.jobs.kind, self.jobs.sid) == ("measure", sid) or ("measure", sid) in self.jobs.queue:
            return "no table yet: measuring…"
        return "no table (Measure cells)"

    def _levels_text(self, sid, s) -> str:
        n = str(len(s.image))
        state = self._pyramid_state(sid)
        if state == "flat":
            busy = (self.jobs.kind, self.jobs.sid) == ("pyramid", sid) or ("pyramid", sid) in self.jobs.queue
            return f"{n} (none in the file; {'caching one…' if busy else 'read from level 0'})"
        if state == "cached pyramid":
            return f"{n} (cached: the file has none)"
        return n

    def refresh(self, event=None):
        current = self.selected_sid() if self.tree.currentItem() is not None else None
        self.tree.clear()
        samples = self.session.samples()
        self._pyramid = {k: v for k, v in self._pyramid.items() if k in samples}
        for sid, s in samples.items():
            top = QTreeWidgetItem([s.name, ""])
            top.setData(0, Qt.UserRole, sid)
            shp = s.shape_yx
            rows = [
                ("size (y × x)", f"{shp[0]} × {shp[1]} px" if shp else "—"),
                ("pixel size", f"{s.pixel_size_um:g} µm" if s.pixel_size_um else "unknown"),
                ("channels", f"{s.n_channels}: {', '.join(s.channel_names[:6])}{' …' if s.n_channels > 6 else ''}"),
                ("pyramid levels", self._levels_text(sid, s)),
                ("cells", self._cells_text(sid, s)),
            ]
            for k, v in s.metadata.items():
                if k not in ("sample", "tiles", "channel_metadata", "montage_of") and v not in (None, ""):
                    rows.append((k, _short(v)))
            if s.metadata.get("montage_of"):
                rows.append(("acquisitions", (f"{len(s.metadata['montage_of'])}: "
                                             f"{', '.join(map(str, s.metadata['montage_of'][:4]))} …")))
            for k, v in rows:
                QTreeWidgetItem(top, [k, v])
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
            if sid == current:
                self.tree.setCurrentItem(top)
        self._update_measure_state()


def _short(value, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
