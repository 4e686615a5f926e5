"""10x Genomics Xenium output folders through spatialdata-io, with a path for incomplete bundles.

A complete Xenium output folder is read by ``spatialdata_io.xenium``: morphology images,
cells as the raster labels of ``cells.zarr.zip`` linked to the cell-feature matrix, and
transcripts. That reader needs ``experiment.xenium`` (the pixel size and the software version)
and ``cells.zarr.zip`` (the segmentation masks) even when it is asked for neither.

Bundles without them (crops, exports for papers; ``shared/data/real/xenium_crop``) are read
from the files they do have, with the same libraries and the same coordinate conventions as
spatialdata-io (Xenium's "global" frame = morphology pixels, µm / pixel size):

* ``experiment.xenium`` missing: the pixel size is ``pixel_size_um`` or Xenium's documented
  0.2125 µm per morphology pixel (said in the log);
* ``cells.zarr.zip`` missing: the cells are ``cell_boundaries.parquet`` polygons rasterized
  onto the sample's pixel grid (the outlines 10x draws in Xenium Explorer), linked to the
  matrix by ``cell_id``;
* a morphology image that is not at full resolution or not at the slide origin (a crop) is
  placed with ``image_pixel_size_um`` and ``image_origin_um``; without them an image that does
  not overlap the cells is left out, with a message saying how to place it.

The sample's pixel grid is Xenium's morphology pixel grid, cut to the data (its corner in µm is
``Sample.metadata["origin_um"]``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import ReaderError, Sample
from ._util import require_exists, stem, wrap_errors
from .platforms import quiet, require_spatialdata_io

log = logging.getLogger(__name__)

#: Xenium's morphology image pixel (µm), 10x's Xenium Onboard Analysis documentation
XENIUM_PIXEL_SIZE_UM = 0.2125
REQUIRED = ("cell_feature_matrix.h5", "cells.parquet", "transcripts.parquet")
IMAGES = ("morphology_focus.ome.tif", "morphology_mip.ome.tif", "morphology.ome.tif")


def is_xenium(path) -> bool:
    """A folder with Xenium's cell-feature matrix and cells / transcripts tables."""
    p = Path(path)
    if not p.is_dir():
        return False
    has_matrix = (p / "cell_feature_matrix.h5").is_file() or (p / "cell_feature_matrix").is_dir()
    return has_matrix and ((p / "cells.parquet").is_file() or (p / "cells.csv.gz").is_file() or
                           (p / "experiment.xenium").is_file())


def _specs(p: Path) -> dict | None:
    f = p / "experiment.xenium"
    if not f.is_file():
        return None
    with wrap_errors(f, "experiment.xenium"):
        return json.loads(f.read_text())


def read_xenium(
    path: str | os.PathLike,
    *,
    pixel_size_um: float | None = None,
    image_pixel_size_um: float | None = None,
    image_origin_um: tuple[float, float] | None = None,
    transcripts: bool = True,
    check_ids: bool = True,
    bin_px: float | None = None,
    name: str | None = None,
) -> Sample:
    """Read a Xenium output folder into one validated :class:`Sample`.

    Parameters
    ----------
    path
        The Xenium output folder (``outs/``).
    pixel_size_um
        µm per morphology pixel (default: ``experiment.xenium``, else 0.2125).
    image_pixel_size_um
        µm per morphology image pixel, when the image is not the full-resolution image.
    image_origin_um
        The (x, y) µm of the image's top-left corner, when it is not at the slide origin.
    transcripts
        Read ``transcripts.parquet`` into ``Sample.points``.
    check_ids
        Check the table against the mask.
    bin_px
        Transcript bin size (level-0 pixels).
    name
        Sample name (default: the folder name).

    Returns
    -------
    Sample
        Channels = the morphology images, cells = labels, table = the cell-feature matrix
        (sparse CSR, genes in ``var``), points = transcripts (``quality`` = ``qv``).

    Raises
    ------
    ReaderError
        A required file of the bundle is missing or cannot be read.
    """
    p = require_exists(path, "Xenium folder")
    missing = [f for f in REQUIRED if not (p / f).is_file()]
    if missing:
        raise ReaderError(f"this Xenium folder lacks {', '.join(missing)}.", path=p,
                          hint="Copy the whole Xenium output folder (outs/).")
    specs = _specs(p)
    px = pixel_size_um if pixel_size_um is not None else (specs or {}).get("pixel_size")
    if px is None:
        px = XENIUM_PIXEL_SIZE_UM
        log.warning("%s: experiment.xenium is missing; using Xenium's morphology pixel size %.4g µm "
                    "(pass pixel_size_um= to use another)", p, px)
    complete = specs is not None and (p / "cells.zarr.zip").is_file()
    name = name or stem(p)
    if complete and image_pixel_size_um is None and image_origin_um is None:
        return _read_complete(p, px=float(px), transcripts=transcripts, check_ids=check_ids, bin_px=bin_px, name=name)
    if not (p / "cells.zarr.zip").is_file():
        log.warning("%s: cells.zarr.zip (the segmentation masks) is missing; cells are drawn from "
                    "cell_boundaries.parquet", p)
    return _read_parts(p, px=float(px), image_px=image_pixel_size_um, image_origin=image_origin_um,
                       transcripts=transcripts, check_ids=check_ids, bin_px=bin_px, name=name)


