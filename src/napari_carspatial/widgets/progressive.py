"""Show a sample fast: visible channels and cell outlines first, everything slow after.

* napari spends ~0.1-0.2 s building each image layer (Qt controls, vispy visuals). A 30-40
  channel panel would keep the user waiting seconds for channels that are hidden anyway, so the
  hidden channels are added in small batches from the Qt event loop once the first frame is up.
  Every channel still ends up as its own layer, below the sample's outlines.
* Several acquisitions (a steinbock folder, an ``.mcd``) are arranged as File > Open arranges
  them (:func:`arrange`): four or more small ones with the same channels as one tiled montage
  sample (:mod:`napari_carspatial.model.montage`), others side by side; the tiles are outlined
  and named on a Shapes layer.
* A sample with a mask and no cell table shows its layers first; :class:`SampleJobs` then
  measures its cells in a napari thread worker (:class:`napari_carspatial.io.measure_job.MeasureJob`:
  progress, cancel) and hands the table to the session (``table_changed``), so the legend, the
  inspector and the hover pick it up.
* A large mask opened with File > Open shows first and gets its full table-vs-mask id check
  afterwards (:func:`install_background_runner`: a napari thread worker shown in napari's activity
  indicator, a mismatch reported as an error naming the files).
* A slide stored without a pyramid shows its lazy strided levels first; :class:`SampleJobs`
  writes its multiscale cache in a worker (:mod:`napari_carspatial.io.pyramid_job` over
  :mod:`napari_carspatial.io.pyramid_cache`) and then switches the sample's image layers to the
  cached levels (:func:`switch_image_levels`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from qtpy.QtCore import QObject, QTimer, Signal

from .._napari import (
    META_CHANNEL,
    ROLE_IMAGE,
    add_sample_layers,
    background_runner,
    channel_plan,
    montage_offsets,
    notify,
    prefixes,
    session_for,
    set_background_runner,
    start_edit_kernel_warm_up,
    start_kernel_warm_up,
    tile_label_data,
)

log = logging.getLogger(__name__)

#: hidden channels added per event-loop turn
BATCH = 4
#: how often a running job's progress is shown (ms)
POLL_MS = 150


# =========================================================================== arranging samples
@dataclass
class Arrangement:
    """How samples are shown together (made by :func:`arrange`; safe to make in a worker).

    Attributes
    ----------
    samples
        The samples that get layers: one montage sample, or the samples themselves.
    offsets
        World (y, x) position of each of ``samples``.
    prefixes
        Layer-name prefix of each of ``samples`` (None for one sample).
    tile_names, tile_rects
        Names and world (y0, x0, y1, x1) rectangles of the tiles (empty for one sample).
    montage_of
        The acquisitions a montage was made of (empty when ``samples`` are shown as they are).
    """

    samples: list
    offsets: list
    prefixes: list
    tile_names: list = field(default_factory=list)
    tile_rects: list = field(default_factory=list)
    montage_of: list = field(default_factory=list)

    @property
    def tiles_name(self) -> str:
        return f"{self.samples[0].name} tiles" if self.montage_of else "acquisitions"


def _scale(sample) -> tuple[float, float]:
    px = sample.pixel_size_um
    return (px, px) if px else (1.0, 1.0)


def _units(sample) -> tuple[str, str]:
    return ("um", "um") if sample.pixel_size_um else ("pixel", "pixel")


def arrange(samples, *, tile: bool = True) -> Arrangement:
    """Arrange ``samples`` as File > Open does (``_napari.samples_to_layer_data``): a tiled
    montage for four or more small acquisitions with the same channels (``tile=True``), else
    side by side. Reads the montage's pixels (at most ``model.montage.MONTAGE_MAX_BYTES``), so
    call it in a worker for folders."""
    from ..model.montage import can_montage, montage, tile_names

    samples = list(samples)
    if tile and len(samples) > 1 and can_montage(samples):
        m = montage(samples)
        sy, sx = _scale(m)
        rects = [(t["y0"] * sy, t["x0"] * sx, (t["y0"] + t["height"]) * sy, (t["x0"] + t["width"]) * sx)
                 for t in m.metadata["tiles"]]
        return Arrangement([m], [(0.0, 0.0)], [None], tile_names(samples), rects, samples)
    offsets = montage_offsets(samples)
    names, rects = [], []
    if len(samples) > 1:
        names = tile_names(samples)
        for s, (y0, x0) in zip(samples, offsets, strict=True):
            sy, sx = _scale(s)
            h, w = s.shape_yx or (0, 0)
            rects.append((y0, x0, y0 + h * sy, x0 + w * sx))
    return Arrangement(samples, offsets, prefixes(samples), names, rects)


# =========================================================================== adding layers
def add_samples_progressively(viewer, samples, *, batch: int = BATCH, on_done=None, tile: bool = True) -> list:
    """Add samples (or an :class:`Arrangement` of them) showing visible channels first; returns
    the layers added now.

    Several acquisitions are arranged by :func:`arrange` (a montage when they fit one) and get a
    Shapes layer naming the tiles. The remaining (hidden) channels are added ``batch`` at a time
    on later event-loop turns; ``on_done`` is called when all channels of all samples are in.
    """
    arr = samples if isinstance(samples, Arrangement) else arrange(samples, tile=tile)
    session = session_for(viewer)
    first, pending = [], []
    for s, off, pre in zip(arr.samples, arr.offsets, arr.prefixes, strict=True):
        first.extend(add_sample_layers(viewer, s, translate=off, prefix=pre, channels="visible"))
        hidden = [i for i, v in enumerate(_visible(viewer, s)) if not v]
        for k in range(0, len(hidden), batch):
            pending.append((s, off, pre, hidden[k:k + batch]))
    if arr.tile_rects:
        sid = session.register(arr.samples[0]) if arr.montage_of else None
        data, meta, _ = tile_label_data(arr.tile_names, arr.tile_rects, sid=sid, name=arr.tiles_name,
                                        units=_units(arr.samples[0]))
        first.append(viewer.add_shapes(data, **meta))
        viewer.reset_view()   # napari fits the first layer only; show every tile

    def _next():
        if not pending:
            if on_done is not None:
                on_done()
            return
        s, off, pre, idx = pending.pop(0)
        try:
            selected = set(viewer.layers.selection)
            active = viewer.layers.selection.active
            add_sample_layers(viewer, s, translate=off, prefix=pre, channels=idx, labels=False)
            # background additions must not steal the layer the user is working on
            viewer.layers.selection.clear()
            viewer.layers.selection.update(lyr for lyr in selected if lyr in viewer.layers)
            if active is not None and active in viewer.layers:
                viewer.layers.selection.active = active
        except Exception:  # noqa: BLE001 - a closed viewer must not raise from a timer
            log.debug("adding hidden channels stopped", exc_info=True)
            return
        QTimer.singleShot(0, _next)

    QTimer.singleShot(0, _next)
    return first


def _visible(viewer, sample) -> list[bool]:
    session = session_for(viewer)
    sid = session.register(sample)
    return channel_plan(sample, session.cache(sid))["visible"] if sample.image else []


# =========================================================================== work after the layers
#: job kinds of :class:`SampleJobs`
MEASURE, PYRAMID = "measure", "pyramid"


class SampleJobs(QObject):
    """Slow work on a viewer's samples after their layers are shown, in a thread worker, one job
    at a time (they all read the whole slide; in turn they keep memory bounded):

    * ``measure(sid)``: the cells of a sample with a mask and no table
      (:class:`~napari_carspatial.io.measure_job.MeasureJob`). The sample is busy in the session
      meanwhile (``set_busy``); when done, on the main thread, the table is stored and the
      session told (``table_changed(sid, structure=True)``): hover, colouring, legend and
      inspector follow.
    * ``cache_pyramid(sid)``: the pyramid cache of a slide stored without a pyramid
      (:class:`~napari_carspatial.io.pyramid_job.PyramidJob`); when done, the sample's image
      layers switch to the cached levels (same pixels; every later open reads them directly).

    ``changed`` is emitted every :data:`POLL_MS` ms while a job runs (read :attr:`job`,
    :meth:`message`); ``cancel()`` stops the running job and drops the queue (nothing is stored).
    A sample that leaves the viewer is cancelled.
    """

    #: the state changed (a job started, progressed, ended)
    changed = Signal()
    #: a sample's cells were measured and its table stored (sid); emitted when the job is over
    measured = Signal(str)
    #: a sample's pyramid was cached and its layers switched to it (sid)
    pyramid_cached = Signal(str)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.queue: list[tuple[str, str]] = []
        self.sid: str | None = None
        self.kind: str | None = None
        self.job = None
        self.worker = None
        self.last_message = ""
        self._stored: tuple[str, str] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.changed.emit)
        session.events.sample_removed.connect(self._on_removed)

    # ------------------------------------------------------------------ API
    @property
    def running(self) -> bool:
        return self.job is not None

    def measure(self, sid: str) -> bool:
        """Queue measuring sample ``sid``'s cells; False when it needs none or is queued."""
        from ..io.measure_job import needs_measuring

        return self._queue(MEASURE, sid, needs_measuring(self.session.sample(sid)))

    def cache_pyramid(self, sid: str) -> bool:
        """Queue caching sample ``sid``'s pyramid; False when it needs none or is queued."""
        from ..io.pyramid_job import FLAT, pyramid_state

        return self._queue(PYRAMID, sid, pyramid_state(self.session.sample(sid)) == FLAT)

    def cancel(self) -> None:
        """Stop the running job and drop the queue."""
        self.queue.clear()
        if self.job is not None:
            self.job.cancel()
            self.changed.emit()

    def message(self) -> str:
        if self.job is None:
            return self.last_message
        if self.job.stage == "done":           # finished in the worker, not applied yet
            return f"{self.job.message()[:-1]}; applying…"
        return self.job.message()

    def close(self) -> None:
        self.cancel()
        self._timer.stop()
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.session.events.sample_removed.disconnect(self._on_removed)

    # ------------------------------------------------------------------ running
    def _queue(self, kind: str, sid: str, needed: bool) -> bool:
        if not needed or (kind, sid) == (self.kind, self.sid) or (kind, sid) in self.queue:
            return False
        self.queue.append((kind, sid))
        if self.job is None:
            self._next()
        return True

    def _make(self, kind: str, sid: str):
        from ..io.measure_job import MeasureJob, needs_measuring
        from ..io.pyramid_job import FLAT, PyramidJob, pyramid_state

        s = self.session.sample(sid)
        if kind == MEASURE and needs_measuring(s):
            return MeasureJob(s), f"Measuring the cells of {s.name}"
        if kind == PYRAMID and pyramid_state(s) == FLAT:
            return PyramidJob(s), f"Caching a pyramid of {s.name}"
        return None, ""

    def _next(self) -> None:
        from napari.qt.threading import create_worker

        while self.queue:
            kind, sid = self.queue.pop(0)
            job, desc = self._make(kind, sid)
            if job is None:
                continue
            self.sid, self.kind, self.job = sid, kind, job
            if kind == MEASURE:
                self.session.set_busy(sid, "measuring its cells")
            worker = create_worker(job.run, _progress={"desc": desc, "total": 0}, _ignore_errors=True)
            worker.returned.connect(lambda res, sid=sid, kind=kind, job=job: self._on_returned(sid, kind, job, res))
            worker.errored.connect(lambda err, job=job: self._on_error(job, err))
            worker.finished.connect(lambda sid=sid: self._on_finished(sid))
            self.worker = worker
            self._timer.start()
            worker.start()
            self.changed.emit()
            return

    def _on_returned(self, sid: str, kind: str, job, result) -> None:
        s = self.session.sample(sid)
        if s is None or s is not job.sample or job.cancelled:
            return
        try:
            if kind == MEASURE:
                job.store(result)
                self.session.set_busy(sid, None)       # idle before the docks hear of the table
                self.session.table_changed(sid, structure=True, reason="cells measured from the mask")
            else:
                job.store(result)
                switch_image_levels(self.session, sid)
        except Exception as err:  # noqa: BLE001 - a bad result is reported, never raised into Qt
            self._on_error(job, err)
            return
        self.last_message = job.message()
        self._stored = (kind, sid)
        notify(self.last_message, "info")

    def _on_error(self, job, err) -> None:
        from ..model import SampleError

        if job.cancelled:
            job.stage = "cancelled"
            self.last_message = job.message()
            return
        if isinstance(err, SampleError):
            self.last_message = str(err)
        else:
            log.error("%s of %s failed", type(job).__name__, job.sample.name, exc_info=err)
            self.last_message = f"{job.message()} ({type(err).__name__}: {err})"
        notify(self.last_message, "error")

    def _on_finished(self, sid: str) -> None:
        if self.kind == MEASURE:
            self.session.set_busy(sid, None)
        self.sid, self.kind, self.job, self.worker = None, None, None, None
        self._timer.stop()
        stored, self._stored = self._stored, None
        self.changed.emit()
        if stored is not None:
            (self.measured if stored[0] == MEASURE else self.pyramid_cached).emit(stored[1])
        if self.queue:
            self._next()

    def _on_removed(self, event) -> None:
        if event.sid == self.sid and self.job is not None:
            self.job.cancel()
        self.queue = [(k, sid) for k, sid in self.queue if sid != event.sid]


