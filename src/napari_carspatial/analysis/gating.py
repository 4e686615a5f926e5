"""Marker gating: per-marker thresholds combined into ordered phenotype rules.

Headless (no napari, no Qt). The gating widget is a thin layer over these functions, and the same
functions gate a whole trial from a script::

    from napari_carspatial.analysis.gating import (
        Gate, PhenotypeRule, GatingScheme, suggest_threshold, marker_values, store_gating)

    cd3 = suggest_threshold(marker_values(adata, "CD3"), method="otsu", transform="asinh")
    scheme = GatingScheme(
        gates={"CD3": Gate("CD3", cd3, transform="asinh"), "CAR": Gate("CAR", 150.0)},
        rules=[PhenotypeRule("CAR T", [("CD3", "+"), ("CAR", "+")])],
    )
    store_gating(adata, scheme)              # adata.obs["phenotype_gated"], adata.uns["carspatial"]["gating"]

Conventions
-----------
* A gate's ``threshold`` is in **raw** marker units (the values in ``X`` or the ``obs`` column).
  ``transform`` and ``cofactor`` say on which scale the threshold was chosen and is displayed; all
  transforms are monotone, so gating raw values against the raw threshold is the same as gating
  transformed values against the transformed threshold.
* ``direction="above"``: a cell is positive when its value is ``> threshold``; ``"below"``: when
  it is ``< threshold``. Cells with a missing (NaN) value are never positive.
* Rules are applied in order (``PhenotypeRule.order``, ties by list position): the first rule
  whose conditions all hold names the cell; cells that match no rule get ``default``.

The code lives in private pieces (squidpy style), every public name re-exported here:
:mod:`._gating_model` (gates, rules, the scheme), :mod:`._gating_values` (marker values,
transforms, applying gates and rules, threshold suggestion, histogram), :mod:`._gating_store`
(the scheme in the table and in files).
"""

from __future__ import annotations

from ._gating_model import (  # noqa: F401 - UNS_GATING, FILE_*: imported from here by callers
    DEFAULT_KEY,
    DIRECTIONS,
    FILE_FORMAT,
    FILE_VERSION,
    METHODS,
    TRANSFORMS,
    UNS_GATING,
    Gate,
    GatingScheme,
    PhenotypeRule,
    parse_conditions,
)
from ._gating_store import export_gating, import_gating, load_gating, store_gating
from ._gating_values import (  # noqa: F401 - gate_mask: used by the gating session
    Histogram,
    apply_gate,
    apply_rules,
    gate_mask,
    histogram,
    inverse_transform,
    marker_values,
    suggest_threshold,
    transform_values,
)

__all__ = [
    "DIRECTIONS", "METHODS", "TRANSFORMS", "Gate", "GatingScheme", "Histogram", "PhenotypeRule",
    "apply_gate", "apply_rules", "export_gating", "histogram", "import_gating", "inverse_transform",
    "load_gating", "marker_values", "parse_conditions", "store_gating", "suggest_threshold",
    "transform_values",
]
