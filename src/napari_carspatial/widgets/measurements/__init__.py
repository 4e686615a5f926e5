"""The "Measurements" dock: one row per cell (QuPath's "Show detection measurements") and one row
per region, sortable, filterable by class / ROI / region, a click centres the cell, CSV export.

* :mod:`.table_model`: :class:`CellTableModel`, a ``QAbstractTableModel`` over the headless
  :class:`~napari_carspatial.model.measurements.CellMeasurements` columns (no per-cell widgets:
  a million cells sort and filter with numpy, only the rows on screen are formatted);
* :mod:`.dock`: :class:`MeasurementsWidget`.
"""

from .dock import MeasurementsWidget
from .table_model import CellTableModel

__all__ = ["CellTableModel", "MeasurementsWidget"]
