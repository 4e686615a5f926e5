"""SpatialData in: stores read with ``spatialdata.read_zarr``, and any ``SpatialData`` object
(the platform readers' output) turned into :class:`Sample` s with the transformations applied.

One :class:`Sample` per region a table annotates (a labels element, or a shapes element whose
polygons or circles are rasterized into a mask), else per labels element, else per image.
Every element that shares the region's coordinate system is brought onto one pixel grid, the
sample's level 0:

* the grid is the level-0 pixel grid of the sample's image (the image that shares the region's
  most specific coordinate system), of the labels when there is no image, or a grid the caller
  gives (:class:`Grid`; the platform readers use it to read cells at the instrument's resolution);
* images and labels whose transformation to the grid is the identity are used as they are; an
  axis-aligned scale / translation is resampled lazily (nearest neighbour, dask); a rotation or
  shear is refused with a clear message;
* points (transcripts) and shapes go through their affine to the grid;
* pixel centres are at integers in our frame (napari, ``obsm["spatial"]``), at ``+0.5`` in a
  SpatialData element's intrinsic frame: :data:`HALF_PIXEL` is applied in exactly one place
  (:func:`to_grid_affine`).

Tables keep their sparse ``X`` (CSR, genes in ``var``). A table whose instance ids are not
integers (Xenium ``cell_id`` strings) gets an integer ``cell_label`` column (1..n in table
order) that links it to the rasterized mask and to the transcripts' ``cell_id``; the original
ids stay in their column.

Needs the ``spatialdata`` package (``pip install 'napari-carspatial[omics]'``).

The grid and its transformations live in :mod:`._sdata_grid`, shape rasterizing in
:mod:`._sdata_shapes`; their public names are re-exported here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..model import ReaderError, Sample, SampleError
from ..model.conventions import SPATIAL_KEY, UNS_KEY, set_pixel_size_um
from ._sdata_grid import (  # noqa: F401 - re-exported: callers import them from here
    HALF_PIXEL,
    Grid,
    _affine,
    _axis_aligned,
    _image_levels,
    _is_identity,
    _is_tree,
    _labels_levels,
    _levels,
    _raster_to_grid,
    _systems,
    grid_from_raster,
    resample_to_grid,
    to_grid_affine,
)
from ._sdata_shapes import _ShapeRaster, rasterize_shapes  # noqa: F401 - re-exported
from ._util import require_exists, strided_pyramid, wrap_errors

if TYPE_CHECKING:
    from types import ModuleType

    from spatialdata import SpatialData

log = logging.getLogger(__name__)

#: name of the integer label column added to tables with non-integer instance ids
LABEL_COLUMN = "cell_label"
EXTRA_HINT = "Install the optional readers: pip install 'napari-carspatial[omics]' (spatialdata, spatialdata-io)."


def require_spatialdata() -> ModuleType:
    """Import ``spatialdata`` or raise a :class:`ReaderError` naming the extra.

    Returns
    -------
    module
        ``spatialdata``.
    """
    try:
        import spatialdata
    except ImportError as err:
        raise ReaderError(f"reading SpatialData needs the 'spatialdata' package ({err}).", hint=EXTRA_HINT) from err
    return spatialdata


def is_spatialdata(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a SpatialData store.

    Parameters
    ----------
    path
        A folder.

    Returns
    -------
    bool
        A zarr group (v2 ``.zgroup`` or v3 ``zarr.json``) with ``images``, ``labels``, ``points``,
        ``shapes`` or ``tables`` groups.
    """
    p = Path(path)
    if not p.is_dir() or not ((p / ".zgroup").is_file() or (p / "zarr.json").is_file()):
        return False
    return any((p / g).is_dir() for g in ("images", "labels", "points", "shapes", "tables"))


