"""The gating preview on the slide: positive cells of a threshold, live. No Qt.

With a cell mask shown, positive cells are filled or outlined through the sample's colouring
(a lazy lookup-table Labels layer: a new threshold is a new lut, fast at a million cells);
without one, dots at their centroids (a Points layer).
"""

from __future__ import annotations

import numpy as np

from ..model import spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from .session import META_ROLE, META_SAMPLE, ROLE_LABELS

#: name of the live-preview highlight (layer "<sample>: gate preview")
PREVIEW_NAME = "gate preview"
#: colour of positive cells, on the slide and in the histogram
POSITIVE_COLOR = "#ffd400"
#: ``layer.metadata`` role of the fallback Points preview layer
ROLE_PREVIEW_POINTS = "gate_preview_points"
#: opacity of the preview layer
PREVIEW_OPACITY = 0.9


class PointsPreview:
    """Preview for a sample without a cell mask: a Points layer at positive cells' centroids."""

    def __init__(self, session, sid: str):
        self.session = session
        self.viewer = session.viewer
        self.sid = sid

    def layer(self):
        found = self.session.layers_of(self.sid, ROLE_PREVIEW_POINTS)
        return found[0] if found else None

    def show(self, mask: np.ndarray, *, outline: bool = False):
        sample = self.session.sample(self.sid)
        t = sample.table
        yx = spatial_to_yx(np.asarray(t.obsm[SPATIAL_KEY], dtype=float))[np.asarray(mask, bool)]
        scale, translate, units = self.session.geometry(self.sid)
        size = max(3.0, 8.0 / float(scale[0]))  # ~8 µm dots, in data (pixel) units
        layer = self.layer()
        if layer is None:
            layer = self.viewer.add_points(
                yx, name=f"{sample.name}: {PREVIEW_NAME}", scale=scale, translate=translate, size=size, units=units,
                face_color=POSITIVE_COLOR, border_width=0, opacity=PREVIEW_OPACITY, blending="translucent",
                metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_PREVIEW_POINTS})
        else:
            layer.data = yx
            layer.size = size
            layer.face_color = POSITIVE_COLOR
            layer.visible = True
        # outline: hollow rings, so the stain inside each positive cell stays visible
        layer.face_color = "transparent" if outline else POSITIVE_COLOR
        layer.border_color = POSITIVE_COLOR
        layer.border_width = 0.25 if outline else 0
        layer.border_width_is_relative = True
        return layer

    def clear(self):
        layer = self.layer()
        if layer is not None:
            self.viewer.layers.remove(layer)


class ColoringPreview:
    """Preview through the sample's colouring (a lazy lookup-table Labels layer: fast at 1M cells)."""

    def __init__(self, session, sid: str):
        self.col = session.coloring(sid)

    def layer(self):
        return self.col.highlight_layer(PREVIEW_NAME)

    def show(self, mask: np.ndarray, *, outline: bool = False):
        return self.col.highlight(np.asarray(mask, bool), color=POSITIVE_COLOR, name=PREVIEW_NAME,
                                  mode="outline" if outline else "filled", opacity=PREVIEW_OPACITY)

    def clear(self):
        self.col.clear_highlight(PREVIEW_NAME)


def make_preview(session, sid: str):
    """The slide preview for ``sid``: positive cells filled / outlined through the colouring when
    the sample has a cell mask shown, else dots at their centroids."""
    sample = session.sample(sid)
    if sample is not None and sample.labels and session.layers_of(sid, ROLE_LABELS):
        return ColoringPreview(session, sid)
    return PointsPreview(session, sid)
