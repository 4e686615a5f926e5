"""The gating scheme's data: :class:`Gate`, :class:`PhenotypeRule`, :class:`GatingScheme`, their
constants and :func:`parse_conditions`. Re-exported by :mod:`.gating`.
"""

from __future__ import annotations

import getpass
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

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
    created_by
        Who made the gate and when (ISO 8601); default the OS user and now.
    created_at
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
        """The threshold on the gate's own (transformed) scale.

        Returns
        -------
        float
        """
        from ._gating_values import transform_values  # the values module builds on this one

        return float(transform_values(np.array([self.threshold]), self.transform, self.cofactor)[0])

    def to_dict(self) -> dict[str, Any]:
        """The gate as JSON / h5ad-writable values.

        Returns
        -------
        dict
        """
        return {"marker": self.marker, "threshold": float(self.threshold), "transform": self.transform,
                "cofactor": float(self.cofactor), "direction": self.direction,
                "created_by": self.created_by, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        """A gate from :meth:`to_dict`'s values.

        Parameters
        ----------
        d
            ``marker``, ``threshold`` and optionally ``direction``, ``transform``, ``cofactor``, ...

        Returns
        -------
        Gate
        """
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

    Parameters
    ----------
    text
        The conditions as typed.

    Returns
    -------
    list of tuple
        ``(marker, sign)`` pairs.

    Raises
    ------
    ValueError
        Unbalanced quotes, or a token that does not end in ``+`` / ``-``.
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

    Attributes
    ----------
    name
        The phenotype written for the cells that match.
    conditions
        ``(marker, "+" | "-")`` pairs; a cell matches when every condition holds. A string such
        as ``"CD3+ CAR+"`` is accepted and parsed with :func:`parse_conditions`.
    order
        Application order (lower first; ties by list position in the scheme).
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
        """Conditions as typed by a user: ``"CD3+ CAR+"``.

        Returns
        -------
        str
        """
        return " ".join(_cond_str(m, s) for m, s in self.conditions)

    @property
    def markers(self) -> list[str]:
        """The markers the rule's conditions use, in order.

        Returns
        -------
        list of str
        """
        return [m for m, _ in self.conditions]

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON / h5ad-writable values.

        Returns
        -------
        dict
        """
        return {"name": self.name, "conditions": [f"{m}{s}" for m, s in self.conditions], "order": self.order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhenotypeRule:
        """A rule from :meth:`to_dict`'s values (``conditions`` as pairs or as text).

        Parameters
        ----------
        d
            ``name``, ``conditions`` and optionally ``order``.

        Returns
        -------
        PhenotypeRule
        """
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
    """Gates (one per marker) and ordered phenotype rules.

    Attributes
    ----------
    gates
        ``{marker: Gate}`` (a list of :class:`Gate` is accepted and keyed by marker).
    rules
        The phenotype rules (:class:`PhenotypeRule`).
    default
        The phenotype of cells that match no rule.
    """

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
        """Add or replace the gate on ``gate.marker``.

        Parameters
        ----------
        gate
            The gate.
        """
        self.gates[gate.marker] = gate

    def ordered_rules(self) -> list[PhenotypeRule]:
        """Rules in application order (by ``order``, ties by list position).

        Returns
        -------
        list of PhenotypeRule
        """
        return [r for _, _, r in sorted((r.order, i, r) for i, r in enumerate(self.rules))]

    def categories(self) -> list[str]:
        """Phenotype names in rule order, then ``default`` (each once).

        Returns
        -------
        list of str
        """
        out: list[str] = []
        for r in self.ordered_rules():
            if r.name not in out:
                out.append(r.name)
        if self.default not in out:
            out.append(self.default)
        return out

    def missing_gates(self) -> list[str]:
        """Markers used by rules that have no gate.

        Returns
        -------
        list of str
        """
        out = []
        for r in self.ordered_rules():
            for m in r.markers:
                if m not in self.gates and m not in out:
                    out.append(m)
        return out

    # serialisation: plain, JSON/YAML/h5ad-friendly values
    def to_dict(self) -> dict[str, Any]:
        """The scheme as JSON-able values (gates and rules as lists).

        Returns
        -------
        dict
        """
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "default": self.default,
            "gates": [g.to_dict() for g in self.gates.values()],
            "rules": [r.to_dict() for r in self.ordered_rules()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatingScheme:
        """A scheme from :meth:`to_dict`'s values, or from the ``{"000": ...}`` groups an h5ad stores.

        Parameters
        ----------
        d
            ``gates``, ``rules`` and optionally ``default``.

        Returns
        -------
        GatingScheme
        """
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
