"""steinbock output folders: ``img/``, ``masks*/``, ``intensities*/``, ``regionprops*/``,
``neighbors*/``, ``panel.csv``, ``images.csv`` -> one :class:`Sample` per acquisition."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import ReaderError, Sample, SampleError
from ._util import log, require_exists, stem, wrap_errors
from .image import read_image
from .masks import read_mask
from .tables import table_from_dataframe

PREFERRED_SEGMENTATION = "deepcell"


def is_steinbock(path) -> bool:
    """A folder with ``img/`` plus ``panel.csv`` or a ``masks*/`` folder."""
    p = Path(path)
    return p.is_dir() and (p / "img").is_dir() and ((p / "panel.csv").is_file() or any(p.glob("masks*")))


def segmentations(folder) -> list[str]:
    """Names of the segmentations in a steinbock folder (``masks_deepcell`` -> ``deepcell``; ``masks`` -> ``''``)."""
    return sorted(d.name[len("masks"):].lstrip("_") for d in Path(folder).glob("masks*") if d.is_dir())


def _choose_segmentation(folder: Path, segmentation: str | None) -> str | None:
    segs = segmentations(folder)
    if segmentation is not None:
        if segmentation not in segs:
            raise SampleError(f"no segmentation {segmentation!r} (folder masks_{segmentation}/); found "
                              f"{', '.join(repr(s) for s in segs) or 'none'}.", path=folder)
        return segmentation
    if not segs:
        return None
    if PREFERRED_SEGMENTATION in segs:
        return PREFERRED_SEGMENTATION
    if len(segs) > 1:
        log.warning("%s: several segmentations %s; using %r (choose with segmentation=)", folder, segs, segs[0])
    return segs[0]


def _sub(folder: Path, kind: str, seg: str | None) -> Path | None:
    name = f"{kind}_{seg}" if seg else kind
    d = folder / name
    return d if d.is_dir() else None


def read_steinbock(path: str | os.PathLike, *, segmentation: str | None = None, check_ids: bool = True) -> list[Sample]:
    """Read a steinbock folder: one validated :class:`Sample` per image in ``img/``.

    Parameters
    ----------
    path
        The steinbock project folder.
    segmentation
        Which ``masks_<segmentation>/`` to use (default ``deepcell`` if present, else the only one).
    check_ids
        Check every mask id has exactly one table row (reads each mask once).

    Returns
    -------
    list of Sample
        Channel names from ``panel.csv`` (rows with ``keep == 1``), pixel size from
        ``images.csv`` (``acquisition_width_um / width_px``), table from
        ``intensities_<seg>/`` + ``regionprops_<seg>/`` (instance key ``Object``) and neighbours
        from ``neighbors_<seg>/`` as ``obsp["spatial_connectivities"]`` (CSR) and
        ``obsp["spatial_distances"]`` when distances are given.

    Raises
    ------
    ReaderError
        The folder has no image in ``img/`` or a part cannot be read.
    """
    folder = require_exists(path, "steinbock folder")
    imgs = sorted(list((folder / "img").glob("*.tif")) + list((folder / "img").glob("*.tiff")))
    if not imgs:
        raise ReaderError("the steinbock folder has no images in img/.", path=folder)
    seg = _choose_segmentation(folder, segmentation)
    panel = folder / "panel.csv"
    images_meta = _images_csv(folder)
    out = []
    for img in imgs:
        name = stem(img)
        meta = images_meta.get(img.name, {})
        px = _pixel_size(meta)
        data = read_image(img, panel=panel if panel.is_file() else None, pixel_size_um=px)
        sample = Sample(name=name, image=data.levels, channel_names=data.channel_names,
                        pixel_size_um=data.pixel_size_um, metadata={k: _py(v) for k, v in meta.items()},
                        paths={"folder": os.fspath(folder), "image": os.fspath(img)})
        mdir = _sub(folder, "masks", seg) if seg is not None else None
        if mdir is not None:
            mpath = next((mdir / f"{name}{s}" for s in (".tiff", ".tif") if (mdir / f"{name}{s}").is_file()), None)
            if mpath is None:
                log.warning("%s: no mask for %s in %s", folder, img.name, mdir)
            else:
                sample.labels = read_mask(mpath, check_empty=False)
                sample.paths["mask"] = os.fspath(mpath)
                table, tpath = _table(folder, seg, name, data.channel_names, data.pixel_size_um)
                if table is not None:
                    sample.table = table
                    sample.paths["table"] = tpath
        sample.metadata["segmentation"] = seg
        out.append(sample.validate(check_ids=check_ids))
    return out


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _images_csv(folder: Path) -> dict:
    f = folder / "images.csv"
    if not f.is_file():
        return {}
    with wrap_errors(f, "steinbock images.csv"):
        df = pd.read_csv(f)
    if "image" not in df.columns:
        return {}
    return {r["image"]: {k: v for k, v in r.items() if pd.notna(v)} for r in df.to_dict("records")}


def _pixel_size(meta: dict) -> float | None:
    try:
        w_um, w_px = float(meta["acquisition_width_um"]), float(meta["width_px"])
    except (KeyError, TypeError, ValueError):
        return None
    return w_um / w_px if w_um > 0 and w_px > 0 else None


def _table(folder: Path, seg, name: str, channel_names, px):
    idir, rdir = _sub(folder, "intensities", seg), _sub(folder, "regionprops", seg)
    ipath = idir / f"{name}.csv" if idir else None
    rpath = rdir / f"{name}.csv" if rdir else None
    if ipath is None or not ipath.is_file():
        return None, None
    with wrap_errors(ipath, "steinbock intensities CSV"):
        df = pd.read_csv(ipath)
    if "Object" not in df.columns:
        raise SampleError(f"intensities file has no 'Object' column (columns: {', '.join(df.columns[:8])}).", path=ipath)
    if rpath is not None and rpath.is_file():
        with wrap_errors(rpath, "steinbock regionprops CSV"):
            rp = pd.read_csv(rpath)
        if set(rp["Object"]) != set(df["Object"]):
            raise SampleError(f"regionprops {rpath} and intensities list different objects "
                              f"({len(rp)} vs {len(df)} rows).", path=ipath)
        df = df.merge(rp, on="Object", how="left", suffixes=("", "_regionprops"))
    adata = table_from_dataframe(df, id_column="Object", pixel_size_um=px, channel_names=channel_names, source=ipath)
    ndir = _sub(folder, "neighbors", seg)
    if ndir is not None and (ndir / f"{name}.csv").is_file():
        _add_neighbors(adata, ndir / f"{name}.csv")
    return adata, os.fspath(ipath)


def _add_neighbors(adata, path: Path) -> None:
    """Directed (Object, Neighbor) pairs -> CSR ``obsp`` matrices aligned with the rows."""
    import scipy.sparse as sp

    with wrap_errors(path, "steinbock neighbours CSV"):
        nb = pd.read_csv(path)
    ids = adata.obs["Object"].to_numpy(np.int64)
    order = np.argsort(ids)
    pos = lambda v: order[np.searchsorted(ids, v, sorter=order)]  # noqa: E731
    a, b = nb["Object"].to_numpy(np.int64), nb["Neighbor"].to_numpy(np.int64)
    known = np.isin(a, ids) & np.isin(b, ids)
    if not known.all():
        raise SampleError(f"{int((~known).sum())} neighbour pairs name objects that are not in the table.", path=path)
    n = adata.n_obs
    ia, ib = pos(a), pos(b)
    adata.obsp["spatial_connectivities"] = sp.csr_matrix((np.ones(len(a), np.float32), (ia, ib)), shape=(n, n))
    if "Distance" in nb.columns and nb["Distance"].notna().all() and len(nb):
        adata.obsp["spatial_distances"] = sp.csr_matrix((nb["Distance"].to_numpy(float), (ia, ib)), shape=(n, n))
    adata.uns["spatial_neighbors"] = {"connectivities_key": "spatial_connectivities",
                                      "distances_key": "spatial_distances", "params": {"source": os.fspath(path)}}