# --------------------------------------------------------------------------- reading
def read_spatialdata(path: str | os.PathLike, *, check_ids: bool = True, pixel_size_um: float | None = None,
                     **kwargs: Any) -> list[Sample]:
    """Read a SpatialData zarr store (``spatialdata.read_zarr``) into validated Samples.

    Parameters
    ----------
    path
        The ``.zarr`` store written by ``SpatialData.write`` (ours, spatialdata-io's, ...).
    check_ids
        Check table ids against the labels.
    pixel_size_um
        µm per level-0 pixel, overriding what the store says.
    **kwargs
        Passed to :func:`samples_from_sdata`.

    Returns
    -------
    list of Sample
        ``name`` = the region (labels / shapes element) or image name.
    """
    root = require_exists(path, "SpatialData store")
    sd = require_spatialdata()
    with wrap_errors(root, "SpatialData store"):
        sdata = sd.read_zarr(root)
    kwargs.setdefault("copy_tables", False)   # this object is ours alone: no copy of a 10^6-row table (1.2 s)
    return samples_from_sdata(sdata, source=root, check_ids=check_ids, pixel_size_um=pixel_size_um, **kwargs)


def _element_type(sdata, name: str) -> str | None:
    for kind in ("images", "labels", "shapes", "points"):
        if name in getattr(sdata, kind):
            return kind
    return None


def _members(sdata, cs: str) -> set[str]:
    out = set()
    for kind in ("images", "labels", "shapes", "points"):
        for n, el in getattr(sdata, kind).items():
            if cs in _systems(el):
                out.add(n)
    return out


def _specific_system(sdata, element, prefer: str | None = None) -> str:
    """The coordinate system of ``element`` with the fewest members (the FOV's own before 'global')."""
    systems = list(_systems(element))
    if not systems:
        raise SampleError("a SpatialData element has no coordinate transformation.")
    if prefer in systems:
        return prefer
    return min(systems, key=lambda cs: (len(_members(sdata, cs)), cs != "global", cs))


def _pick_image(names: list[str], region: str) -> str | None:
    if not names:
        return None
    stem_r = region.rsplit("_", 1)[0]
    for n in names:
        if n.rsplit("_", 1)[0] == stem_r:
            return n
    return sorted(names)[0]


def _integer_ids(values) -> np.ndarray | None:
    s = pd.Series(np.asarray(values))
    v = pd.to_numeric(s, errors="coerce")
    if v.notna().all() and np.array_equal(v.to_numpy(), np.round(v.to_numpy())) and (v > 0).all():
        return v.to_numpy(np.int64)
    return None


def _points_frame_columns(ddf) -> tuple[str | None, str | None]:
    attrs = dict(ddf.attrs.get("spatialdata_attrs", {}) or {})
    return attrs.get("feature_key"), attrs.get("instance_key")


def samples_from_sdata(
    sdata: SpatialData,
    *,
    source: str | os.PathLike | None = None,
    pixel_size_um: float | None = None,
    grids: dict[str, Grid] | None = None,
    regions: list[str] | None = None,
    check_ids: bool = True,
    quality_key: str | None = None,
    quality_name: str | None = None,
    points_extra: dict[str, str] | None = None,
    bin_px: float | None = None,
    name_prefix: str | None = None,
    metadata: dict | None = None,
    copy_tables: bool = True,
) -> list[Sample]:
    """Turn a ``SpatialData`` object into validated Samples (see the module docstring).

    Parameters
    ----------
    sdata
        The SpatialData object.
    source
        Where it came from (store or instrument folder), for messages and ``Sample.paths``.
    pixel_size_um
        µm per level-0 pixel (overrides the table's and the grid's).
    grids
        ``{region: Grid}`` to read a region on a given grid instead of its image's.
    regions
        Only these regions (default: all annotated regions).
    check_ids
        Check table ids against the mask.
    quality_key
        Points column holding the per-molecule quality, and what it is called (``"qv"``).
    quality_name
        Points column holding the per-molecule quality, and what it is called (``"qv"``).
    points_extra
        ``{our_name: points_column}`` further transcript columns to keep.
    bin_px
        Transcript bin size in level-0 pixels (default :data:`~napari_carspatial.io.transcripts.DEFAULT_BIN_PX`).
    name_prefix
        Prefix of the sample names (e.g. the instrument folder name).
    metadata
        Added to every sample's metadata.
    copy_tables
        Give each sample a copy of its table (False: a table annotating one region is used as it
        is, for an object nobody else holds).

    Returns
    -------
    list of Sample
    """
    src = None if source is None else os.fspath(source)
    tables = dict(sdata.tables)
    annotated: list[tuple[str, str | None]] = []  # (region, table name)
    for tname, t in tables.items():
        attrs = dict(t.uns.get("spatialdata_attrs", {}) or {})
        rs = attrs.get("region")
        rs = [rs] if isinstance(rs, str) else list(rs if rs is not None else [])
        for r in rs:
            if _element_type(sdata, r) in ("labels", "shapes"):
                annotated.append((r, tname))
            else:
                log.info("%s: table %r annotates %r, which is neither labels nor shapes; skipped", src, tname, r)
    if not annotated:
        annotated = [(n, None) for n in sdata.labels] or [(n, None) for n in sdata.images]
    if regions is not None:
        annotated = [a for a in annotated if a[0] in regions]
    if not annotated:
        raise ReaderError("the SpatialData object has no image, labels or annotated shapes to read.", path=src)
    out = []
    for region, tname in annotated:
        out.append(_one_sample(sdata, region, tname, src=src, pixel_size_um=pixel_size_um,
                               grid=(grids or {}).get(region), check_ids=check_ids, quality_key=quality_key,
                               quality_name=quality_name, points_extra=points_extra, bin_px=bin_px,
                               name_prefix=name_prefix, metadata=metadata, copy_tables=copy_tables))
    return out


