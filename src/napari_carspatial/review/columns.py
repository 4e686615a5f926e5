"""Which cell-type column to use: the adjudicated one once it exists.

The rule lives in :mod:`napari_carspatial.model.cell_types` (one rule and one list of names for
the CLI, the docks, the batch and review); these are its names in the review package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.cell_types import (
    ADJUDICATED_SUFFIX,
    CURATED_SUFFIX,
    base_cell_type_key,
    find_cell_type_key,
)

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = ["ADJUDICATED_SUFFIX", "CURATED_SUFFIX", "base_type_column", "preferred_cell_type_column"]


class _ObsOnly:
    """A DataFrame of ``obs`` seen as a table (no ``uns``)."""

    def __init__(self, obs):
        self.obs = obs
        self.uns = {}


def _as_table(table):
    return table if hasattr(table, "obs") else _ObsOnly(table)


def base_type_column(table) -> str | None:
    """The original cell-type column (:func:`~napari_carspatial.model.cell_types.base_cell_type_key`).

    Parameters
    ----------
    table
        AnnData (or a DataFrame of its ``obs``).
    """
    return base_cell_type_key(_as_table(table))


def preferred_cell_type_column(table: AnnData | pd.DataFrame) -> str | None:
    """The cell-type column analysis uses by default
    (:func:`~napari_carspatial.model.cell_types.find_cell_type_key`): the adjudicated column of a
    review export, any ``<type>_adjudicated`` column, the curated column, then the original one.

    Parameters
    ----------
    table
        AnnData (or a DataFrame of its ``obs``).

    Returns
    -------
    str or None
        The column, or ``None`` when the table has no cell-type column.
    """
    return find_cell_type_key(_as_table(table))
