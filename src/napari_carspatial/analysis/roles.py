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

Inference (:func:`infer_role`) reads each type name case- and punctuation-insensitively:
the name is lower-cased, "tumour" becomes "tumor", a ``+``/``-`` right after a marker becomes a
``pos``/``neg`` word ("CD8+" -> ``cd8 pos``, "MSLN-" -> ``msln neg``, while the hyphen in
"CAR-T" or "PD-L1" only separates), and the name is split into words. A marker followed by
``neg`` does not count ("CAR- T cell" is not CAR T, "CD4-CD8+" is CD8). The first rule that
matches, in this order, gives the role:

1. ``car_t``: ``car``, ``cart`` ("CAR T", "CAR+", "CAR-T cell", "CART").
2. ``myeloid``: macrophage words ``macrophage``, ``mac``, ``mphi`` (Mφ), ``tam``, ``cd68``,
   ``cd163``, ``cd206``, ``kupffer``, ``histiocyte`` (also ``macrophage``); MDSC words
   ``mdsc``, ``mmdsc``, ``pmnmdsc``, ``gmdsc`` (also ``mdsc``); ``myeloid``, ``monocyte``,
   ``cd14``, ``cd11b``, ``cd33``. "M1"/"M2" alone count as macrophage.
3. ``endothelium``: ``endothelial``, ``endothelium``, ``endo``, ``cd31``, ``vessel``,
   ``vascular``, ``hev``, ``lec``.
4. ``stroma``: ``stroma``, ``stromal``, ``fibroblast``, ``caf``, ``mesenchymal``, ``sma``,
   ``asma``, ``myofibroblast``, ``pericyte``, ``muscle``.
5. ``tumor``: ``tumor``, ``cancer``, ``carcinoma``, ``adenocarcinoma``, ``malignant``,
   ``neoplastic``, ``epithelial``, ``epithelium``, ``melanoma``, ``lymphoma``, ``leukemia``,
   ``blast``, ``pdac``, ``ck``, ``panck``, ``cytokeratin``, ``keratin``, ``krt``, ``ecad``,
   ``cadherin``, and
   a named CAR target antigen (``msln``, ``psma``, ``cd19``, ... :data:`ANTIGENS`) - unless
   the name says ``associated``, ``infiltrating`` or ``adjacent`` (then the tumour word is only
   context: "tumor-infiltrating CD8" is CD8). It is also ``antigen_neg`` when a target antigen
   (or the word ``antigen``, ``ag``, ``target``) is negative ("MSLN- tumor",
   "Tumor (antigen-neg)"), or the name says ``escape``/``loss``, or a lone ``neg`` follows
   ("Tumor neg").
6. ``cd8_t``: ``cd8``, ``cd8a``, ``cytotoxic``, ``ctl``; "Tc" alone.
7. ``cd4_t``: ``cd4``, ``helper``, ``treg``, ``tfh``, ``th1``, ``th2``, ``th17``, ``foxp3``;
   "Th" alone.
8. ``t_cell``: ``cd3``, ``tcell``; "T" alone ("T cell", "T cells").
9. ``b``: ``cd19``, ``cd20``, ``bcell``, ``plasma``; "B" alone ("B", "B cells").

"Alone" means every other word is one of ``cell``, ``pos``, ``positive``, ``high``, ``hi``,
``lymphocyte``: so "B" and "B cells" are B cells but cytomapper's anonymised "celltype_B" is not.
``cd8_t`` and ``cd4_t`` types are also ``t_cell``. Names that match nothing ("Other",
"celltype_A", "NK") get no role and are listed as unmapped.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_carspatial.model import UNS_KEY, SampleError

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

#: roles a type name can map to, in display order
ROLES: tuple[str, ...] = ("car_t", "tumor", "antigen_neg", "myeloid", "macrophage", "mdsc", "cd8_t", "cd4_t",
                          "t_cell", "b", "stroma", "endothelium")
