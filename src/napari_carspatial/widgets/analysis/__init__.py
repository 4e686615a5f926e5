"""The "Analysis" dock: region statistics (a package of small views).

* :mod:`.dock`: :class:`AnalysisWidget` (sample, cell-type column, statistic, run / cancel in a
  worker, stored results, engaged cell pairs on the slide);
* :mod:`.setup`: regions, pixel size, graph and contact definition, intervals, ligand-receptor;
* :mod:`.roles`: the role mapping (which types are tumour, CAR T, myeloid, ...), editable, saved;
* :mod:`.results`: figure, table in plain words with intervals, exports.
"""

from .dock import ROLE_ENGAGED, AnalysisWidget
from .setup import WHOLE_LABEL

__all__ = ["ROLE_ENGAGED", "WHOLE_LABEL", "AnalysisWidget"]
