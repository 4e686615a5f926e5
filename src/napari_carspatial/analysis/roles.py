"""Roles: the vocabulary the CAR T measures speak, mapped from any lab's cell-type names.

A *role* is what a measure needs to know about a cell (is it a CAR T cell? a tumour cell?), kept
apart from how a lab names its types ("Tumour", "CK+ tumor", "Helper T", "CD68+ macrophage").

======================  ============================================================
role                    meaning
======================  ============================================================
``car_t``               CAR T cells
``tumor``               tumour cells (including antigen-negative ones)
``antigen_neg``         antigen-negative tumour cells (a subset of ``tumor``)
``myeloid``             macrophages, monocytes, MDSC and other myeloid cells
``macrophage``          macrophages (a subset of ``myeloid``)
``mdsc``                myeloid-derived suppressor cells (a subset of ``myeloid``)
``cd8_t``               CD8 (cytotoxic) T cells, not CAR T
``cd4_t``               CD4 (helper, regulatory) T cells, not CAR T
``t_cell``              every T cell that is not CAR T (CD8, CD4 and unspecified T)
``b``                   B cells (and plasma cells)
``stroma``              fibroblasts, CAF, smooth muscle, other stroma
``endothelium``         endothelial cells, vessels
``pdl1_macrophage``     PD-L1+ macrophages: the types that say so, else *derived*: ``myeloid``
                        cells above a PD-L1 threshold (see :func:`role_masks`)
======================  ============================================================

Inference from the names (:func:`infer_role`, rules in :mod:`napari_carspatial.analysis.role_names`):
"Tumour", "CK+ tumor", "PanCK+" are ``tumor``, "MSLN- tumour" also ``antigen_neg``, "CD68+
macrophage" ``myeloid`` and ``macrophage``, "Helper T" ``cd4_t`` and ``t_cell``; names that
match nothing ("Other", "celltype_A", "NK") get no role and are listed as unmapped.

The mapping is editable (``roles=`` in the API, ``--roles`` in the CLI, ``metric_options:
roles:`` in a batch config, the Analysis dock): ``{role: [types]}`` replaces the inferred types
of that role; ``{role: {"rule": "CD3+ CAR+", "thresholds": {"CAR": 150}, "within": ["T cell"]}}``
makes the role a marker rule (for a CAR T role when no type is called CAR T; a threshold left out
is Otsu on asinh(x/5) of all cells). :func:`store_roles` saves the mapping in
``uns["carspatial"]["roles"]`` (JSON), so it survives writing and reopening the table, and
:func:`resolve_roles` uses a stored mapping before inferring.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_carspatial.analysis.role_names import (  # the name rules: analysis/role_names.py
    ANTIGENS,
    DERIVED_ROLES,
    ROLE_TITLES,
    ROLES,
    infer_role,
    infer_roles,
    name_tokens,
)
from napari_carspatial.model import UNS_KEY, SampleError

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = [
    "ANTIGENS",
    "DERIVED_ROLES",
    "ROLES",
    "ROLE_TITLES",
    "MarkerRule",
    "RoleMapping",
    "infer_role",
    "infer_roles",
    "load_roles",
    "name_tokens",
    "parse_roles",
    "resolve_roles",
    "role_masks",
    "store_roles",
]

# --------------------------------------------------------------------------- marker rules
@dataclass
class MarkerRule:
    """A role defined by marker conditions, e.g. CAR T = ``"CD3+ CAR+"``.

    Parameters
    ----------
    conditions
        ``"CD3+ CAR+"`` or ``[("CD3", "+"), ("CAR", "+")]`` (see
        :func:`~napari_carspatial.analysis.gating.parse_conditions`).
    thresholds
        ``{marker: raw threshold}``; a marker left out gets Otsu on asinh(x/5) of all cells.
    within
        Only cells of these types can match (e.g. ``["T cell"]``); ``None``: any cell.
    """

    conditions: list = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    within: list[str] | None = None

    def __post_init__(self):
        from napari_carspatial.analysis.gating import parse_conditions

        c = self.conditions
        self.conditions = parse_conditions(c) if isinstance(c, str) else [(str(m), str(s)) for m, s in c]
        if not self.conditions:
            raise ValueError("a marker rule needs at least one condition, e.g. 'CD3+ CAR+'")
        self.thresholds = {str(k): float(v) for k, v in dict(self.thresholds or {}).items() if v is not None}
        self.within = None if self.within is None else [str(t) for t in _as_list(self.within)]

    @property
    def text(self) -> str:
        return " ".join(f"{m}{s}" for m, s in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.text}
        if self.thresholds:
            d["thresholds"] = dict(self.thresholds)
        if self.within is not None:
            d["within"] = list(self.within)
        return d

    def evaluate(self, adata, *, types: np.ndarray | None = None, layer: str | None = None) -> tuple[np.ndarray, dict]:
        """Cells matching every condition, and the thresholds used (raw units)."""
        from napari_carspatial.analysis.gating import marker_values, suggest_threshold

        mask = np.ones(adata.n_obs, dtype=bool)
        used: dict[str, float] = {}
        for marker, sign in self.conditions:
            m = _match_marker(adata, marker)
            if m is None:
                raise SampleError(f"marker rule {self.text!r}: no marker {marker!r} in the table "
                                  f"(markers: {', '.join(map(str, adata.var_names[:30]))}).")
            vals = marker_values(adata, m, layer=layer)
            thr = self.thresholds.get(marker, self.thresholds.get(m))
            if thr is None:
                try:
                    thr = suggest_threshold(vals, method="otsu", transform="asinh", cofactor=5.0)
                except ValueError:
                    thr = np.inf
            used[marker] = float(thr)
            with np.errstate(invalid="ignore"):
                mask &= (vals > thr) if sign == "+" else (vals < thr)
        if self.within is not None and types is not None:
            mask &= np.isin(types, self.within)
        return mask, used


def _match_marker(adata, marker: str) -> str | None:
    names = [str(v) for v in adata.var_names]
    if marker in names or marker in adata.obs.columns:
        return marker
    key = re.sub(r"[^a-z0-9]", "", marker.lower())
    for n in names:
        if re.sub(r"[^a-z0-9]", "", n.lower()) == key:
            return n
    return None


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return list(np.atleast_1d(np.asarray(v, dtype=object)).tolist())


# --------------------------------------------------------------------------- the mapping
_ROLE_ALIASES = {
    "cart": "car_t", "car": "car_t", "cartcell": "car_t", "carts": "car_t",
    "tumor": "tumor", "tumour": "tumor", "cancer": "tumor",
    "antigenneg": "antigen_neg", "antigennegative": "antigen_neg", "antigennegativetumor": "antigen_neg",
    "antigennegativetumour": "antigen_neg", "agneg": "antigen_neg", "antigennegtumor": "antigen_neg",
    "myeloid": "myeloid", "macrophage": "macrophage", "macrophages": "macrophage", "mdsc": "mdsc",
    "cd8": "cd8_t", "cd8t": "cd8_t", "cd4": "cd4_t", "cd4t": "cd4_t", "tcell": "t_cell", "t": "t_cell",
    "b": "b", "bcell": "b", "stroma": "stroma", "endothelium": "endothelium", "endothelial": "endothelium",
    "pdl1macrophage": "pdl1_macrophage", "pdl1mac": "pdl1_macrophage",
}


def _role_name(name: str) -> str:
    n = str(name)
    if n in ROLES or n in DERIVED_ROLES:
        return n
    k = re.sub(r"[^a-z0-9]", "", n.lower().replace("tumour", "tumor"))
    if k in _ROLE_ALIASES:
        return _ROLE_ALIASES[k]
    raise SampleError(f"unknown role {name!r}; roles are {', '.join((*ROLES, *DERIVED_ROLES))}.")


@dataclass
class RoleMapping:
    """Which cell types (or which marker rule) make each role.

    Attributes
    ----------
    types
        ``{role: [type names]}`` (names as they are in the cell-type column).
    rules
        ``{role: MarkerRule}``: roles defined by markers instead of types.
    cell_type_key
        The column the type names come from.
    source
        ``{role: "inferred" | "stored" | "given"}``.
    unmapped
        Type names of the column that no role takes.
    """

    types: dict[str, list[str]] = field(default_factory=dict)
    rules: dict[str, MarkerRule] = field(default_factory=dict)
    cell_type_key: str | None = None
    source: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)

    def is_mapped(self, role: str) -> bool:
        return role in self.rules or bool(self.types.get(role))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"cell_type_key", "roles": {role: [types] | rule dict}, "source", "unmapped"}``."""
        roles: dict[str, Any] = {}
        for r in (*ROLES, *DERIVED_ROLES):
            if r in self.rules:
                roles[r] = self.rules[r].to_dict()
            elif r in self.types:
                roles[r] = list(self.types[r])
        return {"cell_type_key": self.cell_type_key, "roles": roles, "source": dict(self.source),
                "unmapped": list(self.unmapped)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoleMapping:
        m = parse_roles(d.get("roles", {}))
        m.cell_type_key = d.get("cell_type_key") or None
        m.source = {str(k): str(v) for k, v in dict(d.get("source", {}) or {}).items()}
        m.unmapped = [str(t) for t in _as_list(d.get("unmapped"))]
        return m

    def describe(self) -> list[str]:
        """One line per role: ``CAR T: CAR T (inferred)``, or ``CAR T: not mapped``."""
        lines = []
        for r in (*ROLES, *DERIVED_ROLES):
            title = ROLE_TITLES[r]
            src = self.source.get(r, "inferred")
            if r in self.rules:
                lines.append(f"{title}: marker rule {self.rules[r].text} ({src})")
            elif self.types.get(r):
                lines.append(f"{title}: {', '.join(self.types[r])} ({src})")
            elif r == "pdl1_macrophage":
                lines.append(f"{title}: derived (myeloid cells above a PD-L1 threshold)")
            else:
                lines.append(f"{title}: not mapped")
        return lines


def parse_roles(spec) -> RoleMapping:
    """A :class:`RoleMapping` from a mapping, a JSON string, a JSON/YAML file path or a mapping.

    Values: a list of type names, one name, ``None`` (derived, ``pdl1_macrophage`` only),
    ``{"types": [...]}`` or ``{"rule": "CD3+ CAR+", "thresholds": {...}, "within": [...]}``.
    """
    if spec is None:
        return RoleMapping()
    if isinstance(spec, RoleMapping):
        return spec
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        p = Path(text)
        if not text.startswith("{") and p.suffix.lower() in (".json", ".yaml", ".yml"):
            if not p.is_file():
                raise SampleError("role mapping file not found.", path=p)
            import yaml

            try:
                spec = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as err:
                raise SampleError(f"not valid JSON/YAML ({str(err).splitlines()[0]}).", path=p) from None
        else:
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as err:
                raise SampleError(f"the role mapping is not valid JSON ({err.msg} at character {err.pos}): "
                                  f"{text[:80]!r}.", hint='Example: \'{"car_t": ["CAR+ T"], '
                                  '"tumor": ["Tumour", "CK+"]}\'') from None
    if not isinstance(spec, Mapping):
        raise SampleError(f"a role mapping must be a mapping of role to cell types, got {type(spec).__name__}.")
    if "roles" in spec and isinstance(spec.get("roles"), Mapping) and set(spec) <= {"roles", "cell_type_key",
                                                                                   "source", "unmapped"}:
        return RoleMapping.from_dict(spec)
    m = RoleMapping()
    for k, v in spec.items():
        role = _role_name(k)
        m.source[role] = "given"
        if v is None:
            m.types[role] = []
            continue
        if isinstance(v, Mapping):
            if "rule" in v or "conditions" in v:
                try:
                    m.rules[role] = MarkerRule(v.get("rule", v.get("conditions")), v.get("thresholds") or {},
                                               v.get("within"))
                except ValueError as err:
                    raise SampleError(f"role {k!r}: {err}") from None
                continue
            v = v.get("types", [])
        m.types[role] = [str(t) for t in _as_list(v)]
    return m


def _type_column(adata, cell_type_key: str) -> tuple[np.ndarray, list[str]]:
    """(codes, categories) of the type column; codes -1 for missing values."""
    col = adata.obs[cell_type_key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        arr = col.array  # the Categorical itself (Series.cat would hash the whole obs index)
        cats = [str(c) for c in arr.categories]
        codes = np.asarray(arr.codes, dtype=np.int64)
        if len(set(cats)) != len(cats):  # categories that differ only by type (1 vs "1")
            cat = pd.Categorical(np.asarray(arr).astype(str))
            return np.asarray(cat.codes, np.int64), [str(c) for c in cat.categories]
        return codes, cats
    vals = col.to_numpy()
    miss = pd.isna(vals)
    cat = pd.Categorical(np.where(miss, None, vals.astype(str)))
    return np.asarray(cat.codes, np.int64), [str(c) for c in cat.categories]


def resolve_roles(adata: AnnData, *, cell_type_key: str, roles: RoleMapping | Mapping[str, Any] | str | None = None, use_stored: bool = True) -> RoleMapping:
    """The role mapping for a table: given roles over a stored mapping over the inferred one.

    Parameters
    ----------
    adata
        Table with ``obs[cell_type_key]``.
    cell_type_key
        The cell-type column.
    roles
        Anything :func:`parse_roles` reads; each role it names replaces that role.
    use_stored
        Use a mapping saved by :func:`store_roles` (when it was made for the same column).

    Returns
    -------
    RoleMapping
        The merged mapping (with where each role came from).
    """
    if isinstance(roles, RoleMapping) and roles.cell_type_key == cell_type_key:
        return roles
    # every category of the column, used or not: a declared "CAR T" with no cells (before
    # infusion) maps the role, and its count is a true 0
    _, present = _type_column(adata, cell_type_key)
    inferred = infer_roles(present)
    out = RoleMapping(types={r: list(v) for r, v in inferred.items()}, cell_type_key=cell_type_key,
                      source=dict.fromkeys(inferred, "inferred"))
    layers = []
    if use_stored:
        st = load_roles(adata)
        if st is not None and (st.cell_type_key in (None, cell_type_key)):
            layers.append(("stored", st))
    given = parse_roles(roles)
    if given.types or given.rules:
        layers.append(("given", given))
    for how, m in layers:
        for r in set(m.types) | set(m.rules):
            if how == "stored" and m.source.get(r, "inferred") == "inferred":
                continue  # a stored inferred role is re-inferred (the types may have changed)
            out.types.pop(r, None)
            out.rules.pop(r, None)
            if r in m.rules:
                out.rules[r] = m.rules[r]
            else:
                out.types[r] = list(m.types[r])
            out.source[r] = how if how == "given" else "stored"
    taken = {t for r, ts in out.types.items() for t in ts}
    out.unmapped = [c for c in present if c not in taken]
    return out


def role_masks(
    adata,
    *,
    cell_type_key: str | None = None,
    roles=None,
    pdl1_marker: str = "PD-L1",
    pdl1_threshold: float | None = None,
    layer: str | None = None,
    use_stored: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean masks of the cells in every role, and how they were decided.

    Parameters
    ----------
    adata
        The table.
    cell_type_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    roles
        A :class:`RoleMapping` or anything :func:`parse_roles` reads (merged over the inferred
        mapping by :func:`resolve_roles`).
    pdl1_marker, pdl1_threshold
        When no type names PD-L1+ macrophages, ``pdl1_macrophage`` = ``myeloid`` cells whose
        ``pdl1_marker`` is above ``pdl1_threshold`` (raw; ``None``: Otsu on asinh(x/5) of all
        cells). Without the marker the role is empty and *not mapped*.

    Returns
    -------
    masks, info
        ``{role: (n_obs,) bool}`` for every role, and ``{"mapping": RoleMapping, "mapped":
        {role: bool}, "missing_types": {role: [...]}, "pdl1_threshold", "pdl1_marker",
        "rule_thresholds": {role: {...}}, "cell_type_key"}``.
    """
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    key = resolve_cell_type_key(adata, cell_type_key).key
    mapping = roles if isinstance(roles, RoleMapping) and roles.cell_type_key == key else \
        resolve_roles(adata, cell_type_key=key, roles=roles, use_stored=use_stored)
    codes, cats = _type_column(adata, key)
    index = {c: i for i, c in enumerate(cats)}
    n = adata.n_obs
    masks: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"mapping": mapping, "mapped": {}, "missing_types": {}, "pdl1_threshold": None,
                            "pdl1_marker": None, "rule_thresholds": {}, "cell_type_key": key}
    type_names = None
    for role in (*ROLES, *DERIVED_ROLES):
        if role in mapping.rules:
            if type_names is None:
                type_names = np.asarray(cats + ["nan"], dtype=object)[codes]
            masks[role], info["rule_thresholds"][role] = mapping.rules[role].evaluate(adata, types=type_names,
                                                                                     layer=layer)
            info["mapped"][role] = True
            continue
        types = mapping.types.get(role, [])
        missing = [t for t in types if t not in index]
        if missing:
            info["missing_types"][role] = missing
        idx = [index[t] for t in types if t in index]
        masks[role] = np.isin(codes, idx) if idx else np.zeros(n, dtype=bool)
        info["mapped"][role] = bool(types)
    if not info["mapped"]["pdl1_macrophage"]:
        m = _match_marker(adata, pdl1_marker)
        if m is not None and m in adata.var_names:
            from napari_carspatial.analysis.gating import marker_values, suggest_threshold

            vals = marker_values(adata, m, layer=layer)
            thr = pdl1_threshold
            if thr is None:
                try:
                    thr = suggest_threshold(vals, method="otsu", transform="asinh", cofactor=5.0)
                except ValueError:
                    thr = np.inf
            with np.errstate(invalid="ignore"):
                masks["pdl1_macrophage"] = masks["myeloid"] & (vals > thr)
            info["pdl1_threshold"] = float(thr)
            info["pdl1_marker"] = m
            info["mapped"]["pdl1_macrophage"] = info["mapped"]["myeloid"]
    return masks, info


# --------------------------------------------------------------------------- storage
def store_roles(adata: AnnData, mapping: RoleMapping) -> None:
    """Save ``mapping`` in ``adata.uns["carspatial"]["roles"]`` (JSON text; mutates ``adata``).

    Parameters
    ----------
    adata
        The table (modified in place).
    mapping
        From :func:`resolve_roles` or :func:`infer_roles`.
    """
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["roles"] = json.dumps(mapping.to_dict(), sort_keys=True)
    adata.uns[UNS_KEY] = meta


def load_roles(adata: AnnData) -> RoleMapping | None:
    """The mapping saved by :func:`store_roles`, or ``None``.

    Parameters
    ----------
    adata
        The table.

    Returns
    -------
    RoleMapping or None
        The stored mapping, or ``None`` when there is none.
    """
    raw = (adata.uns.get(UNS_KEY, {}) or {}).get("roles")
    if raw is None:
        return None
    try:
        d = json.loads(str(raw)) if not isinstance(raw, Mapping) else dict(raw)
        return RoleMapping.from_dict(d)
    except (ValueError, TypeError, SampleError):
        logger.warning("the stored role mapping in uns['carspatial']['roles'] is unreadable; ignored")
        return None
