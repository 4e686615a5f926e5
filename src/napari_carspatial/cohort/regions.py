"""Regions for the batch: whole tissue, GeoJSON polygons, or tumour core / margin derived from cells.

Automatic regions (``mode: auto``) use the signed distance to the tumour boundary:

1. The tumour is where tumour cells dominate
   (:func:`napari_carspatial.analysis.cart.tumor_distance`): cells are binned on a ``grid_um``
   grid, the tumour and all-cell counts are Gaussian-smoothed (``smooth_um``) and a square is
   tumour when more than half of the (smoothed) cells there are tumour cells (the ``tumor``
   role: ``Tumor`` and ``Tumor (antigen-neg)`` by default).
2. The signed Euclidean distance to that boundary is computed on the grid (negative inside the
   tumour, µm) and interpolated at every cell (``obs["tumor_distance_signed_um"]``).
3. ``tumor_core``: cells deeper than ``core_depth_um`` inside the tumour (d < -core_depth_um);
   ``margin``: cells within ``margin_um`` of the boundary on either side (|d| <= margin_um);
   ``stroma``: cells farther than ``margin_um`` outside (d > margin_um); ``whole``: every cell.

GeoJSON regions (``mode: geojson``) are the polygons of the sample's QuPath GeoJSON file,
grouped by class, with their polygon areas.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import SampleError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData

log = logging.getLogger(__name__)

#: default parameters of the automatic regions (µm)
AUTO_DEFAULTS = {"core_depth_um": 50.0, "margin_um": 50.0, "grid_um": 10.0, "smooth_um": 15.0}


def auto_regions(adata: AnnData, *, cell_type_key: str, roles: Mapping | None = None,
                 tumor_types: Sequence[str] | None = None, pixel_size_um: float, core_depth_um: float = 50.0,
                 margin_um: float = 50.0, grid_um: float = 10.0, smooth_um: float = 15.0,
                 store: bool = True) -> tuple[dict[str, np.ndarray], Any]:
    """``whole``, ``tumor_core``, ``margin`` and ``stroma`` cell masks from the tumour boundary.

    Parameters
    ----------
    adata
        Cell table with ``obsm["spatial"]`` (level-0 px) and ``obs[cell_type_key]``.
    cell_type_key
        Cell-type column.
    roles
        Role mapping (see :func:`napari_carspatial.analysis.regions.role_masks`); its ``tumor``
        role names the tumour cell types.
    tumor_types
        Overrides the ``tumor`` role.
    pixel_size_um
        µm per pixel.
    core_depth_um, margin_um, grid_um, smooth_um
        See the module docstring.
    store
        Write the signed distance to ``obs["tumor_distance_signed_um"]``.

    Returns
    -------
    regions, distance
        ``{name: (n_obs,) bool}`` and the :class:`~napari_carspatial.analysis.cart.TumorDistance`.
    """
    from ..analysis.cart import tumor_distance
    from ..analysis.regions import role_masks

    roles = dict(roles or {})
    if tumor_types:
        roles["tumor"] = list(tumor_types)
    masks, _ = role_masks(adata, cell_type_key=cell_type_key, roles=roles or None)
    tum = masks["tumor"]
    if not tum.any():
        types = np.unique(adata.obs[cell_type_key].astype(str))
        raise SampleError(f"no tumour cells in obs[{cell_type_key!r}] (types: {', '.join(types[:12])}), so no "
                          "tumour core or margin; set regions.tumor_types (or metric_options.roles.tumor) in the "
                          "config, or use regions: whole")
    dist = tumor_distance(adata, tumor_mask=tum, pixel_size_um=pixel_size_um, grid_um=grid_um, smooth_um=smooth_um)
    d = np.asarray(dist.cell_um, dtype=np.float64)
    if store:
        adata.obs["tumor_distance_signed_um"] = d.astype(np.float32)
    with np.errstate(invalid="ignore"):
        regions = {
            "whole": np.ones(adata.n_obs, bool),
            "tumor_core": d < -core_depth_um,
            "margin": np.abs(d) <= margin_um,
            "stroma": d > margin_um,
        }
    return regions, dist


def geojson_regions(path: str | os.PathLike, adata: AnnData, *, pixel_size_um: float | None,
                    problems: list | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Cell masks and areas of the polygons in a QuPath GeoJSON file, grouped by class.

    A region is named by its class as the file spells it (QuPath classification: ``Margin``
    stays ``Margin``, not the ROI vocabulary's ``Invasive margin``), else by its name; the
    polygons of one class are united. Membership is the curation path's own rule,
    :meth:`ROI.contains <napari_carspatial.model.ROI.contains>` (centroid inside the outer ring
    and outside every hole); the area is that of the union of the class's polygons (holes
    subtracted, overlaps counted once; :mod:`shapely`). Invalid polygons were repaired on reading
    (:func:`~napari_carspatial.io.read_geojson`, with a warning naming the region). A class
    whose features hold no usable polygon (null or empty geometry) is still a region: no cells,
    area 0, so its densities are NaN with a reason instead of silently missing. ``whole``
    (every cell) is always added.

    Parameters
    ----------
    path
        The GeoJSON file (QuPath export; coordinates in level-0 pixels).
    adata
        Cell table with ``obsm["spatial"]`` (level-0 px).
    pixel_size_um
        µm per pixel (areas in mm² need it; ``None``: areas NaN).
    problems
        A list that receives one dict per unusable feature (``feature``, ``name``, ``problem``).

    Returns
    -------
    regions, areas_mm2
        ``{name: (n_obs,) bool}`` and ``{name: area of the union in mm²}`` (needs the pixel size).
    """
    from shapely import union_all
    from shapely.geometry import Polygon

    from ..io.geojson import read_geojson
    from ..model import SPATIAL_KEY

    found: list = [] if problems is None else problems
    rois = read_geojson(path, problems=found, map_classes=False)   # results keep the file's class names
    if not rois and not found:
        raise SampleError("no polygon in the regions file.", path=path)
    yx = np.asarray(adata.obsm[SPATIAL_KEY], dtype=float)[:, 1::-1]
    groups: dict[str, list] = {}
    for roi in rois:
        groups.setdefault(str(roi.cls or roi.name), []).append(roi)
    for f in found:  # regions named in the file that hold no polygon
        groups.setdefault(str(f["cls"] or f["name"]), [])
    regions = {"whole": np.ones(adata.n_obs, bool)}
    areas = {}
    for k, members in groups.items():
        if k == "whole":
            raise SampleError("a region class is named 'whole', which is the whole-sample region.", path=path,
                              hint="Rename that class in QuPath.")
        m = np.zeros(adata.n_obs, bool)
        for roi in members:
            m |= roi.contains(yx)
        regions[k] = m
        if pixel_size_um:
            shapes = [Polygon(r.polygon_yx[:, ::-1], [h[:, ::-1] for h in r.holes_yx]) for r in members]
            area_px = float(union_all(shapes).area) if shapes else 0.0
            areas[k] = area_px * float(pixel_size_um) ** 2 / 1e6
    return regions, areas


