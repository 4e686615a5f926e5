"""Which cell-type column to use: the adjudicated one once it exists.

:func:`preferred_cell_type_column` is what analysis and cohort code should call when the user did
not name a column. Only the standard library and pandas-free checks on ``obs`` are used, so any
layer may import it (it has no other dependency in the package).
"""

from __future__ import annotations

import json

ADJUDICATED_SUFFIX = "_adjudicated"
CURATED_SUFFIX = "_curated"
#: cell-type column names seen in real data, most specific first
TYPE_COLUMN_CANDIDATES = ("cell_type", "celltype", "CellType", "cell_types", "Cell_Type", "cellType",
                          "phenotype", "Phenotype", "cell_phenotype", "Class", "class", "cluster", "leiden",
                          "louvain")
#: obs columns ending in _adjudicated / _curated that are not cell types
_NOT_TYPES = {"excluded", "exclude_reason"}


def _obs_columns(table) -> list[str]:
    obs = getattr(table, "obs", table)
    return [str(c) for c in obs.columns]


def _review_final_key(table) -> str | None:
    uns = getattr(table, "uns", None)
    if uns is None:
        return None
    meta = (uns.get("carspatial") or {}).get("review") if hasattr(uns, "get") else None
    if isinstance(meta, dict):
        key = meta.get("final_key")
        if isinstance(key, str):
            return key
    if isinstance(meta, str):
        try:
            key = json.loads(meta).get("final_key")
        except (ValueError, AttributeError):
            return None
        return key if isinstance(key, str) else None
    return None


def base_type_column(table) -> str | None:
    """The original cell-type column (the first of :data:`TYPE_COLUMN_CANDIDATES` present)."""
    cols = set(_obs_columns(table))
    return next((c for c in TYPE_COLUMN_CANDIDATES if c in cols), None)


def preferred_cell_type_column(table) -> str | None:
    """The cell-type column analysis should use by default.

    Order: the adjudicated column of a review export (``uns["carspatial"]["review"]["final_key"]``),
    any other ``<type>_adjudicated`` column, the curated column recorded by the curation
    (``uns["carspatial"]["curation"]["curated_key"]``), any ``<type>_curated`` column, then the
    original column (``cell_type``, ``CellType``, ``phenotype``, ...). None when there is none.

    Parameters
    ----------
    table
        AnnData (or a DataFrame of its ``obs``).
    """
    cols = _obs_columns(table)
    have = set(cols)
    key = _review_final_key(table)
    if key and key in have:
        return key
    adj = [c for c in cols if c.endswith(ADJUDICATED_SUFFIX) and c[: -len(ADJUDICATED_SUFFIX)] not in _NOT_TYPES]
    if adj:
        base = base_type_column(table)
        return next((c for c in adj if base and c == base + ADJUDICATED_SUFFIX), adj[0])
    uns = getattr(table, "uns", None)
    cur = ((uns.get("carspatial") or {}).get("curation") or {}).get("curated_key") if hasattr(uns, "get") else None
    if isinstance(cur, str) and cur in have:
        return cur
    curated = [c for c in cols if c.endswith(CURATED_SUFFIX) and c[: -len(CURATED_SUFFIX)] not in _NOT_TYPES]
    if curated:
        return curated[0]
    return base_type_column(table)
