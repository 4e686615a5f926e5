"""Which ``obs`` column holds the cell types: one rule for the CLI, the docks, the batch and review.

:func:`resolve_cell_type_key` takes the column the user chose, else the best column of the
table, in this order:

1. the final column of a review export (``uns["carspatial"]["review"]["final_key"]``);
2. the adjudicated copy ``<key>_adjudicated`` of a cell-type column (review adjudication);
3. the curated column recorded by the curation (``uns["carspatial"]["curation"]["curated_key"]``),
   else the curated copy ``<key>_curated`` (the pathologist's corrections);
4. the original column: the first whose name is a known cell-type name (:data:`CELL_TYPE_KEYS`),
   then a known name with a suffix (``cell_type_rna``, the RNA typing's column beside the
   original; ``CellType_major``, ``phenotype_2``), then a cluster name (:data:`CLUSTER_KEYS`);
   names are compared without case and punctuation (``Cell Type``, ``cell.type`` and
   ``CellType`` are the same name).

An identifier-like column (a field of view ``fov``, ``fov_labels``, ``cell_ID``, the SpatialData
``region`` column, a montage's ``acquisition``: :func:`is_id_like`) is never a cell-type column,
whatever it holds (a CosMx table's categorical ``fov`` has one value per field of view).

The choice says which it is (:meth:`CellTypeKey.describe`). A column counts only when it holds
categories (categorical, text, or integer cluster ids with fewer distinct values than a tenth of
the cells); a float column named ``phenotype_score`` is not a cell type.

:func:`find_cell_type_key` is the same rule without an error (``None``), and
:func:`base_cell_type_key` the original column only (what a curation or a review read starts
from). These are the project's only lists of cell-type column names.

A table without such a column gets a :class:`~napari_carspatial.model.SampleError` that names
the file and says how to make one (gating, clustering, or ``--cell-type-key``), never a
``KeyError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SampleError

__all__ = [
    "ADJUDICATED_SUFFIX",
    "CELL_TYPE_KEYS",
    "CLUSTER_KEYS",
    "CURATED_SUFFIX",
    "CellTypeKey",
    "base_cell_type_key",
    "excluded_cells",
    "find_cell_type_key",
    "is_id_like",
    "is_type_column",
    "resolve_cell_type_key",
]

#: common names of a cell-type column, in the order they are tried (compared without case and
#: punctuation, so ``Cell_Type``, ``cellType`` and ``CELLTYPE`` are ``cell_type``)
CELL_TYPE_KEYS: tuple[str, ...] = (
    "cell_type", "celltype", "CellType", "cell_types", "Phenotype", "phenotype", "cell_phenotype",
    "phenotype_gated", "cell_type_curated", "Class", "Classification", "cell_class", "annotation",
    "cell_annotation", "cell_type_major", "cell_type_minor", "celltype_major", "celltype_minor",
)
#: cluster annotations, tried after the cell-type names
CLUSTER_KEYS: tuple[str, ...] = (
    "cluster", "clusters", "cluster_id", "leiden", "louvain", "phenograph", "metacluster",
    "som_cluster", "kmeans",
)
#: suffix of the curated copy of a type column (``model.curation``)
CURATED_SUFFIX = "_curated"
#: suffix of the adjudicated copy of a type column (``review`` adjudication and export)
ADJUDICATED_SUFFIX = "_adjudicated"
#: bases of ``_curated`` / ``_adjudicated`` columns that are not cell types
_NOT_TYPES = ("excluded", "exclude_reason", "reviewed")

_HOW_TO_MAKE = ("Make one by gating (the Gating dock, or a gating file in the batch config: "
                "`gating: rules.json`) or by clustering (e.g. scanpy.tl.leiden into obs['leiden']), "
                "or name an existing column with --cell-type-key.")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


#: known names that may carry a suffix (``cell_type_rna``, ``CellType_major``, ``phenotype_2``)
_PREFIXED = re.compile(r"^(cell[\s_.\-]?types?|cell[\s_.\-]?phenotypes?|phenotypes?)[\s_.\-]+\S", re.IGNORECASE)
#: identifier-like names (normalised): fields of view, ids, the SpatialData table link, tiles
_ID_NAMES = frozenset({"fov", "fovs", "fovid", "fovlabels", "fovname", "field", "fieldofview", "cellid", "cellids",
                       "objectid", "object", "instanceid", "labelid", "label", "labels", "region", "cellsregion",
                       "acquisition", "acquisitionid", "acquisitionname", "imageid", "image", "imagename",
                       "sample", "sampleid", "slide", "slideid", "roi", "roiid", "tile", "tileid", "id", "index",
                       "barcode", "cellbarcode"})


def is_id_like(name: str) -> bool:
    """Whether a column's name says it identifies cells, fields of view, images or tiles.

    ``fov``, ``fov_labels``, ``cell_ID``, ``cells_region``, ``acquisition``, ``ImageNumber``,
    ``*_id`` / ``*ID``: never a cell-type column (compared without case and punctuation).

    Parameters
    ----------
    name
        The column name.

    Returns
    -------
    bool
    """
    raw = str(name)
    n = _norm(raw)
    if not n or n in _ID_NAMES:
        return True
    for suffix in ("labels", "region", "number", "name"):
        if n.endswith(suffix) and n[: -len(suffix)] in _ID_NAMES | {"cell", "cells"}:
            return True
    return bool(re.search(r"(^|[_.\s\-])ids?$", raw, re.IGNORECASE) or re.search(r"[a-z]IDs?$", raw))


@dataclass(frozen=True)
class CellTypeKey:
    """The chosen cell-type column and why.

    Attributes
    ----------
    key
        ``obs`` column name.
    how
        ``"given"`` (the user named it), ``"found"`` (a known name), ``"curated"`` (the curated
        copy of a found column) or ``"adjudicated"`` (the adjudicated column of a review).
    base
        The original column the curated / adjudicated one was made from (``None`` when unknown
        or when ``key`` is the original).
    """

    key: str
    how: str
    base: str | None = None

    def describe(self) -> str:
        if self.how == "given":
            return f"cell types from obs[{self.key!r}] (given)"
        of = f" of {self.base!r}" if self.base else ""
        if self.how == "adjudicated":
            return f"cell types from obs[{self.key!r}] (the adjudicated column{of} of a review)"
        if self.how == "curated":
            return f"cell types from obs[{self.key!r}] (the curated copy{of}, found by name)"
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
    """Columns whose names are known cell-type names, in :data:`CELL_TYPE_KEYS` order, then known
    names with a suffix (in table order), then :data:`CLUSTER_KEYS`; never an id-like column."""
    cols = [str(c) for c in adata.obs.columns]
    by_norm: dict[str, str] = {}
    for c in cols:
        by_norm.setdefault(_norm(c), c)
    out: list[tuple[str, str]] = []

    def add(c):
        if c is not None and not any(c == o for o, _ in out) and (c == "cluster_id" or not is_id_like(c)):
            out.append((c, "found"))

    for name in CELL_TYPE_KEYS:
        add(name if name in cols else by_norm.get(_norm(name)))
    for c in cols:
        if _PREFIXED.match(c):
            add(c)
    for name in CLUSTER_KEYS:
        add(name if name in cols else by_norm.get(_norm(name)))
    return out


def _uns_key(adata, section: str, field: str) -> str | None:
    """``uns["carspatial"][section][field]`` when it is a string (the review stores JSON text too)."""
    uns = getattr(adata, "uns", None)
    root = uns.get("carspatial") if hasattr(uns, "get") else None
    meta = root.get(section) if hasattr(root, "get") else None
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    key = meta.get(field) if isinstance(meta, dict) else None
    return key if isinstance(key, str) else None


def _copy_of(col: str, suffix: str) -> str | None:
    """The base of ``<base><suffix>`` (``None`` when ``col`` is not such a copy or not a type copy)."""
    if not col.endswith(suffix):
        return None
    base = col[: -len(suffix)]
    return base if base and base not in _NOT_TYPES else None


def _usable(obs, c) -> bool:
    return c is not None and c in obs.columns and is_type_column(obs[c])


def base_cell_type_key(adata) -> str | None:
    """The original cell-type column (never a curated or adjudicated copy), or ``None``.

    What a curation or a review read starts from: the first column with a known name
    (:data:`CELL_TYPE_KEYS`, :data:`CLUSTER_KEYS`) that holds categories; when the table only has
    a copy (``cell_type_curated`` without ``cell_type``), that copy.
    """
    if adata is None:
        return None
    obs = adata.obs
    found = [c for c, _ in _candidates(adata) if is_type_column(obs[c])]
    plain = [c for c in found if _copy_of(c, CURATED_SUFFIX) is None and _copy_of(c, ADJUDICATED_SUFFIX) is None]
    return (plain or found or [None])[0]


def _preferred(adata) -> CellTypeKey | None:
    obs = adata.obs
    cols = [str(c) for c in obs.columns]
    final = _uns_key(adata, "review", "final_key")
    if _usable(obs, final):
        return CellTypeKey(final, "adjudicated", _copy_of(final, ADJUDICATED_SUFFIX))
    bases = [c for c, _ in _candidates(adata)]
    for c in bases:  # the adjudicated copy of a known column
        adj = c if _copy_of(c, ADJUDICATED_SUFFIX) else c + ADJUDICATED_SUFFIX
        if _usable(obs, adj):
            return CellTypeKey(adj, "adjudicated", _copy_of(adj, ADJUDICATED_SUFFIX))
    adj = [c for c in cols if _copy_of(c, ADJUDICATED_SUFFIX) and _usable(obs, c)]
    if adj:  # an adjudicated column of a column with another name
        return CellTypeKey(adj[0], "adjudicated", _copy_of(adj[0], ADJUDICATED_SUFFIX))
    cur = _uns_key(adata, "curation", "curated_key")
    if _usable(obs, cur):
        return CellTypeKey(cur, "curated", _copy_of(cur, CURATED_SUFFIX))
    for c in bases:
        if not is_type_column(obs[c]):
            continue
        if _copy_of(c, CURATED_SUFFIX):
            return CellTypeKey(c, "curated", _copy_of(c, CURATED_SUFFIX))
        if _usable(obs, c + CURATED_SUFFIX):
            return CellTypeKey(c + CURATED_SUFFIX, "curated", c)
        return CellTypeKey(c, "found")
    return None


#: the call of an excluded cell in a review's read and adjudicated columns
EXCLUDED_CALL = "(excluded)"


def excluded_cells(adata, key: str) -> np.ndarray | None:
    """Cells the reviewers excluded (artefact, fold, ...) in the reads behind column ``key``.

    ``<base>_adjudicated``: ``obs["excluded_adjudicated"]`` (else the ``"(excluded)"`` calls);
    ``<base>_curated``: the curation's ``obs["excluded"]``. ``None`` for any other column (an
    original column has no exclusions) or when nothing is excluded.

    Parameters
    ----------
    adata
        The cell table.
    key
        The cell-type column used (:func:`resolve_cell_type_key`).
    """
    obs = adata.obs
    flag = None
    if _copy_of(str(key), ADJUDICATED_SUFFIX) is not None:
        if "excluded_adjudicated" in obs:
            flag = obs["excluded_adjudicated"].to_numpy(bool)
        else:
            flag = obs[key].astype(object).to_numpy() == EXCLUDED_CALL
    elif _copy_of(str(key), CURATED_SUFFIX) is not None and "excluded" in obs:
        flag = obs["excluded"].fillna(False).to_numpy(bool)
    return flag if flag is not None and flag.any() else None


def find_cell_type_key(adata) -> str | None:
    """The cell-type column of ``adata`` by the rule above, or ``None`` (no error)."""
    if adata is None:
        return None
    k = _preferred(adata)
    return None if k is None else k.key


def resolve_cell_type_key(adata, key: str | None = None, *, path=None) -> CellTypeKey:
    """The cell-type column to use: ``key`` when given, else the best column (module docstring).

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
    found = _preferred(adata)
    if found is not None:
        return found
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
