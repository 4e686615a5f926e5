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
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..model import UNS_KEY, SampleError, colors_key
from ..model.atomic import atomic_write_text

log = logging.getLogger(__name__)

#: transforms offered for display and threshold suggestion
TRANSFORMS = ("linear", "asinh", "log")
#: gate directions
DIRECTIONS = ("above", "below")
#: threshold suggestion methods
METHODS = ("otsu", "gmm")
#: key under ``adata.uns["carspatial"]`` holding the gating scheme
UNS_GATING = "gating"
#: default ``obs`` column written by :func:`store_gating`
DEFAULT_KEY = "phenotype_gated"
#: ``format`` tag of exported gating files
FILE_FORMAT = "napari-carspatial gating"
FILE_VERSION = 1

__all__ = [
    "DIRECTIONS", "METHODS", "TRANSFORMS", "Gate", "GatingScheme", "Histogram", "PhenotypeRule",
    "apply_gate", "apply_rules", "export_gating", "histogram", "import_gating", "inverse_transform",
    "load_gating", "marker_values", "parse_conditions", "store_gating", "suggest_threshold",
    "transform_values",
]


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no USER variable and no passwd entry (containers)
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


# --------------------------------------------------------------------------- data classes
@dataclass
class Gate:
    """A threshold on one marker.

    Parameters
    ----------
    marker
        ``var_name`` of the marker (or a numeric ``obs`` column).
    threshold
        Threshold in raw marker units.
    transform
        Scale the threshold was chosen on: ``"linear"``, ``"asinh"`` (``arcsinh(x / cofactor)``)
        or ``"log"`` (``log1p(max(x, 0) / cofactor)``).
    cofactor
        Cofactor of the asinh and log transforms (> 0).
    direction
        ``"above"`` (positive when value > threshold) or ``"below"`` (value < threshold).
    created_by, created_at
        Who made the gate and when (ISO 8601); default the OS user and now.
    """

    marker: str
    threshold: float
    transform: str = "linear"
    cofactor: float = 5.0
    direction: str = "above"
    created_by: str = field(default_factory=_whoami)
    created_at: str = field(default_factory=_now)

    def __post_init__(self):
        self.marker = str(self.marker)
        if not self.marker:
            raise ValueError("a gate needs a marker name")
        try:
            self.threshold = float(self.threshold)
            self.cofactor = float(self.cofactor)
        except (TypeError, ValueError):
            raise ValueError(
                f"gate {self.marker!r}: threshold and cofactor must be numbers, got "
                f"{self.threshold!r} and {self.cofactor!r}") from None
        if not np.isfinite(self.threshold):
            raise ValueError(f"gate {self.marker!r}: threshold {self.threshold} is not a finite number")
        if not (np.isfinite(self.cofactor) and self.cofactor > 0):
            raise ValueError(f"gate {self.marker!r}: cofactor must be a positive number, got {self.cofactor}")
        self.transform = str(self.transform).lower()
        if self.transform not in TRANSFORMS:
            raise ValueError(f"gate {self.marker!r}: transform {self.transform!r} is not one of {', '.join(TRANSFORMS)}")
        self.direction = str(self.direction).lower()
        if self.direction not in DIRECTIONS:
            raise ValueError(f"gate {self.marker!r}: direction {self.direction!r} is not one of {', '.join(DIRECTIONS)}")
        self.created_by = str(self.created_by)
        self.created_at = str(self.created_at)

    @property
    def display_threshold(self) -> float:
        """The threshold on the gate's own (transformed) scale."""
        return float(transform_values(np.array([self.threshold]), self.transform, self.cofactor)[0])

    def to_dict(self) -> dict[str, Any]:
        return {"marker": self.marker, "threshold": float(self.threshold), "transform": self.transform,
                "cofactor": float(self.cofactor), "direction": self.direction,
                "created_by": self.created_by, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        d = dict(d)
        missing = [k for k in ("marker", "threshold") if k not in d]
        if missing:
            raise ValueError(f"gate {d.get('marker', '?')!r} lacks {', '.join(missing)}")
        known = {"marker", "threshold", "transform", "cofactor", "direction", "created_by", "created_at"}
        kw = {k: _plain(v) for k, v in d.items() if k in known and v is not None}
        return cls(**kw)


def parse_conditions(text: str) -> list[tuple[str, str]]:
    """Parse ``"CD3+ CAR+"`` / ``"PanCK+, MSLN-"`` into ``[("CD3", "+"), ("CAR", "+")]``.

    Each token is a marker name followed by ``+`` or ``-`` (the *last* character is the sign, so
    ``"PD-L1+"`` is PD-L1 positive). Tokens are separated by spaces or commas; quote a marker
    name that contains a space: ``'"HLA DR"+'``.
    """
    try:
        tokens = shlex.split(str(text).replace(",", " "))
    except ValueError as err:
        raise ValueError(f"cannot read conditions {text!r}: {err}") from None
    out = []
    for tok in tokens:
        tok = tok.strip()
        if len(tok) < 2 or tok[-1] not in "+-":
            raise ValueError(
                f"condition {tok!r} in {text!r} must be a marker followed by + or - (e.g. 'CD3+ CAR+', 'PanCK+ MSLN-')")
        out.append((tok[:-1], tok[-1]))
    return out


def _cond_str(marker: str, sign: str) -> str:
    return f'"{marker}"{sign}' if any(c.isspace() for c in marker) or "," in marker else f"{marker}{sign}"


@dataclass
class PhenotypeRule:
    """A phenotype defined by marker conditions, e.g. CAR T = CD3+ and CAR+.

    ``conditions`` is a list of ``(marker, "+" | "-")``; a cell matches when every condition holds.
    A string such as ``"CD3+ CAR+"`` is accepted and parsed with :func:`parse_conditions`.
    """

    name: str
    conditions: list = field(default_factory=list)
    order: int = 0

    def __post_init__(self):
        self.name = str(self.name).strip()
        if not self.name:
            raise ValueError("a phenotype rule needs a name")
        conds = self.conditions
        if isinstance(conds, str):
            conds = parse_conditions(conds)
        out = []
        for c in conds:
            if isinstance(c, str):
                out.extend(parse_conditions(c))
                continue
            marker, sign = c
            sign = str(sign)
            if sign not in ("+", "-"):
                raise ValueError(f"rule {self.name!r}: sign {sign!r} for {marker!r} must be '+' or '-'")
            out.append((str(marker), sign))
        if not out:
            raise ValueError(f"rule {self.name!r} has no conditions; give at least one, e.g. 'CD3+'")
        self.conditions = out
        self.order = int(self.order)

    @property
    def text(self) -> str:
        """Conditions as typed by a user: ``"CD3+ CAR+"``."""
        return " ".join(_cond_str(m, s) for m, s in self.conditions)

    @property
    def markers(self) -> list[str]:
        return [m for m, _ in self.conditions]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "conditions": [f"{m}{s}" for m, s in self.conditions], "order": self.order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhenotypeRule:
        if "name" not in d or "conditions" not in d:
            raise ValueError(f"rule {d.get('name', '?')!r} lacks 'name' or 'conditions'")
        conds = d["conditions"]
        if isinstance(conds, str):
            parsed = parse_conditions(conds)
        else:
            parsed = []
            for c in np.atleast_1d(np.asarray(conds, dtype=object)).tolist():
                if isinstance(c, (list, tuple)) and len(c) == 2:
                    parsed.append((str(c[0]), str(c[1])))
                else:  # "CD3+": the last character is the sign, the rest the marker
                    c = str(c)
                    if len(c) < 2 or c[-1] not in "+-":
                        raise ValueError(f"rule {d['name']!r}: condition {c!r} must end with + or -")
                    parsed.append((c[:-1], c[-1]))
        return cls(name=str(d["name"]), conditions=parsed, order=int(_plain(d.get("order", 0))))


@dataclass
class GatingScheme:
    """Gates (one per marker) and ordered phenotype rules."""

    gates: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)
    default: str = "Other"

    def __post_init__(self):
        if isinstance(self.gates, (list, tuple)):
            self.gates = {g.marker: g for g in self.gates}
        for k, g in self.gates.items():
            if not isinstance(g, Gate):
                raise TypeError(f"gates[{k!r}] is {type(g).__name__}, expected a Gate")
            if k != g.marker:
                raise ValueError(f"gates[{k!r}] holds a gate on {g.marker!r}; key it by its marker")
        self.rules = list(self.rules)
        self.default = str(self.default)

    def add_gate(self, gate: Gate) -> None:
        """Add or replace the gate on ``gate.marker``."""
        self.gates[gate.marker] = gate

    def ordered_rules(self) -> list[PhenotypeRule]:
        """Rules in application order (by ``order``, ties by list position)."""
        return [r for _, _, r in sorted((r.order, i, r) for i, r in enumerate(self.rules))]

    def categories(self) -> list[str]:
        """Phenotype names in rule order, then ``default`` (each once)."""
        out: list[str] = []
        for r in self.ordered_rules():
            if r.name not in out:
                out.append(r.name)
        if self.default not in out:
            out.append(self.default)
        return out

    def missing_gates(self) -> list[str]:
        """Markers used by rules that have no gate."""
        out = []
        for r in self.ordered_rules():
            for m in r.markers:
                if m not in self.gates and m not in out:
                    out.append(m)
        return out

    # serialisation: plain, JSON/YAML/h5ad-friendly values
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "default": self.default,
            "gates": [g.to_dict() for g in self.gates.values()],
            "rules": [r.to_dict() for r in self.ordered_rules()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatingScheme:
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping with 'gates' and 'rules', got {type(d).__name__}")
        if "gates" not in d and "rules" not in d:
            raise ValueError("no 'gates' and no 'rules' entries")
        gates = [Gate.from_dict(g) for g in _as_list(d.get("gates"), "gates")]
        rules = [PhenotypeRule.from_dict(r) for r in _as_list(d.get("rules"), "rules")]
        return cls(gates={g.marker: g for g in gates}, rules=rules, default=str(_plain(d.get("default", "Other"))))


def _as_list(v, what: str) -> list:
    """A list of dicts stored as a list (files) or as a ``{"000": ..., "001": ...}`` mapping (h5ad)."""
    if v is None:
        return []
    if isinstance(v, dict):
        return [v[k] for k in sorted(v, key=lambda s: (len(str(s)), str(s)))]
    if isinstance(v, (list, tuple)):
        for item in v:
            if not isinstance(item, dict):
                raise ValueError(f"'{what}' entries must be mappings, found {item!r}")
        return list(v)
    raise ValueError(f"'{what}' must be a list, got {type(v).__name__}")


def _plain(v):
    """numpy scalars / 0-d arrays / bytes from an h5ad file -> plain Python values."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        return v.item()
    return v


# --------------------------------------------------------------------------- values and transforms
def transform_values(x, transform: str = "linear", cofactor: float = 5.0) -> np.ndarray:
    """Transform raw marker values for display and thresholding.

    ``linear``: ``x``; ``asinh``: ``arcsinh(x / cofactor)``; ``log``: ``log1p(max(x, 0) / cofactor)``.
    Returns float64; NaN stays NaN.
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


def inverse_transform(y, transform: str = "linear", cofactor: float = 5.0) -> np.ndarray:
    """Inverse of :func:`transform_values` (raw units from transformed ones)."""
    y = np.asarray(y, dtype=np.float64)
    if transform == "linear":
        return y.copy()
    if transform == "asinh":
        return np.sinh(y) * cofactor
    if transform == "log":
        return np.expm1(y) * cofactor
    raise ValueError(f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}")


def marker_values(adata, marker: str, *, layer: str | None = None) -> np.ndarray:
    """Per-cell values of ``marker`` as float64: a column of ``X`` (or ``layers[layer]``) by
    ``var_name``, else a numeric ``obs`` column."""
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


def apply_gate(adata, gate: Gate, *, layer: str | None = None) -> np.ndarray:
    """Boolean array (one per cell): is the cell positive for ``gate``?"""
    return gate_mask(marker_values(adata, gate.marker, layer=layer), gate)


def gate_mask(values, gate: Gate) -> np.ndarray:
    """Boolean positivity of raw ``values`` under ``gate`` (NaN is never positive)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return v > gate.threshold if gate.direction == "above" else v < gate.threshold


def apply_rules(adata, scheme: GatingScheme, *, layer: str | None = None) -> pd.Categorical:
    """Phenotype of every cell from the ordered rules (first match wins; else ``scheme.default``).

    Categories are the rule names in order, then the default.
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


# --------------------------------------------------------------------------- storage in the table
def _scheme_to_uns(scheme: GatingScheme) -> dict[str, Any]:
    """The scheme as h5ad-writable values: lists of mappings become ``{"000": ...}`` groups."""
    d = scheme.to_dict()
    d["gates"] = {f"{i:03d}": g for i, g in enumerate(d["gates"])}
    d["rules"] = {f"{i:03d}": r for i, r in enumerate(d["rules"])}
    for r in d["rules"].values():
        r["conditions"] = list(r["conditions"])
    return d


def _category_colors(adata, cats: list[str], default: str) -> list[str]:
    """Reuse colours that other categorical columns give the same names; else the one colour
    policy (:func:`napari_carspatial.model.palette.color_for`; the default category grey)."""
    from ..model.palette import REST_COLOR, color_for

    known: dict[str, str] = {}
    for col in adata.obs.columns:
        s = adata.obs[col]
        ck = colors_key(str(col))
        if isinstance(s.dtype, pd.CategoricalDtype) and ck in adata.uns:
            cols = list(np.asarray(adata.uns[ck]).tolist())
            for c, colr in zip(s.cat.categories, cols, strict=False):
                known.setdefault(str(c), str(colr))
    out = []
    for c in cats:
        if c in known:
            out.append(known[c])
        elif c == default:
            out.append(REST_COLOR)
        else:
            out.append(color_for(c, used=out))
    return out


def store_gating(adata, scheme: GatingScheme, *, key: str = DEFAULT_KEY, reviewer: str | None = None,
                 layer: str | None = None) -> pd.Categorical:
    """Apply ``scheme`` and store the result in ``adata`` (in place).

    Writes ``adata.obs[key]`` (categorical phenotype), ``adata.uns[f"{key}_colors"]`` and
    ``adata.uns["carspatial"]["gating"]``: the gates and rules with who applied them (``reviewer``,
    default the OS user), when (ISO 8601) and the key; a compact ``history`` of earlier
    applications is kept. Everything stored is h5ad-serialisable. Returns the phenotypes.
    """
    pheno = apply_rules(adata, scheme, layer=layer)
    who = reviewer or _whoami()
    when = _now()
    adata.obs[key] = pd.Series(pheno, index=adata.obs_names)
    adata.uns[colors_key(key)] = np.asarray(_category_colors(adata, list(pheno.categories), scheme.default), dtype=object)
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    prev = meta.get(UNS_GATING)
    history = dict(prev.get("history", {}) or {}) if isinstance(prev, dict) else {}
    counts = pd.Series(pheno).value_counts()
    entry = _scheme_to_uns(scheme)
    entry.update({
        "key": key,
        "applied_by": who,
        "applied_at": when,
        "layer": layer or "",
        "counts": {"names": [str(c) for c in counts.index], "n": counts.to_numpy(np.int64)},
    })
    history[f"{len(history):03d}"] = {"key": key, "applied_by": who, "applied_at": when,
                                      "scheme_json": json.dumps(scheme.to_dict())}
    entry["history"] = history
    meta[UNS_GATING] = entry
    adata.uns[UNS_KEY] = meta
    log.info("gating stored in obs[%r] by %s: %s", key, who, dict(counts))
    return pheno


def load_gating(adata) -> GatingScheme | None:
    """The gating scheme stored by :func:`store_gating`, or ``None`` when there is none."""
    meta = adata.uns.get(UNS_KEY, {}) or {}
    d = meta.get(UNS_GATING) if isinstance(meta, dict) else None
    if not d:
        return None
    return GatingScheme.from_dict(dict(d))


# --------------------------------------------------------------------------- files
def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _kind(path: Path) -> str:
    suf = path.suffix.lower()
    if suf == ".json":
        return "json"
    if suf in (".yaml", ".yml"):
        return "yaml"
    raise SampleError(f"unknown gating file type {path.suffix or '(no suffix)'!r}.", path=path,
                      hint="Use a .json, .yaml or .yml file name.")


def export_gating(scheme: GatingScheme, path: str | os.PathLike) -> Path:
    """Write ``scheme`` to a JSON or YAML file (chosen by suffix), atomically. Returns the path."""
    path = Path(path)
    kind = _kind(path)
    d = scheme.to_dict()
    if kind == "json":
        text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
    _atomic_write(path, text)
    return path


def import_gating(path: str | os.PathLike) -> GatingScheme:
    """Read a gating file written by :func:`export_gating` (JSON or YAML, by suffix).

    Raises :class:`~napari_carspatial.model.SampleError` naming the file when it is missing,
    unreadable or not a gating scheme.
    """
    path = Path(path)
    kind = _kind(path)
    hint = ("A gating file is a mapping with 'gates' (marker, threshold, transform, cofactor, direction) "
            "and 'rules' (name, conditions like ['CD3+', 'CAR+'], order); see docs/gating.md.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SampleError("gating file not found.", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SampleError(f"cannot read the gating file ({err}).", path=path) from None
    import yaml

    try:
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise SampleError(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).", path=path,
                          hint=hint) from None
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()
        raise SampleError(f"not valid YAML ({' '.join(first[:3])}).", path=path, hint=hint) from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt is not None and fmt != FILE_FORMAT:
        raise SampleError(f"this is a {fmt!r} file, not a {FILE_FORMAT!r} file.", path=path, hint=hint)
    try:
        return GatingScheme.from_dict(data)
    except (ValueError, TypeError, KeyError) as err:
        msg = err.args[0] if err.args else str(err)
        raise SampleError(f"not a gating scheme: {msg}.", path=path, hint=hint) from None


# --------------------------------------------------------------------------- suggestion and histogram
def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def suggest_threshold(values, *, method: str = "otsu", transform: str = "linear", cofactor: float = 5.0,
                      seed: int = 0, max_cells: int = 200_000) -> float:
    """Suggest a threshold separating negative from positive cells, in **raw** units.

    Parameters
    ----------
    values
        Raw per-cell marker values (NaN ignored).
    method
        ``"otsu"``: :func:`skimage.filters.threshold_otsu` of the transformed values.
        ``"gmm"``: a 2-component Gaussian mixture on the transformed values; the threshold is where
        the posterior of the upper component crosses 0.5 between the two means.
    transform, cofactor
        Scale on which the suggestion is computed (see :func:`transform_values`).
    seed, max_cells
        The GMM is fitted on at most ``max_cells`` values drawn with ``seed`` (Otsu uses all).
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


def histogram(values, *, transform: str = "linear", cofactor: float = 5.0, bins: int = 128,
              range: tuple[float, float] | None = None,  # noqa: A002 - numpy.histogram's name
              clip_percentile: float | None = None) -> Histogram:
    """Histogram of the transformed ``values`` (NaN ignored).

    ``range`` is on the transformed scale; without it the range runs from the minimum to the
    maximum, or to the ``clip_percentile`` percentile (e.g. 99.9) so a few very bright cells do not
    squash the distribution.
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
