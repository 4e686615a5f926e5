"""Roles from cell-type names: the vocabulary (:data:`ROLES`, :data:`ROLE_TITLES`, the CAR target
:data:`ANTIGENS`) and the case- and punctuation-insensitive name rules (:func:`name_tokens`,
:func:`infer_role`, :func:`infer_roles`) documented in :mod:`napari_carspatial.analysis.roles`,
which re-exports them and builds the editable mapping on top.

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["ANTIGENS", "DERIVED_ROLES", "ROLES", "ROLE_TITLES", "infer_role", "infer_roles", "name_tokens"]


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
    """``{role: [type names]}`` inferred from names (every role key present, maybe empty).

    Parameters
    ----------
    type_names
        The cell-type names of a table.

    Returns
    -------
    dict
        ``{role: [type names]}``; every role key is present, maybe with an empty list.
    """
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
