"""Trial review: review projects, blinded independent double reads, agreement, adjudication, export.

Headless (no napari, no Qt). See ``docs/review.md``.

- :func:`init_project` / :func:`load_project`: a project folder built from a cohort manifest;
  :class:`ReviewProject` assigns readers and adjudicators and tracks status and due dates.
- :meth:`ReviewProject.start_read` -> :class:`ReadSession`: one reader's locked working copy with a
  :class:`~napari_carspatial.model.curation.Curation`; the other read stays hidden until both are done.
- :func:`agreement`: percent agreement, Cohen's kappa (overall and per class), confusion matrix,
  disagreeing cells; :func:`region_agreement`: Dice / IoU per ROI class; :func:`combine_agreements`:
  across the trial with bootstrap intervals.
- :meth:`ReviewProject.start_adjudication` -> :class:`AdjudicationSession`: decide disagreements.
- :func:`export_project`: final tables with provenance; :func:`agreement_section`: the report's
  HTML fragment; :func:`preferred_cell_type_column`: the adjudicated column once it exists.

The public API is what ``__all__`` lists (documented in the API reference, ``mkdocs.yml``); import it
from this package. Submodules are implementation details: ``_name`` modules always, the others
may move without notice.
"""

from .adjudication import AdjudicationSession
from .agreement import (
    Agreement,
    RegionAgreement,
    SampleAgreement,
    TrialAgreement,
    agreement,
    combine_agreements,
    kappa_from_confusion,
    region_agreement,
)
from .columns import preferred_cell_type_column
from .export import ExportResult, export_project
from .lock import FileLock, LockError, LockInfo, break_lock, read_lock
from .project import (
    ADJUDICATED,
    DONE,
    IN_PROGRESS,
    NOT_STARTED,
    STATUSES,
    RevealError,
    ReviewProject,
    init_project,
    load_project,
    sample_code,
)
from .reads import EXCLUDED_CALL, ReadPair, ReadSession
from .report import agreement_page, agreement_section

__all__ = [
    "ADJUDICATED", "DONE", "EXCLUDED_CALL", "ReadPair", "agreement_page", "IN_PROGRESS", "NOT_STARTED", "STATUSES",
    "AdjudicationSession", "Agreement", "ExportResult", "FileLock", "LockError", "LockInfo", "ReadSession",
    "RegionAgreement", "RevealError", "ReviewProject", "SampleAgreement", "TrialAgreement", "agreement",
    "agreement_section", "break_lock", "combine_agreements", "export_project", "init_project",
    "kappa_from_confusion", "load_project", "preferred_cell_type_column", "read_lock", "region_agreement",
    "sample_code",
]

# entries a project hands out (API reference, issue 11)
from .entries import AdjudicationEntry, ReadEntry, Reviewer, SampleEntry  # noqa: E402

__all__ += ["AdjudicationEntry", "ReadEntry", "Reviewer", "SampleEntry"]
