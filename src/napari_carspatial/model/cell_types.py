"""Which ``obs`` column holds the cell types: one rule for the CLI, the docks and the batch.

:func:`resolve_cell_type_key` takes the column the user chose, else the first column of the
table whose name is a known cell-type name (:data:`CELL_TYPE_KEYS`, then :data:`CLUSTER_KEYS`),
compared without case and punctuation (``Cell Type``, ``cell.type`` and ``CellType`` are the same
name). When the curation dock has made a corrected copy ``<key>_curated`` of the found column, the
copy is used (the pathologist's corrections win) and the choice says so. A column counts only
when it holds categories (categorical, text, or integer cluster ids with fewer distinct values
than a tenth of the cells); a float column named ``phenotype_score`` is not a cell type.

A table without such a column gets a :class:`~napari_carspatial.model.SampleError` that names
the file and says how to make one (gating, clustering, or ``--cell-type-key``), never a
``KeyError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SampleError

__all__ = [
    "CELL_TYPE_KEYS",
    "CLUSTER_KEYS",
    "CURATED_SUFFIX",
    "CellTypeKey",
    "find_cell_type_key",
    "is_type_column",
    "resolve_cell_type_key",
]

#: common names of a cell-type column, in the order they are tried
CELL_TYPE_KEYS: tuple[str, ...] = (
    "cell_type", "celltype", "CellType", "cell_types", "Phenotype", "phenotype", "phenotype_gated",
    "cell_type_curated", "Class", "Classification", "cell_class", "annotation", "cell_annotation",
    "cell_type_major", "cell_type_minor", "celltype_major", "celltype_minor",
)
#: cluster annotations, tried after the cell-type names
CLUSTER_KEYS: tuple[str, ...] = (
    "cluster", "clusters", "cluster_id", "leiden", "louvain", "phenograph", "metacluster",
    "som_cluster", "kmeans",
)
#: suffix of the curated copy of a type column (``model.curation``)
CURATED_SUFFIX = "_curated"

_HOW_TO_MAKE = ("Make one by gating (the Gating dock, or a gating file in the batch config: "
                "`gating: rules.json`) or by clustering (e.g. scanpy.tl.leiden into obs['leiden']), "
                "or name an existing column with --cell-type-key.")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@dataclass(frozen=True)
class CellTypeKey:
    """The chosen cell-type column and why.

    Attributes
    ----------
    key
        ``obs`` column name.
    how
        ``"given"`` (the user named it), ``"found"`` (a known name) or ``"curated"`` (the curated
        copy of a found column).
    """

    key: str
    how: str

    def describe(self) -> str:
        if self.how == "given":
            return f"cell types from obs[{self.key!r}] (given)"
        if self.how == "curated":
            base = self.key[: -len(CURATED_SUFFIX)]
            return f"cell types from obs[{self.key!r}] (the curated copy of {base!r}, found by name)"
        return f"cell types from obs[{self.key!r}] (found by name)"


def is_type_column(col: pd.Series) -> bool:
    """Whether a column can hold cell types (categories, text, or integer cluster ids)."""
    dt = col.dtype
    if isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dt):
        return True
    if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt):
        return True
    if pd.api.types.is_integer_dtype(dt):
        n = len(col)
        k = int(pd.unique(np.asarray(col)).size) if n else 0
        return n == 0 or k <= max(50, n // 10)
    return False


def _candidates(adata) -> list[tuple[str, str]]:
    cols = [str(c) for c in adata.obs.columns]
    by_norm: dict[str, str] = {}
    for c in cols:
        by_norm.setdefault(_norm(c), c)
    out: list[tuple[str, str]] = []
    for name in (*CELL_TYPE_KEYS, *CLUSTER_KEYS):
        c = name if name in cols else by_norm.get(_norm(name))
        if c is None or any(c == o for o, _ in out):
            continue
        out.append((c, "found"))
    return out


def find_cell_type_key(adata) -> str | None:
    """The cell-type column of ``adata`` by the rule above, or ``None`` (no error)."""
    try:
        return resolve_cell_type_key(adata).key
    except SampleError:
        return None


def resolve_cell_type_key(adata, key: str | None = None, *, path=None) -> CellTypeKey:
    """The cell-type column to use: ``key`` when given, else the first known name.

    Parameters
    ----------
    adata
        The cell table.
    key
        Column chosen by the user (CLI ``--cell-type-key``, a dock, a batch config); ``None``
        or ``""``: find it.
    path
        File named in the error message.

    Returns
    -------
    CellTypeKey

    Raises
    ------
    SampleError
        The given column is missing or holds no categories, or no column has a known name; the
        message lists the columns that could hold types and how to make one.
    """
    if adata is None:
        raise SampleError("the sample has no cell table.", path=path,
                          hint="Quantify it first (carspatial quantify IMAGE MASK -o TABLE.h5ad).")
    obs = adata.obs
    if key:
        if key not in obs.columns:
            raise SampleError(f"no column {key!r} in the cell table (columns: {_list(obs.columns)}).",
                              path=path, hint=_HOW_TO_MAKE)
        if not is_type_column(obs[key]):
            raise SampleError(f"column {key!r} holds {obs[key].dtype} numbers, not cell types.",
                              path=path, hint=_HOW_TO_MAKE)
        return CellTypeKey(str(key), "given")
    for c, _ in _candidates(adata):
        if not is_type_column(obs[c]):
            continue
        cur = c + CURATED_SUFFIX
        if cur in obs.columns and is_type_column(obs[cur]):
            return CellTypeKey(cur, "curated")
        return CellTypeKey(c, "curated" if c.endswith(CURATED_SUFFIX) else "found")
    typed = [str(c) for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
    seen = f" Categorical columns present: {_list(typed)}." if typed else " The table has no categorical column."
    raise SampleError(
        f"no cell-type column: none of {', '.join(CELL_TYPE_KEYS[:6])}, ... or a cluster column "
        f"({', '.join(CLUSTER_KEYS[:4])}, ...) is in the cell table.{seen}",
        path=path, hint=_HOW_TO_MAKE)


def _list(cols, n: int = 12) -> str:
    cols = [str(c) for c in cols]
    if not cols:
        return "none"
    return ", ".join(cols[:n]) + (f", ... ({len(cols)} in all)" if len(cols) > n else "")
