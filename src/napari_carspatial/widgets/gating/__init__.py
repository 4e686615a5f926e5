"""The "Gating" dock (a package of small views over the headless gating model).

* :mod:`.dock`: :class:`GatingWidget`, the sections composed over one
  :class:`~napari_carspatial.editing.gating.GatingSession`, and the slide preview;
* :mod:`.views`: the sections (gate a marker, gates, rules, share);
* :mod:`.histogram`: the histogram canvas with a draggable threshold.
"""

from ..._napari import POSITIVE_COLOR, PREVIEW_NAME
from .dock import GatingWidget
from .views import DEBOUNCE_MS

__all__ = ["DEBOUNCE_MS", "POSITIVE_COLOR", "PREVIEW_NAME", "GatingWidget"]