def auto_empty_reasons(*, core_depth_um: float = 50.0, margin_um: float = 50.0, **_: Any) -> dict[str, str]:
    """Why an automatic region can hold no cells (for :func:`empty_region_notes`).

    Parameters
    ----------
    core_depth_um, margin_um
        The automatic regions' options.
    **_
        Other region options (ignored).

    Returns
    -------
    dict
        ``{region: reason}`` for ``tumor_core``, ``margin`` and ``stroma``.
    """
    return {
        "tumor_core": f"no cell lies deeper than {core_depth_um:g} µm inside the tumour (the tumour is smaller "
                      "than that, or thin; lower regions.core_depth_um)",
        "margin": f"no cell lies within {margin_um:g} µm of the tumour boundary",
        "stroma": f"no cell lies farther than {margin_um:g} µm outside the tumour (the tumour fills the sample)",
    }


def empty_region_notes(regions: dict, areas: dict | None = None, reasons: dict | None = None) -> dict[str, str]:
    """``{region: reason}`` for regions whose densities and fractions are undefined: no cells, or no area.

    Parameters
    ----------
    regions
        Region name -> cell mask.
    areas
        Region name -> area in mm² (GeoJSON regions), or ``None``.
    reasons
        Why a region may be empty, by name (automatic regions: :func:`auto_empty_reasons`);
        other regions without cells are polygons that hold no cell centroid.

    Returns
    -------
    dict
        The regions without cells or area and why.
    """
    notes = {}
    for k, m in regions.items():
        n = int(np.count_nonzero(m))
        a = (areas or {}).get(k)
        if a is not None and not a > 0:
            notes[k] = "region has no area (empty or degenerate polygon)"
        elif n == 0:
            notes[k] = (reasons or {}).get(k) or ("region holds no cells (its polygon holds no cell centroid: "
                                                  "outside the tissue or the image?)")
    return notes
