"""The "Analysis" dock: region statistics (a package of small views).

* :mod:`.dock`: :class:`AnalysisWidget` (sample, statistic, run / cancel in a worker, stored results);
* :mod:`.setup`: regions, graph, roles; :mod:`.results`: plot, table, exports.
"""

from .dock import AnalysisWidget
from .setup import ROLE_NAMES, WHOLE_LABEL

__all__ = ["ROLE_NAMES", "WHOLE_LABEL", "AnalysisWidget"]
