"""The "Segmentation" dock: correct a sample's cell mask region by region, re-measure what changed
(a package of small views over the headless :mod:`napari_carspatial.editing`).

Workflow:

1. **Edit region** (:mod:`.region`): "Edit view" or "Edit rectangle…" loads that part of
   the mask at full resolution into an editable labels layer ``"<sample> edit"`` placed exactly
   over the slide. napari's paint, erase, fill and picker work on it.
2. **Cells** (:mod:`.tools`): "Pick cells" (or Alt+click in any mode) adds / removes the cell
   under the cursor to the selection (a white veil); without a selection the layer's selected
   label is used.
3. **Operations** (:mod:`.operations`; shortcuts on the viewer while the dock is open):

   ============================ ============
   Merge selected cells          Shift+M
   Split by a drawn line         Shift+K
   Split by seeds (watershed)    Shift+W
   Delete selected cells         Shift+D
   New cell from a polygon       Shift+N
   Grow / shrink by N px         Shift+G / Shift+H
   Undo / redo                   Ctrl+Z / Ctrl+Shift+Z
   Commit                        Shift+Enter
   ============================ ============

4. **Commit** (:mod:`.commit`) writes the changed pixels back to the mask store (the working copy
   next to the mask, never the original), re-measures only the affected cells and updates the
   table (new cells "unassigned", merged cells keep the type covering most of their area).
5. **Save corrected mask…** writes ``<stem>.corrected.zarr`` next to the original mask and the
   table under a name you choose.
"""

from .dock import SegmentationWidget
from .operations import NUCLEAR_NAMES, SHORTCUTS
from .region import ROLE_EDIT, ROLE_EDIT_SELECTION, ROLE_EDIT_TOOL

__all__ = ["NUCLEAR_NAMES", "ROLE_EDIT", "ROLE_EDIT_SELECTION", "ROLE_EDIT_TOOL", "SHORTCUTS", "SegmentationWidget"]
