"""Headless spatial analysis: graphs and statistics on AnnData / arrays.

No napari, Qt or magicgui imports here; squidpy is only imported inside tests and benchmarks.

- :func:`spatial_graph`, :func:`store_graph`: Delaunay / radius / kNN graphs equal to squidpy's.
- :func:`nhood_enrichment`: exact (closed-form) or permutation neighbourhood-enrichment z-scores.
- :func:`co_occurrence`: squidpy's co-occurrence probabilities without visiting all pairs.
- Published definitions: :func:`count_touching` (phenoptr ``count_touching_cells``),
  :func:`nearest_distances` (phenoptr ``find_nearest_distance``), :func:`count_within`
  (phenoptr ``count_within``), contact presets :data:`CONTACT_PRESETS`.
- Roles (:mod:`~napari_carspatial.analysis.roles`): :func:`infer_roles`, :func:`resolve_roles`,
  :func:`store_roles` / :func:`load_roles`.
- Gating: :class:`Gate`, :class:`PhenotypeRule`, :class:`GatingScheme`, :func:`apply_gate`,
  :func:`apply_rules`, :func:`store_gating`, :func:`suggest_threshold` (see ``docs/gating.md``).

The public API is what ``__all__`` lists (documented in the API reference, ``mkdocs.yml``); import it
from this package. Submodules are implementation details: ``_name`` modules always, the others
may move without notice.
"""

from napari_carspatial.analysis.cart import infiltration_profile, region_metrics, tumor_distance
from napari_carspatial.analysis.contact import CONTACT_PRESETS, contact_graph, count_touching
from napari_carspatial.analysis.cooccurrence import CoOccurrenceResult, co_occurrence
from napari_carspatial.analysis.distances import count_within, nearest_distances
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
from napari_carspatial.analysis.interactions import count_interactions, interaction_matrix
from napari_carspatial.analysis.nhood import (
    NhoodEnrichmentResult,
    join_count_moments,
    nhood_enrichment,
)
from napari_carspatial.analysis.niches import cellular_neighborhoods, store_niches
from napari_carspatial.analysis.ppatterns import centrality_scores, nn_distances, ripley
from napari_carspatial.analysis.quantify import quantify
from napari_carspatial.analysis.regions import (
    DEFAULT_ROLES,
    Region,
    cells_in_polygon,
    region_masks,
    regions_from_rois,
    role_masks,
)
from napari_carspatial.analysis.results import (
    STATISTICS,
    AnalysisResult,
    compute,
    iter_compute,
    load_results,
    store_result,
)
from napari_carspatial.analysis.roles import (
    ROLES,
    RoleMapping,
    infer_roles,
    load_roles,
    resolve_roles,
    store_roles,
)

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
    "quantify",
    "region_metrics",
    "infiltration_profile",
    "tumor_distance",
    "contact_graph",
    "interaction_matrix",
    "count_interactions",
    "ripley",
    "nn_distances",
    "centrality_scores",
    "cellular_neighborhoods",
    "store_niches",
    "DEFAULT_ROLES",
    "Region",
    "cells_in_polygon",
    "region_masks",
    "regions_from_rois",
    "role_masks",
    "STATISTICS",
    "AnalysisResult",
    "compute",
    "iter_compute",
    "load_results",
    "store_result",
    "CONTACT_PRESETS",
    "count_touching",
    "count_within",
    "nearest_distances",
    "ROLES",
    "RoleMapping",
    "infer_roles",
    "load_roles",
    "resolve_roles",
    "store_roles",
]

# spatial omics (issue 15): genes on sparse tables, RNA cell types, ligand-receptor signalling
from napari_carspatial.analysis.genes import (  # noqa: E402
    gene_counts,
    gene_summary,
    gene_values,
    leiden_cell_types,
    marker_cell_types,
    store_cell_types,
    top_genes,
)
from napari_carspatial.analysis.ligrec import (  # noqa: E402
    CART_PAIRS,
    ligrec,
    ligrec_sample_metrics,
    plot_ligrec,
    spatial_ligrec,
    store_ligrec,
)

__all__ += [
    "gene_counts", "gene_summary", "gene_values", "leiden_cell_types", "marker_cell_types", "store_cell_types",
    "top_genes", "CART_PAIRS", "ligrec", "ligrec_sample_metrics", "plot_ligrec", "spatial_ligrec", "store_ligrec",
]

# result and helper types that public functions take or return (API reference, issue 11)
from napari_carspatial.analysis.genes import CellTypingResult  # noqa: E402
from napari_carspatial.analysis.interactions import InteractionResult  # noqa: E402
from napari_carspatial.analysis.ligrec import LigrecResult, SpatialLigrecResult  # noqa: E402
from napari_carspatial.analysis.nhood import GraphSummary, graph_summary  # noqa: E402
from napari_carspatial.analysis.niches import NicheResult  # noqa: E402
from napari_carspatial.analysis.ppatterns import RipleyResult  # noqa: E402
from napari_carspatial.analysis.results import GraphCache  # noqa: E402
from napari_carspatial.analysis.roles import MarkerRule  # noqa: E402
from napari_carspatial.analysis.tumor_distance import TumorDistance  # noqa: E402

__all__ += [
    "CellTypingResult", "GraphCache", "GraphSummary", "InteractionResult", "LigrecResult", "MarkerRule", "NicheResult",
    "RipleyResult", "SpatialLigrecResult", "TumorDistance", "graph_summary",
]
