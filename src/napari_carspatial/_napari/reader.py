"""npe2 reader: File > Open and drag-and-drop for every format ``io.read_sample`` understands.

Bad input never reaches the user as a traceback: the reader shows a napari error notification
with the file and the problem, and returns napari's null-layer sentinel, so nothing already open
is disturbed.
"""

from __future__ import annotations

import logging
import os
import weakref

from ..model import SampleError
from . import layers as _layers

log = logging.getLogger(__name__)
_hooked: weakref.WeakSet = weakref.WeakSet()


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
        result = read_sample(path)
    except SampleError as err:
        return _fail(str(err))
    except Exception as err:  # an unexpected failure still gets a readable message
        log.exception("could not read %s", path)
        return _fail(f"{path}: could not be read ({type(err).__name__}: {err})")
    samples = result if isinstance(result, list) else [result]
    out = _layers.samples_to_layer_data(samples)
    _style_when_added()
    return out


def _fail(message: str):
    from napari.utils.notifications import show_error

    show_error(message)
    return [(None,)]


def _style_when_added() -> None:
    """Give labels layers opened through File > Open the same outline style as the API path."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return
    from . import store

    store.watch_viewer(viewer)

    def _on_inserted(event):
        layer = event.value
        if layer.metadata.get(store.META_ROLE) == "labels" and not layer.metadata.get("_styled"):
            _layers.style_labels(layer)
            layer.metadata["_styled"] = True
            viewer.reset_view()   # fit everything opened (a montage of acquisitions included)
            if getattr(layer, "units", None) is not None and store.sample_of(layer) and store.sample_of(layer).pixel_size_um:
                _layers.show_scale_bar(viewer)

    if viewer not in _hooked:
        _hooked.add(viewer)
        viewer.layers.events.inserted.connect(_on_inserted)
