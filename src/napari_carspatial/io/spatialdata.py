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
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model import ReaderError, Sample, SampleError
from ..model.conventions import SPATIAL_KEY, UNS_KEY, set_pixel_size_um
from ._util import require_exists, strided_pyramid, wrap_errors

log = logging.getLogger(__name__)

#: SpatialData puts the centre of pixel ``i`` at ``i + 0.5`` in an element's intrinsic frame
HALF_PIXEL = 0.5
#: name of the integer label column added to tables with non-integer instance ids
LABEL_COLUMN = "cell_label"
EXTRA_HINT = "Install the optional readers: pip install 'napari-carspatial[omics]' (spatialdata, spatialdata-io)."


def require_spatialdata():
    """Import ``spatialdata`` or raise a :class:`ReaderError` naming the extra."""
    try:
        import spatialdata
    except ImportError as err:
        raise ReaderError(f"reading SpatialData needs the 'spatialdata' package ({err}).", hint=EXTRA_HINT) from err
    return spatialdata


def is_spatialdata(path) -> bool:
    """A zarr group (v2 ``.zgroup`` or v3 ``zarr.json``) with ``images``, ``labels``, ``points``,
    ``shapes`` or ``tables`` groups."""
    p = Path(path)
    if not p.is_dir() or not ((p / ".zgroup").is_file() or (p / "zarr.json").is_file()):
        return False
    return any((p / g).is_dir() for g in ("images", "labels", "points", "shapes", "tables"))


@dataclass
class Grid:
    """The target pixel grid of a sample: coordinate system, affine and size.

    Attributes
    ----------
    coordinate_system
        The SpatialData coordinate system the affine starts from.
    affine
        3 x 3 matrix from ``(x, y, 1)`` in ``coordinate_system`` to the grid's intrinsic
        (SpatialData, pixel-corner) ``(x, y, 1)``.
    shape_yx
        Level-0 size of the grid.
    pixel_size_um
        µm per grid pixel, when known.
    origin_um
        (x, y) in µm of the grid's corner, when known (kept in ``Sample.metadata`` so exports
        can place the sample back on the slide).
    """

    coordinate_system: str
    affine: np.ndarray
    shape_yx: tuple[int, int]
    pixel_size_um: float | None = None
    origin_um: tuple[float, float] | None = None
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- transformations
def _affine(element, cs: str) -> np.ndarray:
    from spatialdata.transformations import get_transformation

    t = get_transformation(element, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=np.float64)


def _systems(element) -> dict:
    from spatialdata.transformations import get_transformation

    return get_transformation(element, get_all=True) or {}


def to_grid_affine(element, grid: Grid) -> np.ndarray:
    """Affine from ``element``'s intrinsic (x, y) to the grid's pixel-centre (x, y) (our level 0)."""
    m = grid.affine @ _affine(element, grid.coordinate_system)
    shift = np.eye(3)
    shift[:2, 2] = -HALF_PIXEL
    return shift @ m


def _raster_to_grid(element, grid: Grid) -> np.ndarray:
    """Affine between intrinsic corner frames (raster element -> grid), no half-pixel shift."""
    return grid.affine @ _affine(element, grid.coordinate_system)


def _is_identity(m: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.allclose(m, np.eye(3), atol=tol))


def _axis_aligned(m: np.ndarray, tol: float = 1e-9) -> bool:
    return abs(m[0, 1]) < tol and abs(m[1, 0]) < tol and m[0, 0] > 0 and m[1, 1] > 0


