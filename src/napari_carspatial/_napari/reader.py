"""npe2 reader: File > Open and drag-and-drop for every format ``io.read_sample`` understands.

Bad input never reaches the user as a traceback: the reader shows a napari error notification
with the file and the problem, and returns napari's null-layer sentinel, so nothing already open
is disturbed.

The reader returns layer-data tuples for the images and the tiles, and the cell mask as a
ready ``Labels`` layer already drawn as thin outlines (napari >= 0.5.5 adds ``Layer`` objects a
reader returns as they are, napari/napari#7443; ``contour`` is not a ``Labels`` keyword, so a
tuple could only give filled cells). Everything is testable without a viewer; the metadata holds
the sample id and the layer's role, nothing else. It never looks for a viewer: the session of the
viewer the layers land in (:mod:`.session`), when one of our docks made it, claims the sample,
fits the view and shows the scale bar.

First frame first: a large mask's full id check (every pixel of level 0, ~7 s at 10^6 cells the
first time a file is opened) runs after the layers are in, in a worker, when the widgets installed
a background runner (:func:`set_background_runner`; any of our docks does): the cheap part (the
smallest level's ids must be table ids) still refuses a wrong table at once, the full check marks
the sample busy while it runs and reports a mismatch as an error naming the files. Small masks
and masks whose ids are cached are checked while they are read, as before.

Layers first: a sample with a mask and no cell table is read without measuring it (that can take
minutes on a slide and would freeze napari); the Samples dock measures it in a worker with
progress and cancel as soon as the layers are in (``widgets.progressive.CellMeasurer``), and a
notification says so.
"""

from __future__ import annotations

import logging
import os

from ..model import SampleError
from . import layers as _layers
from .notifications import notify

log = logging.getLogger(__name__)

#: ``runner(sid, job)`` runs an :class:`~napari_carspatial.io.measure_job.IdCheckJob` after the
#: layers are in (installed by the widgets: ``widgets.progressive``); None: check while reading
_background = None


def set_background_runner(runner) -> None:
    """Install (or with None remove) what runs the reader's slow after-open work off the GUI thread:
    ``runner(sid, job)`` with the sample id its layers carry and a job with ``run()`` (blocking),
    ``message()`` and ``sample``. Without one the reader does all of it before returning."""
    global _background
    _background = runner


def background_runner():
    """The installed runner (see :func:`set_background_runner`) or None."""
    return _background


def _detect(path) -> str | None:
    from ..io import detect_format

    try:
        return detect_format(path)
    except Exception:  # detection must never raise into napari
        log.debug("format detection failed for %s", path, exc_info=True)
        return None


