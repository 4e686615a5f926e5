"""SpatialData zarr stores (``images/``, ``labels/``, ``tables/``) read with plain zarr + anndata.

The ``spatialdata`` package is not needed. One :class:`Sample` per labels element annotated by a
table (rows split by the table's ``region_key``), else per labels element, else per image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import ReaderError, Sample
from ._util import log, require_exists, wrap_errors
from .masks import read_mask
from .omezarr import read_omezarr
from .tables import normalize_anndata


def is_spatialdata(path) -> bool:
    """A zarr group (v2 ``.zgroup`` or v3 ``zarr.json``) with ``images``, ``labels`` or ``tables`` groups."""
    p = Path(path)
    if not p.is_dir() or not ((p / ".zgroup").is_file() or (p / "zarr.json").is_file()):
        return False
    return any((p / g).is_dir() for g in ("images", "labels", "tables"))


def _children(p: Path) -> list[str]:
    return sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")) if p.is_dir() else []


def _match(name: str, candidates: list[str]) -> str | None:
    """The image that goes with labels ``name``: the only one, one sharing its prefix, else the first."""
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    for c in candidates:
        base = c.rsplit("_", 1)[0]
        if name.startswith(base) or c.startswith(name.rsplit("_", 1)[0]):
            return c
    return candidates[0]


def read_spatialdata(path: str | os.PathLike, *, check_ids: bool = True) -> list[Sample]:
    """Read a SpatialData zarr store into validated Samples.

    Parameters
    ----------
    path
        The ``.zarr`` store written by ``SpatialData.write``.
    check_ids
        Check table ids against the labels.

    Returns
    -------
    list of Sample
        ``name`` = labels element (or image) name; the table keeps its ``spatialdata_attrs``
        (``region`` = the labels element, ``instance_key``, ``region_key``).
    """
    import anndata as ad

    root = require_exists(path, "SpatialData store")
    images, labels, tables = (_children(root / g) for g in ("images", "labels", "tables"))
    if not (images or labels):
        raise ReaderError("the SpatialData store has no images and no labels.", path=root)
    annotated: dict[str, object] = {}
    for t in tables:
        tpath = root / "tables" / t
        with wrap_errors(tpath, "SpatialData table"):
            adata = ad.read_zarr(tpath)
        attrs = dict(adata.uns.get("spatialdata_attrs", {}) or {})
        regions = attrs.get("region")
        regions = [regions] if isinstance(regions, str) else list(regions if regions is not None else [])
        rkey = attrs.get("region_key")
        for r in regions:
            if r not in labels:
                log.info("%s: table %r annotates %r, which is not a labels element; skipped", root, t, r)
                continue
            sub = adata
            if len(regions) > 1 and rkey in adata.obs:
                sub = adata[np.asarray(adata.obs[rkey] == r)].copy()
                sub.uns["spatialdata_attrs"] = {**attrs, "region": r}
            annotated[r] = (normalize_anndata(sub, source=tpath), tpath)
    names = labels or images
    out = []
    for name in names:
        img_name = _match(name, images) if labels else name
        s = Sample(name=name, paths={"folder": os.fspath(root)})
        if img_name is not None:
            data = read_omezarr(root / "images" / img_name)
            s.image, s.channel_names, s.pixel_size_um = data.levels, data.channel_names or [], data.pixel_size_um
            s.paths["image"] = os.fspath(root / "images" / img_name)
        if labels:
            s.labels = read_mask(root / "labels" / name, check_empty=False)
            s.paths["mask"] = os.fspath(root / "labels" / name)
        if name in annotated:
            s.table, tpath = annotated[name]
            s.paths["table"] = os.fspath(tpath)
        out.append(s.validate(check_ids=check_ids))
    return out