#: roles derived from others and a marker when no type names them
DERIVED_ROLES: tuple[str, ...] = ("pdl1_macrophage",)
#: human titles (user-facing text may say tumour)
ROLE_TITLES: dict[str, str] = {
    "car_t": "CAR T", "tumor": "tumour", "antigen_neg": "antigen-negative tumour", "myeloid": "myeloid",
    "macrophage": "macrophage", "mdsc": "MDSC", "cd8_t": "CD8 T", "cd4_t": "CD4 T", "t_cell": "T cell",
    "b": "B cell", "stroma": "stroma", "endothelium": "endothelium", "pdl1_macrophage": "PD-L1+ macrophage",
}
#: CAR target antigens (a negative one makes a tumour type antigen-negative)
ANTIGENS = frozenset({
    "msln", "mesothelin", "psma", "folh1", "psca", "cd19", "cd20", "cd22", "bcma", "her2", "erbb2", "egfr",
    "egfrviii", "gd2", "cea", "cldn18", "claudin18", "muc1", "muc16", "b7h3", "gpc3", "epcam", "steap1", "dll3",
    "il13ra2", "ror1", "antigen", "ag", "target", "taa",
})

_FILLER = frozenset({"cell", "pos", "positive", "high", "hi", "bright", "lymphocyte"})
_CONTEXT = frozenset({"associated", "infiltrating", "adjacent"})
_NOT_NEGATABLE = frozenset({"tumor", "cancer", "cell", "macrophage", "fibroblast", "stroma", "t", "b"})
_PLURAL = {"macrophages": "macrophage", "cells": "cell", "monocytes": "monocyte", "fibroblasts": "fibroblast",
           "tumors": "tumor", "lymphocytes": "lymphocyte", "mdscs": "mdsc", "tams": "tam", "cafs": "caf",
           "macs": "mac", "tregs": "treg", "ctls": "ctl", "cancers": "cancer", "vessels": "vessel",
           "histiocytes": "histiocyte", "pericytes": "pericyte", "blasts": "blast", "carts": "cart",
           "neutrophils": "neutrophil", "tcells": "tcell", "bcells": "bcell"}

# role -> (strong words: anywhere in the name, weak words: only with filler words around)
_RULES: tuple[tuple[str, frozenset, frozenset], ...] = (
    ("car_t", frozenset({"car", "cart"}), frozenset()),
    ("macrophage", frozenset({"macrophage", "mac", "mphi", "tam", "cd68", "cd163", "cd206", "kupffer",
                              "histiocyte"}), frozenset({"m1", "m2"})),
    ("mdsc", frozenset({"mdsc", "mmdsc", "pmnmdsc", "gmdsc"}), frozenset()),
    ("myeloid", frozenset({"myeloid", "monocyte", "cd14", "cd11b", "cd33"}), frozenset({"mono"})),
    ("endothelium", frozenset({"endothelial", "endothelium", "endo", "cd31", "vessel", "vascular", "hev", "lec"}),
     frozenset()),
    ("stroma", frozenset({"stroma", "stromal", "fibroblast", "caf", "mesenchymal", "sma", "asma", "myofibroblast",
                          "pericyte", "muscle"}), frozenset()),
    ("tumor", frozenset({"tumor", "cancer", "carcinoma", "adenocarcinoma", "malignant", "neoplastic", "epithelial",
                         "epithelium", "melanoma", "lymphoma", "leukemia", "blast", "pdac", "ck", "panck",
                         "cytokeratin", "keratin", "krt", "ecad", "cadherin"}) | (ANTIGENS - {"antigen", "ag", "target"}),
     frozenset()),
    ("cd8_t", frozenset({"cd8", "cd8a", "cd8b", "cytotoxic", "ctl"}), frozenset({"tc"})),
    ("cd4_t", frozenset({"cd4", "helper", "treg", "tfh", "th1", "th2", "th17", "foxp3"}), frozenset({"th"})),
    ("t_cell", frozenset({"cd3", "tcell"}), frozenset({"t"})),
    ("b", frozenset({"cd19", "cd20", "bcell", "plasma"}), frozenset({"b"})),
)
_PARENT = {"macrophage": "myeloid", "mdsc": "myeloid", "cd8_t": "t_cell", "cd4_t": "t_cell",
           "antigen_neg": "tumor"}


def _is_marker(tok: str) -> bool:
    return tok not in _NOT_NEGATABLE and (any(ch.isdigit() for ch in tok) or tok in ANTIGENS or tok in {
        "ck", "panck", "car", "sma", "ecad", "foxp3", "krt"})


