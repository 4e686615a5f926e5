"""A gating scheme kept in the cell table (``uns`` + an ``obs`` column) and in files (JSON/YAML).
Re-exported by :mod:`.gating`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..model import UNS_KEY, SampleError, colors_key
from ..model.atomic import atomic_write_text
from ._gating_model import (
    DEFAULT_KEY,
    FILE_FORMAT,
    UNS_GATING,
    GatingScheme,
    _now,
    _whoami,
)
from ._gating_values import apply_rules

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

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


def store_gating(adata: AnnData, scheme: GatingScheme, *, key: str = DEFAULT_KEY, reviewer: str | None = None,
                 layer: str | None = None) -> pd.Categorical:
    """Apply ``scheme`` and store the result in ``adata`` (in place).

    Writes ``adata.obs[key]`` (categorical phenotype), ``adata.uns[f"{key}_colors"]`` and
    ``adata.uns["carspatial"]["gating"]``: the gates and rules with who applied them (``reviewer``,
    default the OS user), when (ISO 8601) and the key; a compact ``history`` of earlier
    applications is kept. Everything stored is h5ad-serialisable.

    Parameters
    ----------
    adata
        Cell table (mutated).
    scheme
        The gates and rules.
    key
        ``obs`` column of the phenotypes.
    reviewer
        Who applied it (default: the OS user).
    layer
        Marker values from this layer instead of ``X``.

    Returns
    -------
    pandas.Categorical
        The phenotype of every cell.
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


def load_gating(adata: AnnData) -> GatingScheme | None:
    """The gating scheme stored by :func:`store_gating`.

    Parameters
    ----------
    adata
        Cell table.

    Returns
    -------
    GatingScheme or None
        ``None`` when the table holds none.
    """
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
    """Write ``scheme`` to a JSON or YAML file (chosen by suffix), atomically.

    Parameters
    ----------
    scheme
        The gating scheme.
    path
        ``.json``, ``.yaml`` or ``.yml`` file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
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

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    GatingScheme

    Raises
    ------
    SampleError
        Naming the file when it is missing, unreadable or not a gating scheme.
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
