"""ROIs as GeoJSON in QuPath's flavour (import and export).

QuPath (0.3+) exports annotations as a ``FeatureCollection`` of ``Feature`` objects::

    {"type": "Feature", "id": "<uuid>",
     "geometry": {"type": "Polygon", "coordinates": [[[x, y], ..., [x0, y0]]]},
     "properties": {"objectType": "annotation", "name": "core 1",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]}}}

Coordinates are **level-0 pixels, (x, y)**, rings closed (first vertex repeated). Older QuPath
(0.2) wrote a bare list of features and ``"colorRGB"`` (a packed signed int) instead of
``"color"``; both are read.

Geometry handling (decided here, documented in ``docs/curation.md``):

* ``Polygon``: the exterior ring is the ROI; interior rings (holes) are kept in
  ``roi.holes_yx`` and excluded from membership, and exported back as interior rings.
* ``MultiPolygon``: one ROI per part, named ``name``, ``name (2)``, ... with the same class
  (cells in any part are in "the region" by their shared class).
* Other geometries (points, lines) and detections (``objectType`` ``"detection"``/``"cell"``)
  are skipped with a logged note.

Class names are mapped to :data:`napari_carspatial.model.roi.ROI_CLASSES` (``Tumor`` ->
``Tumor core``, ``Ignore*`` / ``Necrosis`` -> ``Exclude``, ...); unknown classes are kept as
they are, so they round-trip.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from ..model import ROI, ROI_CLASSES, SampleError
from ..model.atomic import atomic_write_text

log = logging.getLogger(__name__)

#: QuPath class name (lower case) -> our ROI class
CLASS_ALIASES = {
    "tumor": "Tumor core", "tumour": "Tumor core", "tumor core": "Tumor core", "tumour core": "Tumor core",
    "core": "Tumor core", "invasive margin": "Invasive margin", "margin": "Invasive margin",
    "tumor margin": "Invasive margin", "stroma": "Stroma", "tls": "TLS",
    "tertiary lymphoid structure": "TLS", "exclude": "Exclude", "ignore*": "Exclude", "ignore": "Exclude",
    "artefact": "Exclude", "artifact": "Exclude", "necrosis": "Exclude", "other": "Other",
}
#: colours written for our classes (RGB 0-255), as QuPath's defaults where they exist
CLASS_RGB = {
    "Tumor core": (200, 0, 0), "Invasive margin": (230, 159, 0), "Stroma": (150, 200, 150),
    "TLS": (50, 100, 200), "Exclude": (80, 80, 80), "Other": (255, 200, 0),
}


def map_class(name: str | None) -> str:
    """Our ROI class for a QuPath class name (unknown names are kept, missing -> ``Other``)."""
    if not name:
        return "Other"
    if name in ROI_CLASSES:
        return name
    return CLASS_ALIASES.get(str(name).strip().lower(), str(name))


def _ring_yx(ring) -> np.ndarray:
    arr = np.asarray(ring, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"a ring must be a list of [x, y] positions, got shape {arr.shape}")
    arr = arr[:, :2]
    if len(arr) > 3 and np.allclose(arr[0], arr[-1]):
        arr = arr[:-1]
    return arr[:, ::-1].copy()


def _ring_xy_closed(yx) -> list:
    xy = np.asarray(yx, float)[:, ::-1]
    xy = np.vstack([xy, xy[:1]])
    return [[round(float(x), 3), round(float(y), 3)] for x, y in xy]


def _features(obj) -> list:
    if isinstance(obj, list):
        return obj
    t = obj.get("type") if isinstance(obj, dict) else None
    if t == "FeatureCollection":
        return list(obj.get("features") or [])
    if t == "Feature":
        return [obj]
    if t in ("Polygon", "MultiPolygon"):
        return [{"type": "Feature", "geometry": obj, "properties": {}}]
    raise ValueError(f"not GeoJSON (type {t!r}); expected a FeatureCollection, a Feature or a list of features")


def rois_from_geojson(obj) -> list[ROI]:
    """ROIs from a parsed GeoJSON object (see the module docstring for the rules)."""
    out: list[ROI] = []
    for k, feat in enumerate(_features(obj)):
        props = feat.get("properties") or {}
        otype = str(props.get("objectType", "annotation")).lower()
        if otype not in ("annotation", "tma_core", ""):
            log.info("GeoJSON feature %d is a %s, not an annotation; skipped", k, otype)
            continue
        geom = feat.get("geometry") or {}
        gtype = geom.get("type")
        cls_obj = props.get("classification") or {}
        cls = map_class(cls_obj.get("name") if isinstance(cls_obj, dict) else str(cls_obj))
        name = props.get("name") or (cls_obj.get("name") if isinstance(cls_obj, dict) else None) or f"region {k + 1}"
        fid = str(feat.get("id") or props.get("id") or uuid.uuid4().hex[:12])
        if gtype == "Polygon":
            polys = [geom["coordinates"]]
        elif gtype == "MultiPolygon":
            polys = list(geom["coordinates"])
        else:
            log.info("GeoJSON feature %d (%s) has a %s geometry, not a polygon; skipped", k, name, gtype)
            continue
        for j, rings in enumerate(polys):
            if not rings:
                continue
            roi = ROI(name=str(name) if j == 0 else f"{name} ({j + 1})", polygon_yx=_ring_yx(rings[0]), cls=cls,
                      id=fid if len(polys) == 1 else f"{fid}-{j + 1}")
            roi.holes_yx = [_ring_yx(h) for h in rings[1:] if len(h) >= 4]
            out.append(roi)
    return out


def rois_to_geojson(rois) -> dict:
    """A QuPath-style ``FeatureCollection`` (level-0 pixel (x, y), closed rings) of ``rois``."""
    feats = []
    for r in rois:
        rings = [_ring_xy_closed(r.polygon_yx)] + [_ring_xy_closed(h) for h in getattr(r, "holes_yx", []) or []]
        rgb = CLASS_RGB.get(r.cls, (255, 200, 0))
        feats.append({
            "type": "Feature",
            "id": str(r.id),
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "name": str(r.name),
                           "classification": {"name": str(r.cls), "color": list(rgb)}},
        })
    return {"type": "FeatureCollection", "features": feats}


def read_geojson(path: str | os.PathLike) -> list[ROI]:
    """Read ROIs from a QuPath GeoJSON file (``.geojson`` / ``.json``).

    Raises
    ------
    SampleError
        The file is missing, not JSON, or not GeoJSON with polygons.
    """
    p = Path(path)
    if not p.is_file():
        raise SampleError("GeoJSON file not found.", path=p)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
        rois = rois_from_geojson(obj)
    except (ValueError, KeyError, TypeError) as err:
        raise SampleError(f"not a readable GeoJSON annotation file ({err}).", path=p,
                          hint="Export annotations from QuPath with File > Export objects as GeoJSON.") from err
    log.info("%s: %d ROI(s) read", p, len(rois))
    return rois


def write_geojson(rois, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ROIs as QuPath GeoJSON (atomic: temporary file in the same folder, then rename)."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=p, hint="Choose a new name or pass overwrite=True.")
    text = json.dumps(rois_to_geojson(rois), indent=1)
    try:
        atomic_write_text(p, text)
    except OSError as err:
        raise SampleError(f"cannot write the GeoJSON file ({err.strerror or err}).", path=p) from err
    return p
