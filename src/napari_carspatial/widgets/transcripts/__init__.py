"""The "Transcripts" dock (a package of small views over :class:`~napari_carspatial._napari.TranscriptsView`).

* :mod:`.dock`: :class:`TranscriptsWidget`: the sample, the camera-driven refill (debounced,
  in a worker when slow), the sections;
* :mod:`.genes`: the searchable gene list (choose genes, their colours);
* :mod:`.display`: density / points, the cap, the quality filter, the note of what is shown;
* :mod:`.celltypes`: cell types from genes (marker scores or Leiden) into a table column.
"""

from .dock import DEBOUNCE_MS, SYNC_MAX_POINTS, TranscriptsWidget

__all__ = ["DEBOUNCE_MS", "SYNC_MAX_POINTS", "TranscriptsWidget"]
