"""NanoString / Bruker CosMx SMI flat files through ``spatialdata_io.cosmx``, one Sample per FOV.

spatialdata-io's reader needs ``<id>_exprMat_file.csv``, ``<id>_metadata_file.csv``,
``<id>_tx_file.csv``, ``<id>_fov_positions_file.csv`` and the ``CellComposite/`` and
``CellLabels/`` image folders. Exports often lack some (``shared/data/real/cosmx_crop`` has only
the three tables and the polygons). What is missing is supplied without touching the bundle, in a
folder of links under the cache (``$CARSPATIAL_CACHE_DIR/cosmx/``):

* ``*_fov_positions_file.csv``: derived as NanoString defines it (a FOV's global position =
  global minus local centroid, constant within a FOV; checked);
* ``CellComposite/`` missing: no morphology image (the sample has cells and transcripts only);
* ``CellLabels/`` missing: the cells are the ``*-polygons.csv`` outlines (FOV-local pixels)
  rasterized per FOV; without polygons either, there is nothing to draw the cells from and the
  reader says so.

Each FOV is one sample in FOV-local pixels (spatialdata-io's per-FOV coordinate system; cell ids
are unique within a FOV only, so the FOV is the natural sample). ``cell_ID`` 0 (molecules outside
cells) is not a cell: its row of the expression matrix is not in the table, its transcripts keep
``cell_id`` 0. The pixel size is not in these files (it depends on the instrument generation):
pass ``pixel_size_um`` (0.12028 µm for current instruments, 0.18 µm for the first generation);
without it distances stay in pixels and the log says so.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import ReaderError, Sample
from ._util import require_exists, wrap_errors
from .platforms import quiet, require_spatialdata_io

log = logging.getLogger(__name__)

COUNTS, META, TX, FOV = "exprMat_file.csv", "metadata_file.csv", "tx_file.csv", "fov_positions_file.csv"


def _dataset_id(p: Path) -> str:
    files = sorted(p.glob(f"*_{COUNTS}"))
    if len(files) != 1:
        raise ReaderError(f"expected one *_{COUNTS} in the CosMx folder, found {len(files)}.", path=p)
    return files[0].name[: -len(f"_{COUNTS}")]


def derive_fov_positions(metadata: pd.DataFrame, *, source=None) -> pd.DataFrame:
    """``fov, x_global_px, y_global_px`` of every FOV from the cells' global and local centroids."""
    need = {"fov", "CenterX_global_px", "CenterY_global_px", "CenterX_local_px", "CenterY_local_px"}
    if not need <= set(metadata.columns):
        raise ReaderError(f"cannot derive the FOV positions: the metadata lacks {sorted(need - set(metadata.columns))}.",
                          path=source)
    d = pd.DataFrame({"fov": metadata["fov"],
                      "x_global_px": metadata["CenterX_global_px"] - metadata["CenterX_local_px"],
                      "y_global_px": metadata["CenterY_global_px"] - metadata["CenterY_local_px"]})
    g = d.groupby("fov")
    spread = (g.max() - g.min()).abs().to_numpy().max(initial=0.0)
    if spread > 1e-3:
        raise ReaderError(f"global minus local cell centroids differ within a FOV by {spread:.3g} px; the FOV "
                          "positions cannot be derived.", path=source, hint=f"Supply the *_{FOV} export.")
    return g.mean().reset_index()


def _shadow(p: Path, did: str, missing: list[str], meta: pd.DataFrame) -> Path:
    key = hashlib.sha1(f"{p.resolve()}|{sorted(missing)}".encode()).hexdigest()[:16]
    from .transcripts import cache_root

    root = cache_root().parent / "cosmx" / key
    root.mkdir(parents=True, exist_ok=True)
    for f in p.iterdir():
        link = root / f.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(f.resolve())
    fov = root / f"{did}_{FOV}"
    if f"{did}_{FOV}" in missing:
        tmp = fov.with_suffix(".tmp")
        derive_fov_positions(meta, source=p).to_csv(tmp, index=False)
        os.replace(tmp, fov)
    for d in ("CellComposite", "CellLabels"):
        if d in missing:
            (root / d).mkdir(exist_ok=True)
    return root


