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
    if _detect(path) is None:
        return None
    return read_path


def read_path(path):
    """Read ``path`` into layer-data tuples (images per channel, then cell labels)."""
    from ..io import read_sample

    if isinstance(path, list):
        path = path[0]
    try:
        result = read_sample(path, measure=False)
    except SampleError as err:
        return _fail(str(err))
    except Exception as err:  # an unexpected failure still gets a readable message
        log.exception("could not read %s", path)
        return _fail(f"{path}: could not be read ({type(err).__name__}: {err})")
    samples = result if isinstance(result, list) else [result]
    _tell_unmeasured(samples)
    return outlined(tiles_first(_layers.samples_to_layer_data(samples)))


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

