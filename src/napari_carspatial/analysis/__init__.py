"""Headless spatial analysis: graphs and statistics on AnnData / arrays.

No napari, Qt or magicgui imports here; squidpy is only imported inside tests and benchmarks.

- :func:`spatial_graph`, :func:`store_graph`: Delaunay / radius / kNN graphs equal to squidpy's.
- :func:`nhood_enrichment`: exact (closed-form) or permutation neighbourhood-enrichment z-scores.
- :func:`co_occurrence`: squidpy's co-occurrence probabilities without visiting all pairs.
- Gating: :class:`Gate`, :class:`PhenotypeRule`, :class:`GatingScheme`, :func:`apply_gate`,
  :func:`apply_rules`, :func:`store_gating`, :func:`suggest_threshold` (see ``docs/gating.md``).
"""

from napari_carspatial.analysis.cooccurrence import CoOccurrenceResult, co_occurrence
from napari_carspatial.analysis.gating import (
    Gate,
    GatingScheme,
    PhenotypeRule,
    apply_gate,
    apply_rules,
    export_gating,
    import_gating,
    load_gating,
    marker_values,
    store_gating,
    suggest_threshold,
    transform_values,
)
from napari_carspatial.analysis.graph import SpatialGraph, spatial_graph, store_graph
from napari_carspatial.analysis.nhood import NhoodEnrichmentResult, join_count_moments, nhood_enrichment

__all__ = [
    "SpatialGraph",
    "spatial_graph",
    "store_graph",
    "NhoodEnrichmentResult",
    "nhood_enrichment",
    "join_count_moments",
    "CoOccurrenceResult",
    "co_occurrence",
    "Gate",
    "GatingScheme",
    "PhenotypeRule",
    "apply_gate",
    "apply_rules",
    "export_gating",
    "import_gating",
    "load_gating",
    "marker_values",
    "store_gating",
    "suggest_threshold",
    "transform_values",
]