def read_cosmx(path: str | os.PathLike, *, pixel_size_um: float | None = None, transcripts: bool = True,
               fovs: list[int] | None = None, check_ids: bool = True, bin_px: float | None = None) -> list[Sample]:
    """Read a CosMx flat-file export into one validated :class:`Sample` per FOV.

    Parameters
    ----------
    path
        The folder with ``<id>_exprMat_file.csv``, ``<id>_metadata_file.csv``, ... .
    pixel_size_um
        µm per pixel (not in the files).
    transcripts
        Read ``<id>_tx_file.csv`` into ``Sample.points`` (``quality`` is NaN: CosMx flat files
        carry no per-molecule quality; ``compartment`` = ``CellComp``, ``z`` = the z plane).
    fovs
        Only these FOVs.
    check_ids
        Check the table against the mask.
    bin_px
        Transcript bin size (level-0 pixels).

    Returns
    -------
    list of Sample
        One validated sample per FOV.

    Raises
    ------
    ReaderError
        A required file of the export is missing, or the cell masks / polygons cannot be read.
    """
    import geopandas as gpd
    import shapely
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    from .spatialdata import Grid, samples_from_sdata

    p = require_exists(path, "CosMx folder")
    did = _dataset_id(p)
    for f in (META, *((TX,) if transcripts else ())):
        if not (p / f"{did}_{f}").is_file():
            raise ReaderError(f"this CosMx folder lacks {did}_{f}.", path=p, hint="Copy the whole flat-file export.")
    with wrap_errors(p / f"{did}_{META}", "CosMx metadata"):
        meta = pd.read_csv(p / f"{did}_{META}")
    missing = [n for n in (f"{did}_{FOV}", "CellComposite", "CellLabels") if not (p / n).exists()]
    polys_file = next(iter(sorted(p.glob("*-polygons.csv"))), None)
    if "CellLabels" in missing and polys_file is None:
        raise ReaderError("this CosMx folder has neither CellLabels/ (cell masks) nor *-polygons.csv (cell outlines): "
                          "the cells cannot be drawn.", path=p, hint="Copy CellLabels/ or the polygons file from the export.")
    for n in missing:
        why = {f"{did}_{FOV}": "derived from the cells' global minus local centroids",
               "CellComposite": "no morphology image", "CellLabels": f"cells drawn from {polys_file.name if polys_file else ''}"}[n]
        log.warning("%s: %s is missing; %s", p, n, why)
    root = _shadow(p, did, missing, meta) if missing else p
    sdio = require_spatialdata_io()
    with wrap_errors(p, "CosMx folder (spatialdata-io)"), quiet():
        sdata = sdio.cosmx(root, dataset_id=did, transcripts=transcripts)
    table = sdata.tables["table"]
    fov_list = sorted(table.obs["fov"].astype(int).unique().tolist())
    if fovs is not None:
        fov_list = [f for f in fov_list if f in set(fovs)]
    grids: dict[str, Grid] = {}
    if "CellLabels" in missing:
        with wrap_errors(polys_file, "CosMx polygons"):
            poly = pd.read_csv(polys_file)
        id_col = "cellID" if "cellID" in poly.columns else "cell_ID"
        regions = []
        obs_region = table.obs["fov"].astype(str) + "_cells"
        for fov in fov_list:
            sub = poly[poly["fov"] == fov]
            if sub.empty:
                continue
            ids = sub[id_col].to_numpy()
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            if len(starts) != len(np.unique(ids)):
                raise ReaderError(f"the polygon vertices of a cell of FOV {fov} are not contiguous.", path=polys_file)
            coords = np.ascontiguousarray(sub[["x_local_px", "y_local_px"]].to_numpy(np.float64))  # the transcripts' frame
            geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                              offsets=(np.r_[starts, len(ids)], np.arange(len(starts) + 1)))
            gdf = gpd.GeoDataFrame({"geometry": geoms}, index=pd.Index(ids[starts].astype(np.int64), name="cell_ID"))
            name = f"{fov}_cells"
            sdata.shapes[name] = ShapesModel.parse(gdf, transformations={str(fov): Identity()})
            regions.append(name)
            ext = [sub["x_local_px"].max(), sub["y_local_px"].max()]
            pname = f"{fov}_points"
            if pname in sdata.points:
                pts = sdata.points[pname]
                ext = [max(ext[0], float(pts["x"].max().compute())), max(ext[1], float(pts["y"].max().compute()))]
            grids[name] = Grid(coordinate_system=str(fov), affine=np.eye(3),
                               shape_yx=(int(np.ceil(ext[1])) + 1, int(np.ceil(ext[0])) + 1), pixel_size_um=pixel_size_um)
        t = table.copy()
        t.obs["cells_region"] = pd.Categorical(obs_region)
        t.uns.pop("spatialdata_attrs", None)
        t = t[t.obs["cells_region"].isin(regions)].copy()
        sdata.tables["table"] = TableModel.parse(t, region=regions, region_key="cells_region", instance_key="cell_ID")
        wanted = regions
    else:
        wanted = [f"{f}_labels" for f in fov_list]
    if pixel_size_um is None:
        log.warning("%s: the CosMx files do not give the pixel size; distances stay in pixels. Pass pixel_size_um= "
                    "(0.12028 µm for current instruments, 0.18 µm for the first generation).", p)
    samples = samples_from_sdata(sdata, source=p, pixel_size_um=pixel_size_um, grids=grids, regions=wanted,
                                 check_ids=check_ids, bin_px=bin_px,
                                 points_extra={"compartment": "CellComp", "z": "z_raw"},
                                 name_prefix=did, metadata={"platform": "CosMx", "reader": "spatialdata-io"})
    for s in samples:
        fov = s.metadata.pop("coordinate_system", None)
        s.name = f"{did}_fov{fov}"
        s.metadata["fov"] = fov
        if missing:
            s.metadata["supplied"] = ", ".join(missing)
    return samples