def resample_to_grid(arr, m: np.ndarray, shape_yx: tuple[int, int], *, what: str, fill=0, chunk: int = 1024):
    """Lazy nearest-neighbour resampling of a (..., Y, X) dask array onto a grid.

    ``m`` maps the array's intrinsic corner frame to the grid's. Only axis-aligned maps (scale
    and translation) are supported; grid pixels that fall outside the source get ``fill``. Each
    output block reads only the source pixels it needs (one task per block).
    """
    import dask.array as da

    if not _axis_aligned(m):
        raise SampleError(f"the {what} is rotated or sheared relative to the sample's pixel grid "
                          f"(affine {np.round(m, 4).tolist()}); only scale and translation are supported.",
                          hint="Transform it to an axis-aligned image first (spatialdata.transform).")
    sx, tx, sy, ty = m[0, 0], m[0, 2], m[1, 1], m[1, 2]
    h, w = (int(s) for s in shape_yx)
    rows = np.floor((np.arange(h) + 0.5 - ty) / sy).astype(np.int64)
    cols = np.floor((np.arange(w) + 0.5 - tx) / sx).astype(np.int64)
    src_h, src_w = arr.shape[-2:]
    lead = tuple(arr.shape[:-2])
    fill_v = np.asarray(fill, dtype=arr.dtype)
    blocks = []
    for y0 in range(0, h, chunk):
        row = []
        for x0 in range(0, w, chunk):
            r = rows[y0:y0 + chunk]
            c = cols[x0:x0 + chunk]
            rv, cv = (r >= 0) & (r < src_h), (c >= 0) & (c < src_w)
            shape = (*lead, r.size, c.size)
            if not rv.any() or not cv.any():
                row.append(da.full(shape, fill_v, dtype=arr.dtype, chunks=shape))
                continue
            r0, r1 = int(r[rv].min()), int(r[rv].max()) + 1
            c0, c1 = int(c[cv].min()), int(c[cv].max()) + 1
            src = arr[..., r0:r1, c0:c1].rechunk(-1)
            lr, lc = np.clip(r - r0, 0, r1 - r0 - 1), np.clip(c - c0, 0, c1 - c0 - 1)

            def take(a, lr=lr, lc=lc, rv=rv, cv=cv):
                out = a[..., lr, :][..., lc]
                if not (rv.all() and cv.all()):
                    out = np.where(rv[:, None] & cv[None, :], out, fill_v)
                return out

            row.append(src.map_blocks(take, chunks=shape, dtype=arr.dtype))
        blocks.append(row)
    return da.block(blocks)


# --------------------------------------------------------------------------- reading
def read_spatialdata(path: str | os.PathLike, *, check_ids: bool = True, pixel_size_um: float | None = None,
                     **kwargs) -> list[Sample]:
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


def grid_from_raster(element, cs: str, *, pixel_size_um: float | None = None) -> Grid:
    """The level-0 grid of an image or labels element."""
    from spatialdata import get_pyramid_levels

    lvl0 = get_pyramid_levels(element, attr="data", n=0) if _is_tree(element) else element.data
    m = _affine(element, cs)
    return Grid(coordinate_system=cs, affine=np.linalg.inv(m), shape_yx=tuple(int(s) for s in lvl0.shape[-2:]),
                pixel_size_um=pixel_size_um)


def _is_tree(element) -> bool:
    return type(element).__name__ == "DataTree"


def _levels(element) -> list:
    from spatialdata import get_pyramid_levels

    if _is_tree(element):
        return list(get_pyramid_levels(element, attr="data"))
    return [element.data]


def _image_levels(element, name: str, grid: Grid, *, channel_prefix: bool) -> tuple[list, list[str]]:
    from spatialdata.models import get_axes_names, get_channel_names

    axes = get_axes_names(element)
    if "z" in axes:
        raise SampleError(f"image {name!r} is 3-D ({axes}); only 2-D images are read.")
    names = [str(c) for c in get_channel_names(element)]
    if all(c.isdigit() for c in names):
        names = [name] if len(names) == 1 else [f"{name}_{c}" for c in names]
    elif channel_prefix:
        names = [f"{name}:{c}" for c in names]
    m = _raster_to_grid(element, grid)
    levels = _levels(element)
    if _is_identity(m) and tuple(levels[0].shape[-2:]) == tuple(grid.shape_yx):
        return levels, names
    lvl0 = resample_to_grid(levels[0], m, grid.shape_yx, what=f"image {name!r}")
    return strided_pyramid(lvl0), names


def _labels_levels(element, name: str, grid: Grid) -> list:
    m = _raster_to_grid(element, grid)
    levels = _levels(element)
    if _is_identity(m) and tuple(levels[0].shape[-2:]) == tuple(grid.shape_yx):
        return levels
    return strided_pyramid(resample_to_grid(levels[0], m, grid.shape_yx, what=f"labels {name!r}"))


