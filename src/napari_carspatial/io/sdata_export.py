"""Export a sample as a SpatialData zarr store (napari-spatialdata, spatialdata-plot, squidpy).

Elements written (all in level-0 pixels, each with the transformation to the ``global``
coordinate system in µm: ``Scale(pixel size)``, then ``Translate(origin)`` when the sample
knows where it sits on the slide; ``Identity`` with a warning when the pixel size is unknown):

``images/<name>_image``
    The multiplexed image as a multiscale (the sample's own pyramid factors, written chunk by
    chunk), with channel names. On by default; ``image=False`` leaves it out.
``labels/<name>_labels``
    The segmentation as a multiscale (when the sample has one).
``shapes/<name>_cells``
    Cell circles (centroid, radius from the area) when there is no segmentation, so the table
    still annotates an element.
``points/<name>_transcripts``
    The transcripts (when the sample has them): ``x``, ``y``, ``gene`` (categorical feature
    key), ``cell_id`` (instance key: the mask label), ``quality`` and the platform's extra columns.
``shapes/<name>_rois``
    The ROIs as polygons (holes kept) with ``name``, ``cls`` and ``roi_id`` columns.
``tables/table``
    The table (sparse ``X`` kept), annotating the labels (or the cell circles) with
    ``region``, ``region_key`` and ``instance_key`` as SpatialData requires, carrying everything
    ``write_table`` keeps (curated column, colours, audit trail, ROIs and analysis results in ``uns``).

Needs the ``spatialdata`` package (``pip install 'napari-carspatial[omics]'``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model import SampleError, get_table_link
from ..model.conventions import SPATIAL_KEY

if TYPE_CHECKING:
    from ..model import Sample

log = logging.getLogger(__name__)

#: SpatialData puts the centre of pixel i at i + 0.5 (see io/spatialdata.py)
HALF_PIXEL = 0.5


def _polygon(roi):
    from shapely.geometry import Polygon

    shell = np.asarray(roi.polygon_yx, float)[:, ::-1] + HALF_PIXEL
    holes = [np.asarray(h, float)[:, ::-1] + HALF_PIXEL for h in getattr(roi, "holes_yx", []) or []]
    return Polygon(shell, holes)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name) or "sample"


def _transformations(sample) -> dict:
    from spatialdata.transformations import Identity, Scale, Sequence, Translation

    px = sample.pixel_size_um
    if px is None:
        log.warning("%s: pixel size unknown; the SpatialData 'global' coordinate system is in pixels (Identity)",
                    sample.name)
        return {"global": Identity()}
    scale = Scale([px, px], axes=("y", "x"))
    origin = sample.metadata.get("origin_um")
    if origin is not None:
        return {"global": Sequence([scale, Translation([float(origin[1]), float(origin[0])], axes=("y", "x"))])}
    return {"global": scale}


def _scale_factors(levels) -> list[int]:
    """Integer downsampling factors between consecutive pyramid levels (SpatialData's form)."""
    out = []
    for a, b in zip(levels[:-1], levels[1:], strict=True):
        f = int(round(a.shape[-1] / b.shape[-1]))
        if f < 2:
            break
        out.append(f)
    return out


def _points_frame(points):
    """The transcripts as a lazy dask DataFrame in SpatialData's pixel frame (x, y + 0.5)."""
    import dask.dataframe as dd
    import pandas as pd

    n = len(points)
    step = 2_000_000
    cols = list(points.columns)
    cats = pd.CategoricalDtype(categories=points.genes)
    extra_cats = (points.metadata or {}).get("extra_categories", {}) or {}

    def part(a):
        b = min(a + step, n)
        d = {c: np.asarray(points.columns[c][a:b]) for c in cols}
        d["x"] = d["x"].astype(np.float64) + HALF_PIXEL
        d["y"] = d["y"].astype(np.float64) + HALF_PIXEL
        d["gene"] = pd.Categorical.from_codes(d["gene"].astype(np.int64), dtype=cats)
        for c, names in extra_cats.items():
            if c in d:
                d[c] = pd.Categorical.from_codes(d[c].astype(np.int64), categories=list(names))
        return pd.DataFrame(d)

    starts = list(range(0, max(n, 1), step))
    meta = part(0).iloc[:0]
    return dd.from_map(part, starts, meta=meta)


def export_spatialdata(sample: Sample, path: str | os.PathLike, *, labels: bool = True, image: bool = True,
                       points: bool = True, overwrite: bool = False) -> Path:
    """Write ``sample`` as a SpatialData zarr store (see the module docstring).

    Parameters
    ----------
    sample
        A :class:`~napari_carspatial.model.Sample` with a table.
    path
        Target ``.zarr`` folder.
    labels
        Also write the segmentation.
    image
        Also write the image (multiscale, chunk by chunk).
    points
        Also write the transcripts.
    overwrite
        Replace an existing store (written to a temporary folder first, then swapped).

    Returns
    -------
    pathlib.Path
        The written store.

    Raises
    ------
    SampleError
        No table, the target exists without ``overwrite``, the folder is not writable, or
        ``spatialdata`` is not installed.
    """
    try:
        import geopandas as gpd
        import pandas as pd
        from spatialdata import SpatialData
        from spatialdata.models import (
            Image2DModel,
            Labels2DModel,
            PointsModel,
            ShapesModel,
            TableModel,
        )
    except ImportError as err:
        raise SampleError(f"SpatialData export needs the 'spatialdata' package ({err}).",
                          hint="pip install 'napari-carspatial[omics]'") from err

    from .write import _TMP_TAG

    if sample.table is None:
        raise SampleError(f"sample {sample.name!r} has no cell table to export.")
    target = Path(path)
    if target.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=target, hint="Choose a new name or pass overwrite=True.")
    safe = _safe(sample.name)
    tf = _transformations(sample)
    adata = sample.table.copy()
    link = get_table_link(adata)
    key = link["instance_key"]
    region_key = link["region_key"] or "region"
    elements: dict = {"images": {}, "labels": {}, "shapes": {}, "points": {}}

    if labels and sample.labels:
        region = f"{safe}_labels"
        lv = sample.labels
        elements["labels"][region] = Labels2DModel.parse(lv[0], dims=("y", "x"), transformations=tf,
                                                         scale_factors=_scale_factors(lv) or None)
    else:
        region = f"{safe}_cells"
        xy = np.asarray(adata.obsm[SPATIAL_KEY], float)[:, :2] + HALF_PIXEL
        area = adata.obs["area"].to_numpy(float) if "area" in adata.obs else np.full(adata.n_obs, np.pi * 25.0)
        elements["shapes"][region] = ShapesModel.parse(
            xy, geometry=0, radius=np.sqrt(np.maximum(area, 1.0) / np.pi), transformations=tf,
            index=pd.Index(adata.obs[key].to_numpy(np.int64)))
    if image and sample.image:
        lv = sample.image
        elements["images"][f"{safe}_image"] = Image2DModel.parse(
            lv[0], dims=("c", "y", "x"), c_coords=list(sample.channel_names), transformations=tf,
            scale_factors=_scale_factors(lv) or None)
    if points and sample.points is not None and len(sample.points):
        pdf = _points_frame(sample.points)
        elements["points"][f"{safe}_transcripts"] = PointsModel.parse(
            pdf, coordinates={"x": "x", "y": "y"}, feature_key="gene", instance_key="cell_id", transformations=tf)
    if sample.rois:
        gdf = gpd.GeoDataFrame({"name": [r.name for r in sample.rois], "cls": [r.cls for r in sample.rois],
                                "roi_id": [r.id for r in sample.rois]},
                               geometry=[_polygon(r) for r in sample.rois])
        elements["shapes"][f"{safe}_rois"] = ShapesModel.parse(gdf, transformations=tf)

    from ..model.conventions import UNS_KEY

    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["sample_name"] = sample.name
    if sample.metadata.get("origin_um") is not None:
        meta["origin_um"] = [float(v) for v in sample.metadata["origin_um"]]
    adata.uns[UNS_KEY] = meta
    if sample.points is not None:
        meta["transcripts"] = {"quality_name": sample.points.quality_name or "", "n": len(sample.points),
                               "element": f"{safe}_transcripts" if points else ""}
        adata.uns[UNS_KEY] = meta
    adata.obs[region_key] = pd.Categorical([region] * adata.n_obs)
    adata.obs[key] = adata.obs[key].astype(np.int64)
    adata.uns.pop("spatialdata_attrs", None)
    table = TableModel.parse(adata, region=region, region_key=region_key, instance_key=key)
    sdata = SpatialData(**{k: v for k, v in elements.items() if v}, tables={"table": table})

    tmp = target.with_name(f".{target.name}{_TMP_TAG}{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        sdata.write(tmp)
        if target.exists():
            bak = target.with_name(f".{target.name}.carspatial-bak-{os.getpid()}")
            os.replace(target, bak)
            os.replace(tmp, target)
            shutil.rmtree(bak, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as err:
        raise SampleError(f"cannot write the SpatialData store ({err.strerror or err}).", path=target,
                          hint="Choose a writable folder.") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("SpatialData store written to %s (%s)", target,
             ", ".join(f"{k}: {list(v)}" for k, v in elements.items() if v))
    return target
