"""The "Legend" dock: what each colour means, how many cells, and which ones to show (a package
of small views over the session's cell colouring).

For a categorical column every category gets a row: visibility checkbox, colour swatch, name,
cells in the sample (and %), cells in the current view (follows the camera, debounced) and in
the selected region (when a shape of a Shapes layer is selected). Double-click a name to show
only that category (again to show all), double-click a swatch to change its colour (saved to
``uns[f"{key}_colors"]``), right-click for the same actions. For a numeric column: colormap,
range slider and colour bar.

* :mod:`.dock`: :class:`LegendWidget` (sample, column, style, counts);
* :mod:`.categories`: the category table; :mod:`.values`: the numeric panel.
"""

from .categories import COL_N, COL_NAME, COL_PCT, COL_REGION, COL_SHOW, COL_VIEW, HEADERS
from .dock import DEBOUNCE_MS, LegendWidget
from .values import COLORMAPS

__all__ = ["COLORMAPS", "COL_N", "COL_NAME", "COL_PCT", "COL_REGION", "COL_SHOW", "COL_VIEW", "DEBOUNCE_MS",
           "HEADERS", "LegendWidget"]