def get_reader(path):
    """npe2 ``get_reader`` hook: claim the path when it is a sample we can open."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    from .reader_claim import working_copy_message

    if working_copy_message(path) is not None:   # claimed by name (reader_claim): one clear line
        return read_working_copy
    if _detect(path) is None:
        return None
    return read_path


def read_working_copy(path):
    """A segmentation working copy opened by File > Open: no layers, one line saying what to do."""
    from .reader_claim import working_copy_message

    if isinstance(path, list):
        path = path[0]
    return _fail(working_copy_message(path) or f"{path}: is not a sample this plugin can open.")


def read_path(path):
    """Read ``path`` into layer-data tuples (images per channel, then cell labels)."""

    if isinstance(path, list):
        path = path[0]
    runner = _background
    try:
        result = _read_with_siblings(path)
        samples = result if isinstance(result, list) else [result]
        later = _check_ids(samples, deferred=runner is not None)
    except SampleError as err:
        return _fail(str(err))
    except Exception as err:  # an unexpected failure still gets a readable message
        log.exception("could not read %s", path)
        return _fail(f"{path}: could not be read ({type(err).__name__}: {err})")
    _tell_unmeasured(samples)
    data = outlined(tiles_first(_layers.samples_to_layer_data(samples)))
    if any(s.pixel_size_um for s in samples):
        _scale_bar_now()
    if later:
        for job in later:   # the entry samples_to_layer_data made: the sid the layers carry
            sid = _layers.pending_entry(job.sample).sid
            # how many layers carry it: the runner waits until all of them are in (the first frame)
            job.n_layers = sum(1 for d in data if ((d[1].get("metadata") if isinstance(d, tuple) and len(d) > 1
                                                    else getattr(d, "metadata", None)) or {}).get(_layers.META_SAMPLE) == sid)
            runner(sid, job)
    return data


def _read_with_siblings(path):
    """``read_sample`` of ``path`` (ids checked by :func:`_check_ids`); a single TIFF image also gets
    the mask beside it (``../masks/<name>_mask.tiff``, ``../masks_<segmentation>/<name>.tiff``, see
    :func:`napari_carspatial.io.masks.find_sibling_mask`) and, when it has this image's rows, the
    cell table ``../cells.csv``. A notification names what was found."""
    from ..io import detect_format, read_sample
    from ..io.masks import find_sibling_mask, find_sibling_table

    fmt = detect_format(path)
    mask = find_sibling_mask(path) if fmt in ("tiff", "ome-tiff") and os.path.isfile(path) else None
    if mask is None:
        return read_sample(path, measure=False, check_ids=False)
    table = find_sibling_table(path)
    result = None
    if table is not None:
        try:
            result = read_sample(path, mask=mask, table=table, measure=False, check_ids=False)
            _check_ids([result], deferred=False)
        except SampleError as err:   # not this image's table: the mask alone, measured later
            log.info("%s: %s not used (%s)", path, table, err)
            result, table = None, None
    if result is None:
        try:
            result = read_sample(path, mask=mask, measure=False, check_ids=False)
        except SampleError as err:   # a file that only looks like its mask: the image alone, and why
            notify(f"{os.path.basename(path)}: {mask} beside it is not its mask ({err}); opened without cells.",
                   "warning")
            return read_sample(path, measure=False, check_ids=False)
    here = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    found = " + ".join(os.path.relpath(f, here) for f in (mask, table) if f)
    notify(f"cells from {found} (found beside {os.path.basename(path)}).", "info")
    return result


def _scale_bar_now() -> None:
    """Show the scale bar of the viewer opening the file (µm: the layers are scaled to µm), also
    when no mask is there to be styled (a raw ``.mcd``) and without any of our docks."""
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None:
            _layers.show_scale_bar(viewer)
    except Exception:  # noqa: BLE001 - a courtesy: never fail the read
        log.debug("no scale bar", exc_info=True)


def _check_ids(samples, *, deferred: bool) -> list:
    """The table-vs-mask id check of each sample (read with ``check_ids=False``): now, or (large
    masks whose ids are not cached, with a runner) the cheap part now and the jobs for later."""
    from ..io.measure_job import IdCheckJob, check_table_ids, defer_id_check

    later = []
    for s in samples:
        if s.table is None or not s.labels:
            continue
        if deferred and defer_id_check(s):
            job = IdCheckJob(s)
            job.quick()
            later.append(job)
        else:
            check_table_ids(s)
    return later


def tiles_first(layer_data: list) -> list:
    """The layer naming the tiles of several acquisitions first.

    napari fits the view to the first layer added to an empty viewer (and nothing refits it
    without one of our docks): first, the tiles layer spans every acquisition and its name band,
    so the whole montage with all its names is in view, not only the first channel's first tile.
    It then sits below the images in the layer list; the images blend additively and are black
    outside the tissue, so the outlines and names stay visible.
    """
    tiles = [d for d in layer_data if len(d) == 3 and d[2] == "shapes"
             and (d[1].get("metadata") or {}).get(_layers.META_ROLE) == _layers.ROLE_TILES]
    return tiles + [d for d in layer_data if not any(d is t for t in tiles)]


def _tell_unmeasured(samples) -> None:
    from ..io.measure_job import needs_measuring

    todo = [s.name for s in samples if needs_measuring(s)]
    if todo:
        which = todo[0] if len(todo) == 1 else f"{len(todo)} acquisitions"
        notify(f"{which}: a mask and no cell table; the Samples dock (Plugins > CAR T Spatial > Samples) "
               "measures the cells, with progress and cancel.", "info")


def outlined(layer_data: list) -> list:
    """``layer_data`` with each labels tuple replaced by a ``Labels`` layer drawn as outlines.

    Without one of our docks no session styles the cells when they arrive, and the tuple's
    keywords cannot ask for contours; the layer object can (public ``Labels.contour``).
    """
    from napari.layers import Labels

    out = []
    for item in layer_data:
        if len(item) == 3 and item[2] == "labels":
            data, meta, _ = item
            layer = Labels(data, **meta)
            _layers.style_labels(layer)
            out.append(layer)
        else:
            out.append(item)
    return out


def _fail(message: str):
    notify(message, "error")
    return [(None,)]

