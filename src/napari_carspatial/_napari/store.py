"""Where samples live while napari shows them.

Layers carry only a small id in ``layer.metadata`` (never the data itself); the id resolves to the
``Sample`` through this registry. Widgets ask :func:`samples_in_viewer` instead of finding each
other through dock-widget titles.
"""

from __future__ import annotations

import itertools
import threading
import weakref

from ..model import Sample

#: key in ``layer.metadata`` holding the sample id
META_SAMPLE = "carspatial_sample"
#: key in ``layer.metadata`` holding the layer's role: "image", "labels", ...
META_ROLE = "carspatial_role"
#: key in ``layer.metadata`` holding the channel name of an image layer
META_CHANNEL = "carspatial_channel"

_lock = threading.Lock()
_counter = itertools.count(1)
_samples: dict[str, Sample] = {}


def register(sample: Sample) -> str:
    """Register ``sample`` and return its id (the same id when registered twice)."""
    with _lock:
        for sid, s in _samples.items():
            if s is sample:
                return sid
        sid = f"s{next(_counter)}-{sample.name}"
        _samples[sid] = sample
        return sid


def get(sid: str) -> Sample | None:
    return _samples.get(sid)


def forget(sid: str) -> None:
    with _lock:
        _samples.pop(sid, None)


def sample_id_of(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(META_SAMPLE)


def sample_of(layer) -> Sample | None:
    sid = sample_id_of(layer)
    return None if sid is None else get(sid)


def samples_in_viewer(viewer) -> dict[str, Sample]:
    """Samples that have at least one layer in ``viewer``, in layer order."""
    out: dict[str, Sample] = {}
    for layer in viewer.layers:
        sid = sample_id_of(layer)
        if sid and sid not in out and get(sid) is not None:
            out[sid] = get(sid)
    return out


def layers_of(viewer, sid: str, role: str | None = None) -> list:
    return [
        lyr for lyr in viewer.layers
        if sample_id_of(lyr) == sid and (role is None or lyr.metadata.get(META_ROLE) == role)
    ]


# Forget samples whose layers are all gone, so closing layers frees memory.
_watched: weakref.WeakSet = weakref.WeakSet()


def watch_viewer(viewer) -> None:
    """Drop samples from the registry when their last layer is removed from ``viewer``."""
    if viewer in _watched:
        return
    _watched.add(viewer)

    def _on_removed(event=None):
        alive = {sample_id_of(lyr) for lyr in viewer.layers}
        for sid in list(_samples):
            if sid not in alive and not _in_other_viewers(sid, viewer):
                forget(sid)

    viewer.layers.events.removed.connect(_on_removed)


def _in_other_viewers(sid: str, viewer) -> bool:
    for v in list(_watched):
        if v is viewer:
            continue
        try:
            if any(sample_id_of(lyr) == sid for lyr in v.layers):
                return True
        except RuntimeError:  # viewer already closed
            continue
    return False