def _read_complete(p: Path, *, px, transcripts, check_ids, bin_px, name) -> Sample:
    from .spatialdata import samples_from_sdata

    sdio = require_spatialdata_io()
    with wrap_errors(p, "Xenium folder (spatialdata-io)"), quiet():
        sdata = sdio.xenium(p, cells_boundaries=False, nucleus_boundaries=False, cells_as_circles=False,
                            cells_labels=True, nucleus_labels=False, transcripts=transcripts,
                            aligned_images=False, cells_table=True, gex_only=False)
    (s,) = samples_from_sdata(sdata, source=p, pixel_size_um=px, regions=["cell_labels"], check_ids=check_ids,
                              quality_key="qv", quality_name="qv", bin_px=bin_px,
                              points_extra={"z": "z_location", "overlaps_nucleus": "overlaps_nucleus"},
                              metadata={"platform": "Xenium", "reader": "spatialdata-io"})
    s.name = name
    return s


def _boundaries(f: Path):
    import geopandas as gpd
    import shapely

    df = pd.read_parquet(f, columns=["cell_id", "vertex_x", "vertex_y"])
    ids = df["cell_id"]
    if len(ids) and isinstance(ids.iloc[0], bytes):
        ids = ids.str.decode("utf-8")
    ids = ids.astype(str).to_numpy()
    change = np.r_[True, ids[1:] != ids[:-1]]
    starts = np.flatnonzero(change)
    if len(starts) != len(pd.unique(ids)):
        raise ReaderError("the rows of one cell's outline are not contiguous.", path=f)
    offsets = np.r_[starts, len(ids)]
    coords = np.ascontiguousarray(df[["vertex_x", "vertex_y"]].to_numpy(np.float64))
    geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                      offsets=(offsets, np.arange(len(starts) + 1)))
    return gpd.GeoDataFrame({"geometry": geoms}, index=pd.Index(ids[starts], name="cell_id"))