def _one_sample(sdata, region, tname, *, src, pixel_size_um, grid, check_ids, quality_key, quality_name,
                points_extra, bin_px, name_prefix, metadata, copy_tables=True) -> Sample:
    from .transcripts import DEFAULT_BIN_PX, ColumnSpec, build_transcripts, dask_chunks, source_key

    kind = _element_type(sdata, region)
    region_el = getattr(sdata, kind)[region]
    cs = grid.coordinate_system if grid is not None else _specific_system(sdata, region_el)
    members = _members(sdata, cs)
    images = [n for n in sdata.images if n in members] if kind != "images" else [region]
    name = region if not name_prefix else f"{name_prefix}_{region}"
    s = Sample(name=name, paths={"folder": src} if src else {})
    s.metadata.update(metadata or {})
    s.metadata["coordinate_system"] = cs  # SpatialData's; the CosMx reader names the FOV from it
    # ---- the grid
    if grid is None:
        ref = _pick_image(images, region)
        if ref is not None:
            grid = grid_from_raster(sdata.images[ref], cs)
        elif kind == "labels":
            grid = grid_from_raster(region_el, cs)
        else:
            raise SampleError(f"shapes {region!r} have no image in coordinate system {cs!r} to define a pixel grid.",
                              path=src, hint="Pass a grid (napari_carspatial.io.spatialdata.Grid), or add an image.")
    if grid.origin_um is not None:
        s.metadata["origin_um"] = [float(v) for v in grid.origin_um]
    # ---- images: every image on this coordinate system, stacked as channels when on the grid
    chans, names, used = [], [], []
    for iname in sorted(images, key=lambda n: (n != _pick_image(images, region), n)):
        try:
            lv, nm = _image_levels(sdata.images[iname], iname, grid, channel_prefix=len(images) > 1)
        except SampleError as err:
            log.warning("%s: image %r skipped: %s", src, iname, err)
            continue
        if chans and (len(lv) != len(chans[0]) or any(a.shape[-2:] != b.shape[-2:] for a, b in zip(lv, chans[0], strict=False))):
            lv = strided_pyramid(lv[0])
            if len(lv) != len(chans[0]):
                log.warning("%s: image %r has a different pyramid; skipped", src, iname)
                continue
        chans.append(lv)
        names += nm
        used.append(iname)
    if chans:
        import dask.array as da

        dtype = np.result_type(*[lv[0].dtype for lv in chans])
        s.image = [da.concatenate([lv[k].astype(dtype) for lv in chans], axis=0) for k in range(len(chans[0]))]
        s.channel_names = names
        s.paths["image"] = f"{src}::{','.join(used)}" if src else ",".join(used)
    # ---- table
    adata = None
    ids_map = None  # platform instance id -> integer label
    if tname is not None:
        t = sdata.tables[tname]
        attrs = dict(t.uns.get("spatialdata_attrs", {}) or {})
        rkey, ikey = attrs.get("region_key"), attrs.get("instance_key")
        if rkey in t.obs and not isinstance(attrs.get("region"), str):
            adata = t[np.asarray(t.obs[rkey].astype(str) == region)].copy()  # a table over several regions
        else:
            adata = t.copy() if copy_tables else t
        own = UNS_KEY in adata.uns and "pixel_size_um" in (adata.uns.get(UNS_KEY) or {})
        if not own and SPATIAL_KEY in adata.obsm:
            adata.obsm[f"{SPATIAL_KEY}_source"] = np.asarray(adata.obsm[SPATIAL_KEY])
            del adata.obsm[SPATIAL_KEY]  # units unknown: recomputed from the mask in Sample.validate
        ints = _integer_ids(adata.obs[ikey]) if ikey in adata.obs else None
        if ints is None:
            orig = adata.obs[ikey].astype(str).to_numpy()
            labels_ = np.arange(1, adata.n_obs + 1, dtype=np.int64)
            col = LABEL_COLUMN if LABEL_COLUMN not in adata.obs else f"{LABEL_COLUMN}_"
            adata.obs[col] = labels_
            ids_map = pd.Series(labels_, index=pd.Index(orig))
            adata.uns["spatialdata_attrs"] = {**attrs, "region": region, "region_key": rkey or "region",
                                              "instance_key": col, "source_instance_key": ikey}
        else:
            adata.obs[ikey] = ints
            adata.uns["spatialdata_attrs"] = {**attrs, "region": region, "region_key": rkey or "region"}
        if adata.X is not None and hasattr(adata.X, "tocsr") and not isinstance(adata.X, np.ndarray):
            adata.X = adata.X.tocsr()
        own_meta = adata.uns.get(UNS_KEY) or {}
        if own_meta.get("sample_name") and not name_prefix:
            s.name = str(own_meta["sample_name"])  # our own export: the name it had
        if own_meta.get("origin_um") is not None and "origin_um" not in s.metadata:
            s.metadata["origin_um"] = [float(v) for v in own_meta["origin_um"]]
        s.table = adata
        s.paths["table"] = f"{src}::tables/{tname}" if src else f"tables/{tname}"
    # ---- cells: labels as they are, shapes rasterized with the table's ids
    if kind == "labels":
        s.labels = _labels_levels(region_el, region, grid)
        s.paths["mask"] = f"{src}::labels/{region}" if src else f"labels/{region}"
    elif kind == "shapes":
        gdf = region_el
        idx = gdf.index.to_numpy()
        if ids_map is not None:
            lab = pd.Series(idx.astype(str)).map(ids_map).to_numpy()
        else:
            lab = _integer_ids(idx)
            if lab is None:
                lab = np.arange(1, len(gdf) + 1)
        keep = ~pd.isna(lab)
        if adata is not None and (~keep).any():
            log.info("%s: %d shapes of %r have no table row; not drawn", src, int((~keep).sum()), region)
        m = to_grid_affine(gdf, grid)
        if adata is not None and ids_map is None:
            ikey = adata.uns["spatialdata_attrs"]["instance_key"]
            missing = np.setdiff1d(adata.obs[ikey].to_numpy(np.int64), lab[keep].astype(np.int64))
            if missing.size:
                raise SampleError(f"{missing.size} table rows have no shape in {region!r} (e.g. {missing[:5].tolist()}).", path=src)
        s.labels = rasterize_shapes(gdf[keep], np.asarray(lab[keep], dtype=np.int64), m, grid.shape_yx)
        s.paths["mask"] = f"{src}::shapes/{region} (rasterized)" if src else f"shapes/{region} (rasterized)"
    if not s.image and s.labels is None:
        raise SampleError(f"region {region!r} has neither an image nor cells on its grid.", path=src)
    # ---- transcripts: points on the same coordinate system
    pts = [n for n in sdata.points if n in members]
    if pts:
        parts = []
        for pname in pts:
            ddf = sdata.points[pname]
            fkey, pikey = _points_frame_columns(ddf)
            if fkey is None:
                log.info("%s: points %r have no feature_key (gene column); skipped", src, pname)
                continue
            m = to_grid_affine(ddf, grid)
            meta = ((adata.uns.get(UNS_KEY) or {}).get("transcripts") or {}) if adata is not None else {}
            qkey = quality_key or next((c for c in ("quality", "qv") if c in ddf.columns), None)
            qname = quality_name or meta.get("quality_name") or qkey
            if points_extra is None:  # keep every other column (z, compartment, ...)
                core = {"x", "y", fkey, pikey, qkey}
                extra = {str(c): str(c) for c in ddf.columns if c not in core}
            else:
                extra = {k: v for k, v in points_extra.items() if v in ddf.columns}
            cell_map = ids_map
            if cell_map is None and adata is not None and pikey in adata.obs:
                ikey = adata.uns["spatialdata_attrs"]["instance_key"]
                if pikey != ikey:  # e.g. Xenium: transcripts name cells by cell_id, the mask by cell_labels
                    cell_map = pd.Series(adata.obs[ikey].to_numpy(np.int64), index=adata.obs[pikey].astype(str).to_numpy())
            spec = ColumnSpec(x="x", y="y", gene=fkey, cell_id=pikey if pikey in ddf.columns else None,
                              quality=qkey if qkey in ddf.columns else None, affine=m,
                              cell_map=cell_map, extra=extra)
            parts.append((pname, ddf, spec, qname))
        if len(parts) > 1:
            log.info("%s: %d points elements on %r; reading %r", src, len(parts), cs, parts[0][0])
        if parts:
            pname, ddf, spec, qname = parts[0]
            genes = None if adata is None else list(map(str, adata.var_names))  # codes follow the table's genes
            s.points = build_transcripts(
                dask_chunks(ddf, spec.columns()), spec, shape_yx=grid.shape_yx, genes=genes,
                bin_px=bin_px or DEFAULT_BIN_PX, quality_name=qname if spec.quality else None,
                source=src, cache_key=[source_key(src), pname, region],
                metadata={"element": pname, "coordinate_system": cs})
            s.paths["points"] = f"{src}::points/{pname}" if src else f"points/{pname}"
    # ---- pixel size
    px, why = (pixel_size_um, "user") if pixel_size_um is not None else (grid.pixel_size_um, "the platform's grid")
    if px is None and adata is not None:
        px, why = (adata.uns.get(UNS_KEY) or {}).get("pixel_size_um"), "cell table (uns)"
    if px is None and s.image:
        px, why = _scale_to_um(sdata, grid), "SpatialData µm coordinate system"
    s.pixel_size_um = None if px is None else float(px)
    if px is not None:  # a platform reader names its own source in metadata; keep it
        s.metadata.setdefault("pixel_size_source", why)
    if adata is not None and s.points is not None:  # what `carspatial info` shows for RNA samples
        s.metadata["genes"] = int(adata.n_vars)
        s.metadata["transcripts"] = len(s.points)
    if adata is not None:
        set_pixel_size_um(adata, s.pixel_size_um)
    return s.validate(check_ids=check_ids)


def _scale_to_um(sdata, grid: Grid) -> float | None:
    """µm per pixel from a coordinate system whose name says micrometres (``um``, ``micron``, ``µm``...)."""
    for kind in ("images", "labels"):
        for el in getattr(sdata, kind).values():
            for cs in _systems(el):
                low = cs.lower()
                if low in ("um", "µm", "micron", "microns", "micrometer", "micrometre", "micrometers", "physical"):
                    m = np.linalg.inv(grid.affine) if grid.coordinate_system == cs else None
                    if m is not None and _axis_aligned(m) and np.isclose(m[0, 0], m[1, 1]):
                        return float(m[0, 0])
    return None


def sdata_summary(sdata: SpatialData) -> dict[str, Any]:
    """Element names by kind (for logs and ``carspatial info``).

    Parameters
    ----------
    sdata
        A SpatialData object.

    Returns
    -------
    dict
        ``{"images", "labels", "shapes", "points", "tables"}`` -> element names.
    """
    return {k: list(getattr(sdata, k)) for k in ("images", "labels", "shapes", "points", "tables")}
