"""Blinded working copies: what a reader's copy of a sample's table keeps and drops.

:func:`blind_table` keeps cells, centroids, ``X`` / layers and the start column; it drops earlier
curation state, and with blinding on whatever identifies the sample: clinical columns
(:data:`CLINICAL_COLUMNS`), constant columns, text columns whose values contain the sample,
patient or file names (:func:`_tokens`), the obs names (replaced by cell ids) and every ``uns``
entry but the pixel size, the SpatialData link and colours. Used by :mod:`.reads`.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import edit_log
from ..model.conventions import UNS_KEY, colors_key, get_table_link
from ..model.curation import (
    EXCLUDE_REASON_KEY,
    EXCLUDED_KEY,
    REVIEWED_KEY,
    ROI_CLASS_KEY,
    ROI_KEY,
    ROI_UNS_KEY,
    curated_key_for,
)

#: obs columns dropped from a blinded working copy whatever their content
CLINICAL_COLUMNS = {"sample", "sample_id", "patient", "patient_id", "trial", "indication", "timepoint",
                    "day", "response", "responder", "best_response", "crs", "crs_grade", "icans", "icans_grade",
                    "toxicity", "arm", "outcome", "donor", "subject", "visit", "cohort", "image", "imagename",
                    "maskname", "filename", "file", "roi_name", "acquisition"}



_GENERIC = {"imc", "mask", "masks", "image", "images", "img", "cell", "cells", "table", "ome", "tif", "tiff",
            "h5ad", "csv", "zarr", "labels", "label", "seg", "segmentation", "roi", "whole", "nuclear",
            "nuclei", "full", "crop", "stack", "data", "sample", "pre", "post"}


def _tokens(row: dict) -> list[str]:
    """Strings that identify a sample: its id, patient, file stems and their parts (``E34_imc`` ->
    ``E34_imc``, ``E34``)."""
    out = {str(row.get("sample") or ""), str(row.get("patient") or "")}
    for k in ("image", "mask", "table", "regions"):
        if row.get(k):
            stem = Path(str(row[k])).name.split(".")[0]
            out.add(stem)
            out.update(p for p in re.split(r"[_\-. ]+", stem) if p.lower() not in _GENERIC)
    return sorted(t for t in out if len(t) >= 3)


def _identifying(values: pd.Series, tokens: list[str]) -> bool:
    if not tokens:
        return False
    u = pd.unique(values.dropna().astype(str))
    low = [t.lower() for t in tokens]
    return any(any(t in str(v).lower() for t in low) for v in u[:5000])


def blind_table(adata, *, code: str, start_key: str, tokens=(), blinding: bool = True):
    """A working copy of a source table for one read (a new AnnData; ``adata`` is not changed).

    Keeps cells, centroids, ``X``/layers and the start column; drops earlier curation state
    (curated column, exclusions, ROIs, audit trail). With ``blinding`` also drops what identifies
    the sample (see the module docstring) and renames the SpatialData region to ``<code>_labels``.
    """
    import anndata as ad

    link = get_table_link(adata)
    inst = link["instance_key"]
    region_key = link["region_key"]
    obs = adata.obs.copy()
    keep_always = {inst, start_key}
    drop = {curated_key_for(start_key), EXCLUDED_KEY, EXCLUDE_REASON_KEY, REVIEWED_KEY, ROI_KEY, ROI_CLASS_KEY}
    drop |= {c for c in obs.columns if str(c).endswith(("_read_", "_adjudicated")) or "_read_" in str(c)}
    if blinding:
        for c in obs.columns:
            if c in keep_always or c == region_key:
                continue
            s = obs[c]
            if str(c).lower() in CLINICAL_COLUMNS:
                drop.add(c)
            elif s.nunique(dropna=False) <= 1 and len(s) > 1:
                drop.add(c)  # constant: no per-cell information, often the sample's identity
            elif not pd.api.types.is_numeric_dtype(s) and _identifying(s, list(tokens)):
                drop.add(c)
    obs = obs.drop(columns=[c for c in obs.columns if c in drop and c not in keep_always])
    if blinding:
        obs.index = pd.Index([str(i) for i in np.asarray(obs[inst], dtype=np.int64)])
        obs[region_key] = pd.Categorical([f"{code}_labels"] * len(obs))
    uns = {}
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    if blinding:
        if "pixel_size_um" in meta:
            uns[UNS_KEY] = {"pixel_size_um": meta["pixel_size_um"]}
        uns["spatialdata_attrs"] = {"region": f"{code}_labels", "region_key": region_key, "instance_key": inst}
        for c in obs.columns:
            ck = colors_key(str(c))
            if ck in adata.uns:
                uns[ck] = adata.uns[ck]
    else:
        uns = {k: v for k, v in adata.uns.items() if k not in (ROI_UNS_KEY, edit_log.EDIT_LOG_KEY)}
        meta.pop("curation", None)
        uns[UNS_KEY] = meta
    out = ad.AnnData(X=adata.X.copy() if adata.X is not None else None, obs=obs,
                     var=adata.var.copy(), obsm={k: np.asarray(v).copy() for k, v in adata.obsm.items()},
                     layers={k: v.copy() for k, v in adata.layers.items()}, uns=uns)
    return out
