"""Export a curated sample as a SpatialData zarr store (napari-spatialdata, spatialdata-plot, squidpy).

Elements written (all in level-0 pixel coordinates, ``global`` coordinate system = identity):

``labels/<name>_labels``
    The segmentation (optional, default on when the sample has one).
``images/<name>_image``
    The multiplexed image, level 0 with channel names (optional, off by default: it is big).
``shapes/<name>_rois``
    The ROIs as polygons (holes kept) with ``name``, ``cls`` and ``roi_id`` columns.
``tables/table``
    The curated table, annotating the labels element (``region``, ``region_key``,
    ``instance_key`` as SpatialData requires) and carrying everything ``write_table`` keeps
    (curated column, colours, audit trail, ROIs in ``uns``).

Needs the ``spatialdata`` package (``pip install spatialdata``), imported inside the function.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ..model import SampleError, get_table_link

log = logging.getLogger(__name__)


def _polygon(roi):
    from shapely.geometry import Polygon

    shell = np.asarray(roi.polygon_yx, float)[:, ::-1]
    holes = [np.asarray(h, float)[:, ::-1] for h in getattr(roi, "holes_yx", []) or []]
    return Polygon(shell, holes)


def export_spatialdata(sample, path: str | os.PathLike, *, labels: bool = True, image: bool = False,
                       overwrite: bool = False) -> Path:
    """Write ``sample`` (table, ROIs, optionally labels and image) as a SpatialData zarr store.

    Parameters
    ----------
    sample
        A :class:`~napari_carspatial.model.Sample` with a table.
    path
        Target ``.zarr`` folder.
    labels, image
        Also write the segmentation / the image (level 0; lazily, chunk by chunk).
    overwrite
        Replace an existing store (written to a temporary folder first, then swapped).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    SampleError
        No table, the target exists without ``overwrite``, or the folder is not writable.
    """
    import geopandas as gpd
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel, ShapesModel, TableModel

    from .write import _TMP_TAG

    if sample.table is None:
        raise SampleError(f"sample {sample.name!r} has no cell table to export.")
    target = Path(path)
    if target.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=target, hint="Choose a new name or pass overwrite=True.")
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in sample.name) or "sample"
    labels_name = f"{safe}_labels"
    adata = sample.table.copy()
    link = get_table_link(adata)
    key = link["instance_key"]
    region_key = link["region_key"] or "region"
    import pandas as pd

    adata.obs[region_key] = pd.Categorical([labels_name] * adata.n_obs)
    adata.obs[key] = adata.obs[key].astype(np.int64)
    adata.uns.pop("spatialdata_attrs", None)
    table = TableModel.parse(adata, region=labels_name, region_key=region_key, instance_key=key)

    elements: dict = {"tables": {"table": table}}
    if labels and sample.labels:
        elements["labels"] = {labels_name: Labels2DModel.parse(sample.labels[0], dims=("y", "x"))}
    if image and sample.image:
        elements["images"] = {f"{safe}_image": Image2DModel.parse(sample.image[0], dims=("c", "y", "x"),
                                                                  c_coords=list(sample.channel_names))}
    if sample.rois:
        gdf = gpd.GeoDataFrame({"name": [r.name for r in sample.rois], "cls": [r.cls for r in sample.rois],
                                "roi_id": [r.id for r in sample.rois]},
                               geometry=[_polygon(r) for r in sample.rois])
        elements["shapes"] = {f"{safe}_rois": ShapesModel.parse(gdf)}
    sdata = SpatialData(**elements)

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
    log.info("SpatialData store written to %s (%s)", target, ", ".join(f"{k}: {list(v)}" for k, v in elements.items()))
    return target
