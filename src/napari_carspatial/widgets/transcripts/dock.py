"""The Transcripts dock: composes the sections over one
:class:`~napari_carspatial._napari.TranscriptsView` per sample and keeps it in step with the camera.

Camera moves are debounced (:data:`DEBOUNCE_MS`); the view then says what it needs
(:meth:`TranscriptsView.request`: nothing, a density, or the points of a box). Small reads run
at once; larger ones (more than :data:`SYNC_MAX_POINTS` transcripts in the box, or a density
with a quality filter, which streams the rows) run in a napari thread worker, and only the
newest result is shown: a camera that moved on meanwhile asks again when the worker is done.
Workers never touch layers.
"""

from __future__ import annotations

import contextlib
import logging

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..._napari import (
    ROLE_DENSITY,
    ROLE_POINTS,
    DensityRequest,
    PointsRequest,
    TranscriptsView,
    camera,
    notify,
    session_for,
)
from .._common import BusyNotice, refill_sample_combo, vertical_scroll
from .celltypes import CellTypesView
from .display import DisplayView
from .genes import GeneListView

log = logging.getLogger(__name__)

#: debounce of camera moves before the points are re-read, ms
DEBOUNCE_MS = 150
#: a points read of at most this many transcripts (estimated) runs on the GUI thread (a few ms)
SYNC_MAX_POINTS = 20_000


def _wanted(s) -> bool:
    """Samples the dock offers: with transcripts, or with a gene table (cell types from genes)."""
    if s.points is not None:
        return True
    if s.table is None:
        return False
    from ...analysis.genes import is_count_table

    return is_count_table(s.table)


