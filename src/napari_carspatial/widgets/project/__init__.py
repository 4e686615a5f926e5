"""The "Project" dock: a review project's slides for the current reviewer (a package of small views
over the headless :class:`~napari_carspatial._napari.ProjectWorkspace`).

Top: the project folder, the current reviewer (the viewer's, shared with the Curation dock), the
blinding. **Slides**: the slides assigned to the reviewer with their role (read 1 / read 2 /
adjudication), status, share of cells reviewed and due date; "Open next" opens the next one in
one click (work in progress first, then the earliest due), a double-click opens any; Save writes
the reader's working copy, "Mark done" finishes the read. **Disagreements** (both reads done, or
the adjudication): the disagreement layer, stepping through the cells the reads differ on, and
the adjudicator's decisions.

* :mod:`.dock`: :class:`ProjectWidget` (composition, opening in a worker, closing with the viewer);
* :mod:`.slides`: the slides table; :mod:`.disagreements`: stepping and decisions.
"""

from .dock import ProjectWidget

__all__ = ["ProjectWidget"]
