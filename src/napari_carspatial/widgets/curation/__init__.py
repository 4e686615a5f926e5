"""The "Curation" dock (a package of small views over the headless curation session).

Tabs: **Cells** (select on the slide, assign / exclude / include / confirm, undo), **Regions**
(named ROIs with a class, their cells and review state, GeoJSON), **Audit trail** (every action,
CSV). Top: sample, reviewer, blinded review, progress, "Save as…" (a new name proposed; the
sample's own files are never overwritten) and "Export SpatialData…". Edits are autosaved to a
recovery file in the user cache folder (in a worker) every few edits or minutes, before
switching sample and when the dock closes; a recovery file newer than the sample is offered in a
banner (never a modal dialog).

* :mod:`.dock`: :class:`CurationWidget` (composition, sample switching, edits, keys);
* :mod:`.header`, :mod:`.saving`, :mod:`.recovery` (autosave in workers, the recovery banner);
* :mod:`.cells`, :mod:`.regions`, :mod:`.audit`: the tabs.
"""

from .audit import AUDIT_COLUMNS
from .dock import REDO_KEY, TYPE_KEYS, UNDO_KEY, CurationWidget

__all__ = ["AUDIT_COLUMNS", "REDO_KEY", "TYPE_KEYS", "UNDO_KEY", "CurationWidget"]