def name_tokens(name: str) -> tuple[list[str], set[str]]:
    """Words of a type name and the markers it calls negative (see the module docstring)."""
    s = str(name).lower()
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\u207a", "+").replace("\u207b", "-")
    s = s.replace("\u03c6", "phi").replace("\u03d5", "phi")
    s = re.sub(r"tumou?rs?", lambda m: "tumors" if m.group(0).endswith("s") else "tumor", s)
    s = re.sub(r"pd[\s_-]?l1", "pdl1", s)
    s = re.sub(r"pd[\s_-]?1\b", "pd1", s)
    s = re.sub(r"(cd\d+[a-z]?)-(?=cd\d)", r"\1 neg ", s)   # "CD4-CD8+": CD4 negative
    s = re.sub(r"(?<=[a-z0-9])\+", " pos ", s)
    s = re.sub(r"(?<=[a-z0-9])-(?=[^a-z0-9]|$)", " neg ", s)
    raw = [t for t in re.split(r"[^a-z0-9]+", s) if t]
    toks: list[str] = []
    for t in raw:
        t = _PLURAL.get(t, t)
        m = re.fullmatch(r"([a-z]*\d*[a-z]*?)(neg|pos)", t)
        if m and m.group(1) and _is_marker(m.group(1)):
            toks.extend([m.group(1), m.group(2)])
            continue
        m = re.fullmatch(r"(cd[48])(t|tcell)", t)
        if m:
            toks.extend([m.group(1), "t"])
            continue
        if t == "negative":
            t = "neg"
        if t == "positive":
            t = "pos"
        toks.append(t)
    neg: set[str] = set()
    for i, t in enumerate(toks):
        if t == "neg" and i > 0 and _is_marker(toks[i - 1]):
            neg.add(toks[i - 1])
    return toks, neg


def infer_role(name: str) -> tuple[str | None, set[str]]:
    """The primary role of a type name and its sub-roles, e.g. ``("myeloid", {"macrophage"})``.

    ``(None, set())`` when no rule matches. See the module docstring for the synonym list.
    """
    toks, neg = name_tokens(name)
    words = [t for t in toks if t not in neg]
    wset = set(words) - {"neg"}
    others = {t for t in toks if t not in _FILLER}
    context = bool(wset & _CONTEXT)
    subs: set[str] = set()
    for role, strong, weak in _RULES:
        hit = bool(wset & strong)
        if not hit and weak:
            w = wset & weak
            hit = bool(w) and others <= (w | _FILLER)
        if role == "tumor" and hit and context:
            hit = False
        if not hit:
            continue
        if role in ("macrophage", "mdsc"):
            subs.add(role)
            if role == "macrophage" and "pdl1" in wset:
                subs.add("pdl1_macrophage")
            return "myeloid", subs
        if role == "tumor":
            anti = neg & ANTIGENS
            lone_neg = "neg" in toks and not neg
            if anti or lone_neg or wset & {"escape", "loss"}:
                subs.add("antigen_neg")
            return "tumor", subs
        if role in ("cd8_t", "cd4_t"):
            return role, {"t_cell"}
        return role, subs
    return None, set()


def infer_roles(type_names: Iterable[str]) -> dict[str, list[str]]:
    """``{role: [type names]}`` inferred from names (every role key present, maybe empty)."""
    out: dict[str, list[str]] = {r: [] for r in (*ROLES, *DERIVED_ROLES)}
    for name in type_names:
        name = str(name)
        role, subs = infer_role(name)
        if role is None:
            continue
        for r in (role, *sorted(subs)):
            if name not in out[r]:
                out[r].append(name)
    return out


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


def resolve_roles(adata, *, cell_type_key: str, roles=None, use_stored: bool = True) -> RoleMapping:
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
def store_roles(adata, mapping: RoleMapping) -> None:
    """Save ``mapping`` in ``adata.uns["carspatial"]["roles"]`` (JSON text; mutates ``adata``)."""
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["roles"] = json.dumps(mapping.to_dict(), sort_keys=True)
    adata.uns[UNS_KEY] = meta


def load_roles(adata) -> RoleMapping | None:
    """The mapping saved by :func:`store_roles`, or ``None``."""
    raw = (adata.uns.get(UNS_KEY, {}) or {}).get("roles")
    if raw is None:
        return None
    try:
        d = json.loads(str(raw)) if not isinstance(raw, Mapping) else dict(raw)
        return RoleMapping.from_dict(d)
    except (ValueError, TypeError, SampleError):
        logger.warning("the stored role mapping in uns['carspatial']['roles'] is unreadable; ignored")
        return None