def switch_image_levels(session, sid: str) -> list:
    """Show sample ``sid``'s current ``sample.image`` pyramid in its image layers (one per
    channel, found by the channel name they carry); contrast, colour and visibility stay.
    Returns the layers switched."""
    s = session.sample(sid)
    if s is None or not s.image:
        return []
    index = {n: i for i, n in enumerate(s.channel_names)}
    done = []
    for lyr in session.layers_of(sid, ROLE_IMAGE):
        c = index.get((lyr.metadata or {}).get(META_CHANNEL))
        if c is None:
            continue
        levels = [lvl[c] for lvl in s.image]
        lyr.data = levels if len(levels) > 1 else levels[0]
        done.append(lyr)
    return done


# =========================================================================== the reader's after-open work
#: the after-open work starts this long after the last layer of its sample is in (the first frame is drawn)
FIRST_FRAME_MS = 500
#: napari's shape and edit kernels are warmed this long after the widgets load when no opened
#: sample started it sooner (a fresh install compiles them for ~15 s: not beside a first open)
EDIT_WARM_UP_IDLE_MS = 20_000
#: how often (ms) and how many times it looks for the sample's layers before starting anyway
WAIT_STEP_MS, WAIT_TRIES = 50, 200
#: workers of :func:`run_after_open` still running (kept alive until they finish)
_after_open: set = set()


