"""Cell types for RNA data, headless: marker-gene scores or Leiden clusters written as a
categorical column the curation and the audit trail use. No napari, no Qt.

What the Transcripts dock's "Cell types from genes" section runs, and what a script runs the
same way::

    from napari_carspatial.editing.cell_typing import compute_cell_types, parse_markers, store_typing

    markers = parse_markers("T cell: CD3D, CD3E\nB cell: POU2AF1, SPIB")
    result = compute_cell_types(sample, method="markers", markers=markers)   # slow part (a worker)
    outcome = store_typing(sample, result, key="cell_type", reviewer="jdoe")  # obs + colours + audit row

The computation is :mod:`napari_carspatial.analysis.genes` (scanpy's ``score_genes`` and
Leiden on log-normalised counts, ``X`` kept sparse); this module parses what the user typed,
proposes markers that are in the panel, picks the column name and records who did what.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..analysis.genes import (
    CellTypingResult,
    leiden_cell_types,
    marker_cell_types,
    store_cell_types,
)
from ..model import Sample
from ..model.cell_types import find_cell_type_key

#: marker genes of common types, offered when the panel has them (human names; matched without case,
#: so mouse panels (Cd3e, Ms4a1) match too)
MARKER_PRESETS: dict[str, tuple[str, ...]] = {
    "T cell": ("CD3D", "CD3E", "CD3G", "CD2", "TRAC"),
    "CD8 T": ("CD8A", "CD8B"),
    "CD4 T": ("CD4", "IL7R"),
    "B cell": ("MS4A1", "CD79A", "CD79B", "CD19", "PAX5", "POU2AF1", "SPIB"),
    "Macrophage": ("CD68", "CD163", "C1QA", "C1QB", "LYZ", "CD14"),
    "Tumour epithelial": ("EPCAM", "KRT8", "KRT18", "KRT19"),
    "Fibroblast": ("COL1A1", "COL1A2", "DCN", "LUM"),
    "Smooth muscle": ("ACTA2", "MYH11", "TAGLN"),
    "Endothelial": ("PECAM1", "VWF", "CDH5"),
}
#: the column written when the table has no cell-type column yet (curation finds it by name)
FIRST_KEY = "cell_type"
#: the column written next to an existing cell-type column (never over it)
RNA_KEY = "cell_type_rna"
METHODS = ("markers", "leiden")


def parse_markers(text: str) -> dict[str, list[str]]:
    """``"T cell: CD3D, CD3E"`` lines (or ``;``-separated) -> ``{"T cell": ["CD3D", "CD3E"]}``.

    ``=`` works like ``:``; genes are separated by commas or spaces. Raises ``ValueError``
    naming the line that has no ``:`` or no gene.
    """
    out: dict[str, list[str]] = {}
    parts = [p.strip() for p in re.split(r"[;\n]", text or "") if p.strip()]
    for i, part in enumerate(parts, 1):
        m = re.match(r"^([^:=]+)[:=](.*)$", part)
        if not m:
            raise ValueError(f"line {i} ({part!r}): write 'type: gene, gene'")
        name = m.group(1).strip()
        genes = [g for g in re.split(r"[,\s]+", m.group(2).strip()) if g]
        if not name or not genes:
            raise ValueError(f"line {i} ({part!r}): a type name and at least one gene are needed")
        out.setdefault(name, []).extend(g for g in genes if g not in out.get(name, []))
    if not out:
        raise ValueError("no marker genes given; write one type per line, e.g. 'T cell: CD3D, CD3E'")
    return out


def format_markers(markers: Mapping[str, Sequence[str]]) -> str:
    """The inverse of :func:`parse_markers` (one type per line)."""
    return "\n".join(f"{k}: {', '.join(v)}" for k, v in markers.items())


def panel_markers(adata, presets: Mapping[str, Sequence[str]] = MARKER_PRESETS) -> dict[str, list[str]]:
    """The preset types whose markers are in the table's genes, with the panel's own spelling."""
    names = {str(g).upper(): str(g) for g in adata.var_names}
    out = {}
    for t, genes in presets.items():
        hit = [names[g.upper()] for g in genes if g.upper() in names]
        if hit:
            out[t] = hit
    return out


def default_key(adata) -> str:
    """``cell_type`` when the table has no cell-type column yet, else ``cell_type_rna`` (then
    ``cell_type_rna_2``, ...): the original column is never written over."""
    if find_cell_type_key(adata) is None and FIRST_KEY not in adata.obs:
        return FIRST_KEY
    key, k = RNA_KEY, 2
    while key in adata.obs:
        key, k = f"{RNA_KEY}_{k}", k + 1
    return key


def _check(sample: Sample):
    t = sample.table
    if t is None:
        raise ValueError(f"{sample.name} has no cell table")
    if t.n_obs < 3:
        raise ValueError(f"{sample.name} has {t.n_obs} cells; cell typing needs at least 3")
    return t


def compute_cell_types(sample: Sample, *, method: str = "markers", markers: Mapping[str, Sequence[str]] | None = None,
                       min_score: float = 0.0, resolution: float = 1.0, seed: int = 0) -> CellTypingResult:
    """Cell types of ``sample`` (thread-safe: reads the table, writes nothing).

    ``method="markers"``: scanpy ``score_genes`` per type on log-normalised counts, the highest
    score above ``min_score`` wins, else ``Unassigned``
    (:func:`~napari_carspatial.analysis.genes.marker_cell_types`). ``method="leiden"``:
    scanpy's Leiden at ``resolution``, clusters named by their top markers
    (:func:`~napari_carspatial.analysis.genes.leiden_cell_types`). Raw counts are used when the
    table has a ``counts`` layer.
    """
    t = _check(sample)
    layer = "counts" if "counts" in t.layers else None
    if method == "markers":
        if not markers:
            raise ValueError("give marker genes for at least one type (e.g. 'T cell: CD3D, CD3E')")
        return marker_cell_types(t, markers, min_score=min_score, layer=layer, seed=seed)
    if method == "leiden":
        return leiden_cell_types(t, resolution=resolution, layer=layer, seed=seed)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


@dataclass
class TypingOutcome:
    """What :func:`store_typing` wrote."""

    sample: str
    key: str
    method: str
    counts: dict[str, int]

    def lines(self) -> list[str]:
        n = max(sum(self.counts.values()), 1)
        return [f"{c}: {k:,} ({100.0 * k / n:.1f}%)" for c, k in self.counts.items()]


def store_typing(sample: Sample, result: CellTypingResult, *, key: str | None = None, reviewer: str | None = None,
                 overwrite: bool = False) -> TypingOutcome:
    """Write ``result`` as ``obs[key]`` (categorical, colours in ``uns``, markers and parameters in
    ``uns["carspatial"]["cell_typing"]``) and one audit row (action ``cell_typing.<method>``).

    ``key`` defaults to :func:`default_key`; an existing column is refused unless ``overwrite``.
    """
    from ..model import edit_log

    t = _check(sample)
    key = (key or "").strip() or default_key(t)
    store_cell_types(t, result, key=key, overwrite=overwrite)
    counts = t.obs[key].value_counts(sort=False)
    counts = {str(c): int(counts.get(c, 0)) for c in t.obs[key].cat.categories}
    edit_log.record(t, f"cell_typing.{result.method}", column=key, new=counts, reviewer=reviewer,
                    note=json.dumps(result.params, default=str))
    return TypingOutcome(sample.name, key, result.method, counts)


def type_cells(sample: Sample, *, method: str = "markers", markers=None, key: str | None = None,
               reviewer: str | None = None, overwrite: bool = False, **options) -> TypingOutcome:
    """:func:`compute_cell_types` then :func:`store_typing` (scripts; the dock splits the two)."""
    if isinstance(markers, str):
        markers = parse_markers(markers)
    res = compute_cell_types(sample, method=method, markers=markers, **options)
    return store_typing(sample, res, key=key, reviewer=reviewer, overwrite=overwrite)
