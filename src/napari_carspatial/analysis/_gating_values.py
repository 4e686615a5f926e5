"""Marker values, transforms, gates and rules applied to cells, threshold suggestion and the
histogram. Re-exported by :mod:`.gating`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from ._gating_model import METHODS, TRANSFORMS, Gate, GatingScheme

if TYPE_CHECKING:
    from anndata import AnnData
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- values and transforms
def transform_values(x: ArrayLike, transform: str = "linear", cofactor: float = 5.0) -> np.ndarray:
    """Transform raw marker values for display and thresholding.

    Parameters
    ----------
    x
        Raw values.
    transform
        ``linear``: ``x``; ``asinh``: ``arcsinh(x / cofactor)``; ``log``: ``log1p(max(x, 0) / cofactor)``.
    cofactor
        Scale of ``asinh`` and ``log``.

    Returns
    -------
    numpy.ndarray
        float64; NaN stays NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if transform == "linear":
        return x.copy()
    if not cofactor > 0:
        raise ValueError(f"cofactor must be positive, got {cofactor}")
    if transform == "asinh":
        return np.arcsinh(x / cofactor)
    if transform == "log":
        with np.errstate(invalid="ignore"):
            return np.log1p(np.maximum(x, 0.0) / cofactor)
    raise ValueError(f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}")


def inverse_transform(y: ArrayLike, transform: str = "linear", cofactor: float = 5.0) -> np.ndarray:
    """Inverse of :func:`transform_values` (raw units from transformed ones).

    Parameters
    ----------
    y
        Transformed values.
    transform
        As :func:`transform_values`.
    cofactor
        As :func:`transform_values`.

    Returns
    -------
    numpy.ndarray
        Raw values (float64).
    """
    y = np.asarray(y, dtype=np.float64)
    if transform == "linear":
        return y.copy()
    if transform == "asinh":
        return np.sinh(y) * cofactor
    if transform == "log":
        return np.expm1(y) * cofactor
    raise ValueError(f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}")


def marker_values(adata: AnnData, marker: str, *, layer: str | None = None) -> np.ndarray:
    """Per-cell values of ``marker`` as float64.

    Parameters
    ----------
    adata
        Cell table.
    marker
        A ``var_name`` (a column of ``X`` or of ``layers[layer]``), else a numeric ``obs`` column.
    layer
        Layer to read instead of ``X``.

    Returns
    -------
    numpy.ndarray
        One value per cell.

    Raises
    ------
    KeyError
        No such marker or layer (lists the table's markers / layers).
    ValueError
        ``marker`` is an ``obs`` column that is not numeric.
    """
    if marker in adata.var_names:
        j = int(adata.var_names.get_loc(marker))
        if layer is None:
            mat = adata.X
        else:
            if layer not in adata.layers:
                raise KeyError(f"no layer {layer!r} in the table; layers: {', '.join(adata.layers.keys()) or 'none'}")
            mat = adata.layers[layer]
        col = mat[:, j]
        if hasattr(col, "toarray"):
            col = col.toarray()
        return np.asarray(col, dtype=np.float64).ravel()
    if marker in adata.obs.columns:
        s = adata.obs[marker]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            raise ValueError(f"obs column {marker!r} is not numeric ({s.dtype}); gates need numbers")
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    names = list(map(str, adata.var_names))
    raise KeyError(f"no marker {marker!r} in the table; markers: {', '.join(names[:40])}{' …' if len(names) > 40 else ''}")


def apply_gate(adata: AnnData, gate: Gate, *, layer: str | None = None) -> np.ndarray:
    """Is each cell positive for ``gate``?

    Parameters
    ----------
    adata
        Cell table.
    gate
        The gate.
    layer
        Marker values from this layer instead of ``X``.

    Returns
    -------
    numpy.ndarray
        Boolean, one per cell.
    """
    return gate_mask(marker_values(adata, gate.marker, layer=layer), gate)


