"""Ligand-receptor signalling: the cluster-level permutation test and its spatial (neighbour) form.

Two tests, one set of pairs:

* :func:`ligrec` - CellPhoneDB's cluster-level test exactly as ``squidpy.gr.ligrec`` runs it
  (same filters, same complex policy, the same permutations for the same ``seed``: those of
  ``squidpy.gr.ligrec(..., seed=seed, n_jobs=1)``), so means and p-values are equal. The cost of
  a permutation is the cluster sums of the genes in the pairs; they are accumulated from the
  non-zeros of the sparse matrix (a numba kernel over genes, permutations in blocks) instead of
  a dense cells x genes pass, and the comparison with the observed statistic is vectorised.
* :func:`spatial_ligrec` - the same statistic restricted to neighbouring cells: for sender type
  A, receiver type B and pair (L, R), the mean over A -> B edges of a spatial graph (Delaunay,
  radius, kNN or mask contact) of ``(L[sender] + R[receiver]) / 2``. Its null keeps every cell's
  type and position and permutes expression profiles among cells of the same type: "do A cells
  that touch B express more L, and B cells that touch A more R, than A and B cells in general?".
  The statistic is linear in the permuted profiles, so its null mean and variance are exact
  closed forms (the permutation moments of a linear statistic; for A = B one permutation acts on
  ``(L + R) / 2``): z-scores and normal p-values need no permutations. ``n_perms`` runs the
  Monte Carlo permutations too (tests check the moments and p-values against them).

Both give Benjamini-Hochberg FDR (statsmodels, as squidpy) and tidy tables; :func:`store_ligrec`
keeps them in ``uns["carspatial"]["analysis"]["ligrec"]`` (h5ad and SpatialData exports carry
``uns``), :func:`plot_ligrec` draws the dot plot, :func:`ligrec_sample_metrics` gives the
per-sample numbers a cohort batch collects.

Pairs come from the resources liana ships (``liana/resource/omni_resource.csv``, read directly:
no network, and without importing liana, which takes seconds): :func:`ligand_receptor_pairs`.
:data:`CART_PAIRS` is the CAR T preset; :data:`PROTEIN_ALIASES` lets it run on protein panels
(``PD-L1`` for CD274, ``PD-1`` for PDCD1, ...).

The code lives in private pieces (squidpy style), every public name re-exported here:
:mod:`._ligrec_pairs` (presets, resources, name matching), :mod:`._ligrec_cluster` (the cluster
test), :mod:`._ligrec_spatial` (the neighbour test), :mod:`._ligrec_results` (storing, per-sample
metrics, the dot plot).
"""

from __future__ import annotations

from ._ligrec_cluster import LigrecResult, _fdr, _prepare, ligrec  # noqa: F401 - _fdr, _prepare: used by callers
from ._ligrec_pairs import (  # noqa: F401 - resolve_names and the private helpers are imported from here
    CART_PAIRS,
    PROTEIN_ALIASES,
    SOURCE,
    TARGET,
    _as_pairs,
    cart_pairs,
    liana_resource_file,
    ligand_receptor_pairs,
    resolve_names,
    resolve_pairs,
)
from ._ligrec_results import ligrec_sample_metrics, plot_ligrec, save_ligrec_figure, store_ligrec
from ._ligrec_spatial import SpatialLigrecResult, _adjacency, _linear_perm_moments, spatial_ligrec  # noqa: F401

__all__ = [
    "CART_PAIRS", "PROTEIN_ALIASES", "LigrecResult", "SpatialLigrecResult", "cart_pairs", "ligand_receptor_pairs",
    "ligrec", "ligrec_sample_metrics", "liana_resource_file", "plot_ligrec", "resolve_pairs", "save_ligrec_figure",
    "spatial_ligrec",
    "store_ligrec",
]
