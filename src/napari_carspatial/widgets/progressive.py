"""Show a sample fast: visible channels and cell outlines first, the other channels right after.

napari spends ~0.1-0.2 s building each image layer (Qt controls, vispy visuals). A 30-40 channel
panel would keep the user waiting seconds for channels that are hidden anyway, so the hidden
channels are added in small batches from the Qt event loop once the first frame is up. Every
channel still ends up as its own layer, below the sample's outlines.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import QTimer

from .._napari import add_sample_layers, channel_plan, montage_offsets, prefixes, session_for

log = logging.getLogger(__name__)

#: hidden channels added per event-loop turn
BATCH = 4


def add_samples_progressively(viewer, samples, *, batch: int = BATCH, on_done=None) -> list:
    """Add samples (a montage when several) showing visible channels first; returns those layers.

    The remaining (hidden) channels are added ``batch`` at a time on later event-loop turns;
    ``on_done`` is called when all channels of all samples are in the viewer.
    """
    samples = list(samples)
    first, pending = [], []
    for s, off, pre in zip(samples, montage_offsets(samples), prefixes(samples), strict=False):
        first.extend(add_sample_layers(viewer, s, translate=off, prefix=pre, channels="visible"))
        hidden = [i for i, v in enumerate(_visible(viewer, s)) if not v]
        for k in range(0, len(hidden), batch):
            pending.append((s, off, pre, hidden[k:k + batch]))
    if len(samples) > 1:
        viewer.reset_view()

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