class TranscriptsWidget(QWidget):
    """Transcripts on the slide (density at overview, points in view), genes, RNA cell types.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    genes_view, display_view, celltypes_view
        The sections.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._views: dict[str, TranscriptsView] = {}
        self._worker = None
        self._pending = False
        self._pending_force = False
        self._generation = 0
        self.last_error: str | None = None

        self.sample_combo = QComboBox()
        self.sample_combo.setToolTip("Sample whose transcripts are shown (samples loaded in this viewer)")
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_id)
        self.empty = QLabel("Open a spatial transcriptomics sample (Xenium, CosMx, MERSCOPE folder, or a "
                            "SpatialData store with points) to see its transcripts.")
        self.empty.setWordWrap(True)
        self.genes_view = GeneListView(self)
        self.display_view = DisplayView(self)
        self.celltypes_view = CellTypesView(self)

        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(4, 4, 4, 4)
        top = QFormLayout()
        top.addRow("sample", self.sample_combo)
        il.addLayout(top)
        il.addWidget(self.busy_notice)
        il.addWidget(self.empty)
        il.addWidget(self.display_view)
        il.addWidget(self.genes_view, 1)
        il.addWidget(self.celltypes_view)
        scroll = vertical_scroll(inner, frame=True)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        # room for the vertical scroll bar: the inner column keeps its 380 px (nothing clipped at the right)
        self.setMinimumWidth(400)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_view)
        cam = camera(self.viewer)
        cam.events.center.connect(self._schedule)
        cam.events.zoom.connect(self._schedule)
        self.sample_combo.currentIndexChanged.connect(self._on_sample)
        self.session.events.sample_added.connect(self.refresh_samples)
        self.session.events.sample_removed.connect(self.refresh_samples)
        self.session.events.table_changed.connect(self._on_table_changed)
        # a layer added later (a cell colouring) goes on top: put the molecules back above it,
        # after the insertion has finished (moving inside the event confuses the layer list)
        self._raise_timer = QTimer(self)
        self._raise_timer.setSingleShot(True)
        self._raise_timer.setInterval(0)
        self._raise_timer.timeout.connect(self.raise_transcripts)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.refresh_samples()

    # ================================================================== samples
    @property
    def sample_id(self) -> str | None:
        sid = self.sample_combo.currentData()
        return sid if sid and self.session.sample(sid) is not None else None

    @property
    def sample(self):
        return self.session.sample(self.sample_id)

    @property
    def view(self) -> TranscriptsView | None:
        """The current sample's :class:`TranscriptsView` (None without transcripts)."""
        sid = self.sample_id
        if sid is None or self.sample.points is None:
            return None
        v = self._views.get(sid)
        if v is None:
            v = self._views[sid] = TranscriptsView(self.session, sid)
        return v

    def refresh_samples(self, event=None) -> None:
        changed, samples = refill_sample_combo(self.sample_combo, self.session, where=_wanted)
        for sid in list(self._views):
            if sid not in samples:
                self._views.pop(sid)
        self.empty.setVisible(not samples)
        if changed or (samples and self.genes_view.sid != self.sample_id):
            self._on_sample()

    def set_sample(self, sid: str) -> None:
        """Show the transcripts of sample ``sid`` (as choosing it in the list)."""
        idx = self.sample_combo.findData(sid)
        if idx < 0:
            raise KeyError(f"no sample {sid!r} with transcripts or genes in this viewer")
        if idx == self.sample_combo.currentIndex():
            self._on_sample()
        else:
            self.sample_combo.setCurrentIndex(idx)

    def _on_sample(self, *_):
        self.busy_notice.update_state()
        v = self.view
        self.genes_view.fill(self.sample_id, v)
        self.display_view.fill(v)
        self.celltypes_view.fill(self.sample)
        if v is not None:
            self.update_view()

    def _on_table_changed(self, event) -> None:
        if event.sid == self.sample_id and (event.structure or event.columns is None):
            self.celltypes_view.fill(self.sample)

    # ================================================================== actions (also for scripts)
    def set_genes(self, genes) -> None:
        """Show ``genes`` (None or empty = all genes) in their colours."""
        v = self.view
        if v is None:
            return
        try:
            v.set_filter(genes or None, v.flt.min_quality)
        except KeyError as err:
            notify(str(err.args[0]), "warning")
            return
        self.genes_view.show_colors(v)
        self.update_view(force=True)

    def set_quality(self, min_quality: float | None) -> None:
        """Keep transcripts with quality at least ``min_quality`` (None = all)."""
        v = self.view
        if v is None:
            return
        try:
            v.set_filter(v.flt.genes, min_quality)
        except ValueError as err:
            notify(str(err), "warning")
            return
        self.update_view(force=True)

    def set_mode(self, mode: str) -> None:
        """``"auto"``, ``"density"`` or ``"points"``."""
        v = self.view
        if v is not None:
            v.mode = mode
            self.update_view(force=True)

    def set_max_points(self, n: int) -> None:
        v = self.view
        if v is not None:
            v.max_points = int(n)
            self.update_view(force=True)

    def set_point_size(self, um: float) -> None:
        v = self.view
        if v is not None:
            v.point_size_um = float(um)
            lyr = v.points_layer
            px = v.sample.pixel_size_um
            if lyr is not None:
                lyr.size = um / px if px else um     # without a pixel size the dot is in px

    # ================================================================== camera -> layers
    def _schedule(self, event=None) -> None:
        if self.view is not None:
            self._timer.start()

    def update_view(self, *, force: bool = False, wait: bool = False):
        """Bring the transcripts in step with the camera: at once when the read is small, else
        in a worker (``wait=True``: always at once, for scripts). Returns the worker or None."""
        self._timer.stop()
        v = self.view
        if v is None:
            return None
        if self._worker is not None:   # one read at a time; ask again when it is done
            self._pending = True
            self._pending_force = self._pending_force or force
            return self._worker
        try:
            req = v.request(force=force)
        except (KeyError, ValueError) as err:
            self._failed(err)
            return None
        if req is None:
            self.display_view.show_state(v.state, v.density_scale())
            return None
        if wait or self._small(v, req):
            try:
                v.apply(req, v.compute(req))
            except (KeyError, ValueError, OSError) as err:
                self._failed(err)
                return None
            self.display_view.show_state(v.state, v.density_scale())
            return None
        return self._start(v, req)

    @staticmethod
    def _small(v: TranscriptsView, req) -> bool:
        if isinstance(req, DensityRequest):
            return req.flt.min_quality is None      # sums of the bins x genes matrix: no row read
        return isinstance(req, PointsRequest) and v.state.n_in_view <= SYNC_MAX_POINTS * 2.25

    def _start(self, v: TranscriptsView, req):
        from napari.qt.threading import create_worker

        self._generation += 1
        gen = self._generation
        what = "density" if isinstance(req, DensityRequest) else "transcripts in view"
        self.display_view.show_reading(f"Reading the {what}…")
        worker = create_worker(v.compute, req, _progress={"desc": f"Reading the {what}", "total": 0})
        worker.returned.connect(lambda result, v=v, req=req, gen=gen: self._done(v, req, result, gen))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return worker

    def _done(self, v: TranscriptsView, req, result, gen: int) -> None:
        if gen != self._generation or v is not self.view:
            return   # an older read, or another sample meanwhile
        try:
            v.apply(req, result)
        except (KeyError, ValueError, RuntimeError) as err:   # the layer went away meanwhile
            self._failed(err)
            return
        self.display_view.show_state(v.state, v.density_scale())

    def _finished(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            force, self._pending_force = self._pending_force, False
            self.update_view(force=force)

    def _failed(self, err) -> None:
        log.error("transcripts: %s", err, exc_info=err if isinstance(err, BaseException) else None)
        self.last_error = str(err)
        self.display_view.show_error(str(err))
        notify(f"Transcripts: {err}", "warning")

    def _on_layer_inserted(self, event=None) -> None:
        lyr = getattr(event, "value", None)
        if lyr is None or lyr.metadata.get("carspatial_role") not in (ROLE_DENSITY, ROLE_POINTS):
            self._raise_timer.start()

    def raise_transcripts(self) -> None:
        """Every sample's transcript layers above the cell layers and colourings."""
        for v in list(self._views.values()):
            v.raise_layers()

    def closeEvent(self, event):  # noqa: N802 - Qt API
        cam = camera(self.viewer)
        for e in (cam.events.center, cam.events.zoom):
            with contextlib.suppress(TypeError, ValueError):
                e.disconnect(self._schedule)
        with contextlib.suppress(TypeError, ValueError):
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        super().closeEvent(event)