def gate_mask(values: ArrayLike, gate: Gate) -> np.ndarray:
    """Boolean positivity of raw ``values`` under ``gate`` (NaN is never positive).

    Parameters
    ----------
    values
        Raw marker values.
    gate
        The gate.

    Returns
    -------
    numpy.ndarray
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return v > gate.threshold if gate.direction == "above" else v < gate.threshold


def apply_rules(adata: AnnData, scheme: GatingScheme, *, layer: str | None = None) -> pd.Categorical:
    """Phenotype of every cell from the ordered rules (first match wins; else ``scheme.default``).

    Parameters
    ----------
    adata
        Cell table.
    scheme
        Gates and rules.
    layer
        Marker values from this layer instead of ``X``.

    Returns
    -------
    pandas.Categorical
        Categories: the rule names in order, then the default.
    """
    missing = scheme.missing_gates()
    if missing:
        raise ValueError(
            f"the rules use {', '.join(missing)} but there is no gate for {'it' if len(missing) == 1 else 'them'}; "
            "add a gate for each marker a rule uses")
    cats = scheme.categories()
    code_of = {c: i for i, c in enumerate(cats)}
    n = adata.n_obs
    pos = {m: apply_gate(adata, g, layer=layer) for m, g in scheme.gates.items()
           if any(m in r.markers for r in scheme.rules)}
    codes = np.full(n, code_of[scheme.default], dtype=np.int32)
    free = np.ones(n, dtype=bool)
    for rule in scheme.ordered_rules():
        hit = free.copy()
        for m, s in rule.conditions:
            hit &= pos[m] if s == "+" else ~pos[m]
        codes[hit] = code_of[rule.name]
        free &= ~hit
    return pd.Categorical.from_codes(codes, categories=cats)

# --------------------------------------------------------------------------- suggestion and histogram
def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def suggest_threshold(values: ArrayLike, *, method: str = "otsu", transform: str = "linear",
                      cofactor: float = 5.0, seed: int = 0, max_cells: int = 200_000) -> float:
    """Suggest a threshold separating negative from positive cells, in **raw** units.

    Parameters
    ----------
    values
        Raw per-cell marker values (NaN ignored).
    method
        ``"otsu"``: :func:`skimage.filters.threshold_otsu` of the transformed values.
        ``"gmm"``: a 2-component Gaussian mixture on the transformed values; the threshold is where
        the posterior of the upper component crosses 0.5 between the two means.
    transform
        Scale on which the suggestion is computed (see :func:`transform_values`).
    cofactor
        Scale on which the suggestion is computed (see :func:`transform_values`).
    seed
        The GMM is fitted on at most ``max_cells`` values drawn with ``seed`` (Otsu uses all).
    max_cells
        The GMM is fitted on at most ``max_cells`` values drawn with ``seed`` (Otsu uses all).

    Returns
    -------
    float
        The threshold in raw units.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    t = transform_values(_finite(values), transform, cofactor)
    t = t[np.isfinite(t)]
    if t.size < 2 or np.ptp(t) == 0:
        raise ValueError("cannot suggest a threshold: fewer than two distinct values")
    if method == "otsu":
        from skimage.filters import threshold_otsu

        thr = float(threshold_otsu(t, nbins=256))
    else:
        thr = _gmm_threshold(t, seed=seed, max_cells=max_cells)
    return float(inverse_transform(np.array([thr]), transform, cofactor)[0])


def _gmm_threshold(t: np.ndarray, *, seed: int, max_cells: int) -> float:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    fit = t if t.size <= max_cells else rng.choice(t, max_cells, replace=False)
    gm = GaussianMixture(n_components=2, random_state=seed, reg_covar=1e-6 * max(float(np.var(fit)), 1e-12))
    gm.fit(fit.reshape(-1, 1))
    means = gm.means_.ravel()
    lo, hi = np.argsort(means)
    grid = np.linspace(means[lo], means[hi], 4001)
    post_hi = gm.predict_proba(grid.reshape(-1, 1))[:, hi]
    above = post_hi >= 0.5
    if above.all() or not above.any():
        log.warning("GMM: the posterior does not cross 0.5 between the means; using their midpoint")
        return float((means[lo] + means[hi]) / 2)
    i = int(np.argmax(above))  # first grid point where the upper component wins
    if i == 0:
        return float(grid[0])
    # linear interpolation between grid[i-1] and grid[i]
    p0, p1 = post_hi[i - 1], post_hi[i]
    f = 0.0 if p1 == p0 else (0.5 - p0) / (p1 - p0)
    return float(grid[i - 1] + f * (grid[i] - grid[i - 1]))


class Histogram(NamedTuple):
    """Counts per bin and bin edges on the transformed scale."""

    counts: np.ndarray
    edges: np.ndarray


def histogram(values: ArrayLike, *, transform: str = "linear", cofactor: float = 5.0, bins: int = 128,
              range: tuple[float, float] | None = None,  # noqa: A002 - numpy.histogram's name
              clip_percentile: float | None = None) -> Histogram:
    """Histogram of the transformed ``values`` (NaN ignored).

    Parameters
    ----------
    values
        Raw marker values.
    transform
        The scale (see :func:`transform_values`).
    cofactor
        The scale (see :func:`transform_values`).
    bins
        Number of bins.
    range
        On the transformed scale; without it the range runs from the minimum to the maximum, or
        to the ``clip_percentile`` percentile.
    clip_percentile
        E.g. 99.9, so a few very bright cells do not squash the distribution.

    Returns
    -------
    Histogram
        ``counts`` and ``edges`` (transformed scale).
    """
    t = transform_values(_finite(values), transform, cofactor)
    t = t[np.isfinite(t)]
    if range is None:
        if t.size == 0:
            range = (0.0, 1.0)  # noqa: A001
        else:
            hi = float(np.percentile(t, clip_percentile)) if clip_percentile else float(t.max())
            lo = float(t.min())
            range = (lo, hi if hi > lo else lo + 1.0)  # noqa: A001
    counts, edges = np.histogram(t, bins=bins, range=range)
    return Histogram(counts, edges)
