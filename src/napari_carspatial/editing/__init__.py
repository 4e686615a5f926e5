"""Headless sessions for what a reviewer does by hand: curation, segmentation correction, gating.

No napari, no Qt: the docks only collect parameters and call these; scripts, the CLI and the
batch use them the same way. Each session keeps its own undo history.

* :class:`CurationSession` (:mod:`.curation`): selection, assign / exclude / include / confirm,
  undo / redo, regions, audit trail, saving, autosave (:class:`Autosaver`) and recovery
  (:class:`Recovery`).
"""

from .autosave import AutosaveJob, Autosaver, Recovery, run_now
from .curation import CurationSession

__all__ = ["AutosaveJob", "Autosaver", "CurationSession", "Recovery", "run_now"]