def run_after_open(sid: str, job) -> None:
    """The reader's background runner: start ``job`` (an
    :class:`~napari_carspatial.io.measure_job.IdCheckJob`) in a napari thread worker once the
    layers of sample ``sid`` are in and the frame drawn (:data:`FIRST_FRAME_MS` after the last one),
    shown in napari's activity indicator
    (bottom right) meanwhile. The sample is not marked busy (nothing writes its table: edits and
    saves go on); a problem is an error notification (also kept in ``sample.metadata["id_check"]``).
    The check stops when the sample leaves the viewer."""

    tries, seen = [0], [False]

    def when_shown():
        # viewer.open inserts the layers one by one and napari's progress bar turns the event loop
        # meanwhile: wait until every layer of the sample is in, then for the frame to be drawn, so
        # the worker never competes with the open itself for the CPU
        sessions = _sessions_showing(sid)
        if sessions:
            seen[0] = True
        elif seen[0]:
            return          # shown, then closed before its check began: nothing left to check
        want = getattr(job, "n_layers", 0) or 1
        if tries[0] < WAIT_TRIES and (not sessions or len(sessions[0].layers_of(sid)) < want):
            tries[0] += 1
            QTimer.singleShot(WAIT_STEP_MS, when_shown)
            return
        QTimer.singleShot(FIRST_FRAME_MS, start)

    def start():
        from napari.qt.threading import create_worker

        start_edit_kernel_warm_up()   # the sample is on screen: what a first lasso or edit needs
        sessions = _sessions_showing(sid)
        if seen[0] and not sessions:
            return          # closed during the last wait

        def removed(event):
            if event.sid == sid:
                job.cancel()

        for sess in sessions:
            sess.events.sample_removed.connect(removed)
        worker = create_worker(job.run, _progress={"desc": f"Checking the cell ids of {job.sample.name}", "total": 0},
                               _ignore_errors=True)

        def done(problem):
            job.sample.metadata["id_check"] = problem or "ok"
            if problem:
                notify(problem + " The cells shown are not this table's: close the sample and open the matching "
                       "table and mask.", "error")

        def failed(err):
            if job.cancelled:
                return
            log.error("id check of %s failed", job.sample.name, exc_info=err)
            notify(f"{job.sample.name}: the cell ids could not be checked against the mask "
                   f"({type(err).__name__}: {err}).", "warning")

        def finished():
            _after_open.discard(worker)
            for sess in sessions:
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    sess.events.sample_removed.disconnect(removed)

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        _after_open.add(worker)
        worker.start()

    QTimer.singleShot(0, when_shown)


def _sessions_showing(sid: str) -> list:
    """The session of the current viewer when it shows sample ``sid`` (File > Open lands there)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return []
    session = session_for(viewer)
    return [session] if session.sample(sid) is not None else []


def install_background_runner() -> None:
    """Make :func:`run_after_open` the reader's background runner (once; done when the widgets
    package is imported, i.e. when any of our docks is opened), and warm napari's label kernels in
    a background thread meanwhile (``_napari.start_kernel_warm_up``: the first sample opened then
    draws without compiling them, ~3 s at 10^6 cells). The kernels a first lasso or edit needs
    are compiled once a sample is on screen (``run_after_open``), or after
    :data:`EDIT_WARM_UP_IDLE_MS` when no open asked for them (``_napari.start_edit_kernel_warm_up``)."""
    if background_runner() is None:
        set_background_runner(run_after_open)
    if start_kernel_warm_up():
        QTimer.singleShot(EDIT_WARM_UP_IDLE_MS, start_edit_kernel_warm_up)