def _read_parts(p: Path, *, px, image_px, image_origin, transcripts, check_ids, bin_px, name) -> Sample:
    import dask.dataframe as dd
    import scanpy as sc
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, PointsModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale, Sequence, Translation

    from .spatialdata import Grid, samples_from_sdata
    from .tiff import read_tiff

    require_spatialdata_io()  # the same extra as the complete path, so the message is the same
    to_px = Scale([1.0 / px, 1.0 / px], axes=("x", "y"))
    with wrap_errors(p / "cell_feature_matrix.h5", "Xenium cell-feature matrix"):
        adata = sc.read_10x_h5(p / "cell_feature_matrix.h5", gex_only=False)
    with wrap_errors(p / "cells.parquet", "Xenium cells table"):
        cells = pd.read_parquet(p / "cells.parquet")
    cid = cells["cell_id"]
    if len(cid) and isinstance(cid.iloc[0], bytes):
        cid = cid.str.decode("utf-8")
    cells["cell_id"] = cid.astype(str)
    if not np.array_equal(cells["cell_id"].to_numpy(), adata.obs_names.to_numpy()):
        cells = cells.set_index("cell_id", drop=False).reindex(adata.obs_names)
        if cells["cell_id"].isna().any():
            raise ReaderError(f"{int(cells['cell_id'].isna().sum())} cells of the matrix are not in cells.parquet.", path=p)
    cells.index = adata.obs_names
    adata.obsm["spatial_um"] = cells[["x_centroid", "y_centroid"]].to_numpy(np.float64)
    adata.obs = cells.drop(columns=["x_centroid", "y_centroid"])
    adata.obs["region"] = pd.Categorical(["cell_boundaries"] * adata.n_obs)
    table = TableModel.parse(adata, region="cell_boundaries", region_key="region", instance_key="cell_id")
    bfile = p / "cell_boundaries.parquet"
    if not bfile.is_file():
        raise ReaderError("this Xenium folder has neither cells.zarr.zip nor cell_boundaries.parquet: no cell outlines.",
                          path=p, hint="Copy cell_boundaries.parquet (or cells.zarr.zip) from the Xenium output.")
    with wrap_errors(bfile, "Xenium cell boundaries"):
        shapes = ShapesModel.parse(_boundaries(bfile), transformations={"global": to_px})
    elements = {"tables": {"table": table}, "shapes": {"cell_boundaries": shapes}}
    if transcripts:
        tfile = p / "transcripts.parquet"
        with wrap_errors(tfile, "Xenium transcripts"):
            ddf = dd.read_parquet(tfile)
            sample_v = ddf["feature_name"].head(1)
            if len(sample_v) and isinstance(sample_v.iloc[0], bytes):
                ddf["feature_name"] = ddf["feature_name"].map_partitions(lambda s: s.str.decode("utf-8"))
            genes = sorted(map(str, ddf["feature_name"].astype(str).unique().compute()))
            ddf["feature_name"] = ddf["feature_name"].astype(str).astype(pd.CategoricalDtype(genes))
            pts = PointsModel.parse(ddf, coordinates={"x": "x_location", "y": "y_location"},
                                    feature_key="feature_name", instance_key="cell_id",
                                    transformations={"global": to_px})
        elements["points"] = {"transcripts": pts}
    # data extent in morphology pixels (Xenium's global frame)
    b = shapes.total_bounds / px
    lo = np.floor(b[:2]).astype(int)
    hi = np.ceil(b[2:]).astype(int)
    if transcripts:
        import pyarrow.parquet as pq

        stats = pq.ParquetFile(p / "transcripts.parquet").metadata
        xs, ys = _column_range(stats, "x_location"), _column_range(stats, "y_location")
        if xs is not None and ys is not None:
            lo = np.minimum(lo, np.floor(np.array([xs[0], ys[0]]) / px).astype(int))
            hi = np.maximum(hi, np.ceil(np.array([xs[1], ys[1]]) / px).astype(int))
    images = {}
    for fname in IMAGES:
        f = p / fname
        if not f.is_file():
            continue
        data = read_tiff(f)
        arr = data.levels[0]
        h, w = arr.shape[-2:]
        if image_px is not None or image_origin is not None:
            ip = float(image_px if image_px is not None else px)
            ox, oy = (float(v) for v in (image_origin if image_origin is not None else (0.0, 0.0)))
            t = Sequence([Scale([ip / px, ip / px], axes=("x", "y")), Translation([ox / px, oy / px], axes=("x", "y"))])
        else:
            t = Identity()
            overlap = not (w <= lo[0] or h <= lo[1])
            if not overlap:
                log.warning(
                    "%s: %s (%d x %d px) covers 0-%.0f x 0-%.0f µm at %.4g µm/px, but the cells lie at %.0f-%.0f x "
                    "%.0f-%.0f µm: it is a crop or a reduced-resolution image, so it is left out. Place it with "
                    "image_pixel_size_um= and image_origin_um= (µm per image pixel; µm of its top-left corner).",
                    p, fname, w, h, w * px, h * px, px, lo[0] * px, hi[0] * px, lo[1] * px, hi[1] * px)
                continue
        k = int(max(0, np.ceil(np.log2(max(h, w) / 2048)))) if max(h, w) > 2048 else 0
        images[fname.split(".")[0]] = Image2DModel.parse(arr, dims=("c", "y", "x"), transformations={"global": t},
                                                         scale_factors=[2] * k or None)
        corners = np.array([[0, 0, 1], [w, h, 1]], float) @ t.to_affine_matrix(("x", "y"), ("x", "y")).T
        lo = np.minimum(lo, np.floor(corners[:, :2].min(axis=0)).astype(int))
        hi = np.maximum(hi, np.ceil(corners[:, :2].max(axis=0)).astype(int))
    if images:
        elements["images"] = images
    with quiet():
        sdata = SpatialData(**elements)
    affine = np.eye(3)
    affine[:2, 2] = -lo
    grid = Grid(coordinate_system="global", affine=affine, shape_yx=(int(hi[1] - lo[1]), int(hi[0] - lo[0])),
                pixel_size_um=px, origin_um=(float(lo[0] * px), float(lo[1] * px)))
    (s,) = samples_from_sdata(sdata, source=p, pixel_size_um=px, grids={"cell_boundaries": grid},
                              regions=["cell_boundaries"], check_ids=check_ids, quality_key="qv", quality_name="qv",
                              bin_px=bin_px, points_extra={"z": "z_location", "overlaps_nucleus": "overlaps_nucleus"},
                              metadata={"platform": "Xenium", "reader": "carspatial (bundle without "
                                        + " and ".join(f for f in ("experiment.xenium", "cells.zarr.zip")
                                                       if not (p / f).is_file()) + ")"})
    s.name = name
    return s


def _column_range(md, column: str) -> tuple[float, float] | None:
    """(min, max) of a parquet column from the row-group statistics (no data read)."""
    lo, hi = np.inf, -np.inf
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        for j in range(rg.num_columns):
            c = rg.column(j)
            if c.path_in_schema == column:
                st = c.statistics
                if st is None or not st.has_min_max:
                    return None
                lo, hi = min(lo, float(st.min)), max(hi, float(st.max))
    return None if not np.isfinite(lo) else (lo, hi)
