"""Ligand-receptor pairs: the CAR T preset, protein aliases, liana's resources and matching
them to a panel's names (:func:`resolve_pairs`). Public names are re-exported by :mod:`.ligrec`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

#: the CAR T preset: (ligand, receptor); complexes as liana writes them (subunits joined by "_")
CART_PAIRS: tuple[tuple[str, str], ...] = (
    ("IL18", "IL18R1_IL18RAP"),
    ("IFNG", "IFNGR1_IFNGR2"),
    ("CD274", "PDCD1"),
    ("CD47", "SIRPA"),
    ("TGFB1", "TGFBR1_TGFBR2"),
    ("CSF1", "CSF1R"),
    ("CXCL9", "CXCR3"),
    ("CXCL10", "CXCR3"),
    ("CXCL11", "CXCR3"),
    ("IL6", "IL6R"),
    ("CCL2", "CCR2"),
    ("SPP1", "CD44"),
)

#: gene symbol -> names the same molecule has on protein panels (matched case-insensitively,
#: ignoring '-', '_', ' ' and '.')
PROTEIN_ALIASES: dict[str, tuple[str, ...]] = {
    "CD274": ("PD-L1", "PDL1", "B7-H1", "CD274"),
    "PDCD1": ("PD-1", "PD1", "CD279", "PDCD1"),
    "CD47": ("CD47",),
    "SIRPA": ("SIRPa", "SIRPα", "SIRP-alpha", "CD172a"),
    "CSF1R": ("CD115", "CSF1R", "CSF-1R"),
    "CSF1": ("M-CSF", "MCSF", "CSF-1"),
    "IFNG": ("IFNg", "IFN-gamma", "IFNγ", "IFN-g"),
    "IFNGR1": ("CD119", "IFNGR1"),
    "IL6R": ("CD126", "IL-6R", "IL6R"),
    "IL6": ("IL-6",),
    "IL18": ("IL-18",),
    "IL18R1": ("CD218a", "IL-18R1"),
    "IL18RAP": ("CD218b", "IL-18RAP"),
    "CXCR3": ("CD183", "CXCR3"),
    "CCR2": ("CD192", "CCR2"),
    "CD44": ("CD44",),
    "TGFB1": ("TGF-beta1", "TGFb1", "TGF-β1", "TGFB"),
    "SPP1": ("Osteopontin", "OPN"),
}

SOURCE, TARGET = "source", "target"


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).upper() if ch not in "-_ .")


# --------------------------------------------------------------------------- resources
def liana_resource_file() -> Path:
    """Path of liana's shipped ``omni_resource.csv`` (found without importing liana).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ImportError
        liana is not installed, or its resource file is missing.
    """
    spec = importlib.util.find_spec("liana")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("ligand-receptor resources need the 'liana' package: pip install 'napari-carspatial[omics]'")
    f = Path(next(iter(spec.submodule_search_locations))) / "resource" / "omni_resource.csv"
    if not f.is_file():
        raise ImportError(f"liana is installed but its resource file is missing ({f})")
    return f


@lru_cache(maxsize=8)
def _omni() -> pd.DataFrame:
    return pd.read_csv(liana_resource_file(), usecols=["source_genesymbol", "target_genesymbol", "resource"])


def ligand_receptor_pairs(resource: str = "consensus") -> pd.DataFrame:
    """``ligand``, ``receptor`` pairs of one liana resource (as ``liana.resource.select_resource``).

    Parameters
    ----------
    resource
        One of liana's names (``"consensus"``, ``"cellphonedb"``, ``"cellchatdb"``,
        ``"mouseconsensus"``, ...).

    Returns
    -------
    pandas.DataFrame
        ``ligand``, ``receptor``; complex members joined by ``"_"``.

    Raises
    ------
    KeyError
        Unknown resource (lists the known ones).
    """
    df = _omni()
    names = sorted(df["resource"].unique())
    if resource not in names:
        raise KeyError(f"liana has no resource {resource!r}; resources: {', '.join(names)}")
    sub = df[df["resource"] == resource]
    return pd.DataFrame({"ligand": sub["source_genesymbol"].to_numpy(), "receptor": sub["target_genesymbol"].to_numpy()}
                        ).drop_duplicates().reset_index(drop=True)


def cart_pairs() -> pd.DataFrame:
    """The CAR T preset with the liana resources that list each pair.

    Returns
    -------
    pandas.DataFrame
        ``ligand``, ``receptor``, ``resources`` (comma-separated; empty when none).
    """
    df = _omni()
    rows = []
    for lig, rec in CART_PAIRS:
        subunits = set(rec.split("_"))
        hit = df[(df["source_genesymbol"] == lig) & df["target_genesymbol"].map(
            lambda t, s=subunits: bool(set(str(t).split("_")) & s))]
        rows.append({"ligand": lig, "receptor": rec, "resources": ",".join(sorted(set(hit["resource"])))})
    return pd.DataFrame(rows)


def _as_pairs(pairs) -> pd.DataFrame:
    if isinstance(pairs, str):
        if pairs.lower() in ("cart", "car-t", "car_t"):
            return cart_pairs()[["ligand", "receptor"]]
        if os.path.isfile(pairs):
            df = pd.read_csv(pairs)
        else:
            return ligand_receptor_pairs(pairs)
    elif isinstance(pairs, pd.DataFrame):
        df = pairs
    else:
        return pd.DataFrame(list(pairs), columns=["ligand", "receptor"])
    cols = {c.lower(): c for c in df.columns}
    lc = cols.get("ligand") or cols.get(SOURCE) or cols.get("source_genesymbol")
    rc = cols.get("receptor") or cols.get(TARGET) or cols.get("target_genesymbol")
    if lc is None or rc is None:
        raise KeyError(f"pairs need 'ligand' and 'receptor' (or 'source'/'target') columns; found {list(df.columns)}")
    return pd.DataFrame({"ligand": df[lc].astype(str).to_numpy(), "receptor": df[rc].astype(str).to_numpy()})


def _lookup(var_names: Sequence[str]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for v in var_names:
        lookup.setdefault(_norm(v), v)
    return lookup


def resolve_names(var_names: Sequence[str] | dict, symbol: str, *,
                  aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES) -> str | None:
    """The ``var_names`` entry for a gene symbol.

    Parameters
    ----------
    var_names
        The panel's names, or a prepared lookup (``_lookup``).
    symbol
        A gene symbol.
    aliases
        Protein names per symbol (default :data:`PROTEIN_ALIASES`).

    Returns
    -------
    str or None
        The symbol itself (case-insensitive), else a protein alias (``PD-L1`` for ``CD274``);
        ``None`` when the panel has neither.
    """
    lookup = var_names if isinstance(var_names, dict) else _lookup(var_names)
    hit = lookup.get(_norm(symbol))
    if hit is not None:
        return hit
    for a in (aliases or {}).get(symbol.upper(), ()):
        hit = lookup.get(_norm(a))
        if hit is not None:
            return hit
    return None


def resolve_pairs(var_names: Sequence[str], pairs: Any = "cart", *,
                  aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES) -> pd.DataFrame:
    """Map ligand / receptor symbols (complex members too) to the panel's names.

    Parameters
    ----------
    var_names
        The panel's names.
    pairs
        ``"cart"`` (the preset), a liana resource name, a CSV path, a DataFrame (``ligand`` /
        ``receptor`` or ``source`` / ``target`` columns) or ``(ligand, receptor)`` tuples.
    aliases
        Protein names per symbol (default :data:`PROTEIN_ALIASES`).

    Returns
    -------
    pandas.DataFrame
        ``ligand``, ``receptor`` (symbols), ``source``, ``target`` (panel names; complexes joined
        by ``"_"`` over the members present) and ``missing`` (members not in the panel). Pairs
        with no member of the ligand or of the receptor in the panel are dropped.
    """
    df = _as_pairs(pairs)
    lookup = _lookup(var_names)
    rows = []
    for lig, rec in df.itertuples(index=False):
        src, tgt, miss = [], [], []
        for part, out in ((lig, src), (rec, tgt)):
            for sym in str(part).split("_"):
                n = resolve_names(lookup, sym, aliases=aliases)
                (out.append(n) if n is not None else miss.append(sym))
        if src and tgt:
            rows.append({"ligand": lig, "receptor": rec, SOURCE: "_".join(dict.fromkeys(src)),
                         TARGET: "_".join(dict.fromkeys(tgt)), "missing": ",".join(miss)})
    return pd.DataFrame(rows, columns=["ligand", "receptor", SOURCE, TARGET, "missing"])