class _ShapeRaster:
    """Polygons / circles in grid pixels, drawn block by block (an STR tree finds a block's cells)."""

    def __init__(self, gdf, ids: np.ndarray, m: np.ndarray):
        import shapely

        self.ids = np.asarray(ids, dtype=np.int64)
        geoms = np.asarray(gdf.geometry.values)
        self.radius = gdf["radius"].to_numpy(float) if "radius" in gdf.columns else None
        scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
        aff = [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]]
        from shapely import affinity

        g = np.array([None if x is None else affinity.affine_transform(x, aff) for x in geoms], dtype=object)
        if self.radius is not None:
            self.radius = self.radius * scale
            g = np.array([x if x is None or x.geom_type != "Point" else x.buffer(r, quad_segs=8)
                          for x, r in zip(g, self.radius, strict=True)], dtype=object)
        self.geoms = g
        self.area = np.nan_to_num(shapely.area(g), nan=0.0)
        self.centroids = shapely.get_coordinates(shapely.centroid(g))
        self.tree = shapely.STRtree(g)
        self.dtype = np.uint16 if self.ids.max(initial=0) < 2**16 else np.uint32

    def block(self, y0: int, x0: int, h: int, w: int, factor: float = 1.0) -> np.ndarray:
        """Labels of the block ``[y0, y0 + h) x [x0, x0 + w)`` of the grid downsampled by ``factor``."""
        import shapely
        from skimage.draw import polygon

        out = np.zeros((h, w), dtype=self.dtype)
        f = float(factor)
        box = shapely.box((x0 - 1) * f, (y0 - 1) * f, (x0 + w + 1) * f, (y0 + h + 1) * f)
        idx = self.tree.query(box)
        if idx.size == 0:
            return out
        idx = idx[np.argsort(-self.area[idx], kind="stable")]
        for i in idx:
            g = self.geoms[i]
            if g is None or g.is_empty:
                continue
            for part in getattr(g, "geoms", [g]):
                xy = np.asarray(part.exterior.coords)
                # level-0 pixel coords -> this level's (pixel j at level-0 j * f, as a strided pyramid
                # and napari's multiscale place it), then block-local
                rr, cc = polygon(xy[:, 1] / f - y0, xy[:, 0] / f - x0, shape=(h, w))
                out[rr, cc] = self.ids[i]
        if f == 1.0:  # level 0 keeps every cell: one whose outline holds no pixel centre gets its centroid pixel
            lost = idx[~np.isin(self.ids[idx], np.unique(out))]
            for i in lost:
                r, c = int(round(self.centroids[i, 1])) - y0, int(round(self.centroids[i, 0])) - x0
                if 0 <= r < h and 0 <= c < w:
                    out[r, c] = self.ids[i]
        return out


def rasterize_shapes(gdf, ids: np.ndarray, m: np.ndarray, shape_yx: tuple[int, int], *, chunk: int = 2048,
                     min_size: int = 2048) -> list:
    """Lazy label pyramid of polygons / circles (``radius`` column) with the given ids.

    ``m`` maps the shapes' coordinates to our pixel-centre grid. Each pyramid level is drawn at
    its own resolution block by block (dask), so an overview never draws level 0. Larger cells
    are drawn first, so a small cell overlapping a large one keeps its pixels; at level 0 a cell
    whose outline contains no pixel centre gets the pixel under its centroid, so every id is in
    the mask.
    """
    import dask
    import dask.array as da

    r = _ShapeRaster(gdf, ids, m)
    h, w = (int(s) for s in shape_yx)
    levels, f = [], 1
    while True:
        lh, lw = -(-h // f), -(-w // f)
        rows = []
        for y0 in range(0, lh, chunk):
            row = []
            for x0 in range(0, lw, chunk):
                bh, bw = min(chunk, lh - y0), min(chunk, lw - x0)
                blk = dask.delayed(r.block, pure=True)(y0, x0, bh, bw, float(f))
                row.append(da.from_delayed(blk, shape=(bh, bw), dtype=r.dtype))
            rows.append(row)
        levels.append(da.block(rows))
        if max(lh, lw) <= min_size:
            break
        f *= 2
    return levels


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
    sdata,
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
    quality_key, quality_name
        Points column holding the per-molecule quality, and what it is called (``"qv"``).
    points_extra
        ``{our_name: points_column}`` further transcript columns to keep.
    bin_px
        Transcript bin size in level-0 pixels (default :data:`~napari_carspatial.io.transcripts.DEFAULT_BIN_PX`).
    name_prefix
        Prefix of the sample names (e.g. the instrument folder name).
    metadata
        Added to every sample's metadata.

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
                               name_prefix=name_prefix, metadata=metadata))
    return out


def _one_sample(sdata, region, tname, *, src, pixel_size_um, grid, check_ids, quality_key, quality_name,
                points_extra, bin_px, name_prefix, metadata) -> Sample:
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
            adata = t.copy()
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


def sdata_summary(sdata) -> dict[str, Any]:
    """Element names by kind (for logs and ``carspatial info``)."""
    return {k: list(getattr(sdata, k)) for k in ("images", "labels", "shapes", "points", "tables")}
