"""Headless sessions for what a reviewer does by hand: curation, segmentation correction, gating.

No napari, no Qt: the docks only collect parameters and call these; scripts, the CLI and the
batch use them the same way. Each session keeps its own undo history.

* :class:`CurationSession` (:mod:`.curation`): selection, assign / exclude / include / confirm,
  undo / redo, regions, audit trail, saving, autosave (:class:`Autosaver`) and recovery
  (:class:`Recovery`, :mod:`.autosave`).
* :class:`SegmentationEditor` (:mod:`.segmentation`): full-resolution crops of a mask, commit
  (write back, re-measure the affected cells, update the table); :class:`RegionEdit`
  (:mod:`.region_edit`): one open region with its cell selection, the operations of
  :mod:`.seg_ops` and its own undo / redo stack.
* :class:`GatingSession` (:mod:`.gating`): the marker and threshold being gated, the gates, the
  phenotype rules as typed, applying them to one or more samples, export / import.
"""

from .autosave import AutosaveJob, Autosaver, Recovery, run_now
from .curation import CurationSession
from .gating import GatingResult, GatingSession
from .region_edit import RegionEdit
from .segmentation import CommitResult, EditRegion, SegmentationEditor

__all__ = ["AutosaveJob", "Autosaver", "CommitResult", "CurationSession", "EditRegion", "GatingResult", "GatingSession",
           "Recovery", "RegionEdit", "SegmentationEditor", "run_now"]
