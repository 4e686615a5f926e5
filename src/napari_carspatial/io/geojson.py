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
* Invalid polygons (self-intersecting "bow-ties", holes crossing the shell) are repaired with
  :func:`shapely.make_valid` (a bow-tie becomes its two lobes, one ROI each), with a warning
  naming the file and the region.
* Annotations and TMA cores (``objectType`` ``"annotation"`` / ``"tmaCore"``, QuPath's spelling;
  ``"tma_core"`` is read too) are regions; a core marked ``isMissing`` is skipped with a warning.
  Other geometries (points, lines), null or empty geometries and detections (``objectType``
  ``"detection"``/``"cell"``) give no region: a warning names the file and the feature.
* ``classification`` is ``{"name": ...}``, or for a derived class ``{"names": ["Tumor",
  "Positive"]}``, read as QuPath writes it in its lists, ``"Tumor: Positive"`` (and written back
  as ``names``).

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
from typing import TYPE_CHECKING

import numpy as np

from ..model import ROI, ROI_CLASSES, SampleError
from ..model.atomic import atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Iterable

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


#: QuPath ``objectType`` values read as regions (lower case): annotations and TMA cores
#: (QuPath writes ``"tmaCore"``; ``"tma_core"`` and the v0.2 class names are read too)
REGION_OBJECT_TYPES = ("annotation", "pathannotationobject", "tmacore", "tma_core", "tmacoreobject", "", "unknown")


def _class_name(cls_obj) -> str | None:
    """The class of a QuPath ``classification``: ``{"name": ...}``, or for a derived class
    ``{"names": ["Tumor", "Positive"]}`` -> ``"Tumor: Positive"`` (QuPath's own spelling)."""
    if isinstance(cls_obj, dict):
        names = cls_obj.get("names")
        if isinstance(names, list) and names:
            return ": ".join(str(n) for n in names)
        return cls_obj.get("name")
    return None if cls_obj in (None, "") else str(cls_obj)


def _repair(rings_yx: list[np.ndarray], label: str, source) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Valid polygon parts ``[(exterior_yx, [holes_yx])]`` of one polygon; an invalid one (self-
    intersecting "bow-tie", hole outside the shell) is repaired with :func:`shapely.make_valid`
    and a warning names the region."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    ext, holes = rings_yx[0], rings_yx[1:]
    poly = Polygon(ext[:, ::-1], [h[:, ::-1] for h in holes])
    if poly.is_valid:
        return [(ext, list(holes))]
    reason = shapely.is_valid_reason(poly)
    fixed = shapely.make_valid(poly)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, (Polygon, MultiPolygon))]
    parts = [q for g in parts for q in getattr(g, "geoms", [g]) if q.area > 0]
    log.warning("%s: region %s is not a valid polygon (%s); repaired with shapely make_valid into %d part(s), "
                "%.1f px² in all", source or "GeoJSON", label, reason, len(parts), sum(q.area for q in parts))
    out = []
    for q in parts:
        ex = np.asarray(q.exterior.coords, float)[:-1, ::-1]
        hs = [np.asarray(r.coords, float)[:-1, ::-1] for r in q.interiors]
        out.append((ex, hs))
    return out


def rois_from_geojson(obj: dict | list, *, source: str | os.PathLike | None = None, problems: list | None = None, map_classes: bool = True) -> list[ROI]:
    """ROIs from a parsed GeoJSON object (see the module docstring for the rules).

    Parameters
    ----------
    obj
        Parsed GeoJSON (FeatureCollection, Feature, list of features or a bare Polygon).
    source
        The file, for messages.
    problems
        When given, one dict per feature that gave no region is appended (``feature``, ``name``,
        ``cls``, ``problem``), so callers can report regions that exist in the file but hold
        nothing (e.g. the batch reports them with NaN densities).
    map_classes
        Map the file's class names to :data:`~napari_carspatial.model.roi.ROI_CLASSES`
        (:func:`map_class`); ``False`` keeps them as the file spells them (results named by the
        user's own classes), missing ones ``Other``.

    Returns
    -------
    list of ROI
        One ROI per usable polygon.
    """
    out: list[ROI] = []
    where = source or "GeoJSON"
    for k, feat in enumerate(_features(obj)):
        if not isinstance(feat, dict):
            raise ValueError(f"feature {k + 1} is a {type(feat).__name__}, not a GeoJSON Feature object")
        props = feat.get("properties") or {}
        otype = str(props.get("objectType", props.get("object_type", "annotation"))).lower()
        if otype not in REGION_OBJECT_TYPES:
            log.info("%s: feature %d is a %s, not an annotation or TMA core; skipped", where, k + 1, otype)
            continue
        cls_obj = props.get("classification")
        cls = map_class(_class_name(cls_obj)) if map_classes else str(_class_name(cls_obj) or "Other")
        name = props.get("name") or _class_name(cls_obj) or f"region {k + 1}"
        label = f"feature {k + 1} ({name!r}, class {cls!r})"
        if otype.startswith("tma") and props.get("isMissing"):
            log.warning("%s: TMA core %s is marked missing in QuPath; skipped", where, label)
            continue
        geom = feat.get("geometry")
        gtype = geom.get("type") if isinstance(geom, dict) else None
        fid = str(feat.get("id") or props.get("id") or uuid.uuid4().hex[:12])

        def problem(text, *, k=k, name=name, cls=cls, label=label):
            log.warning("%s: %s %s; skipped", where, label, text)
            if problems is not None:
                problems.append({"feature": k + 1, "name": str(name), "cls": cls, "problem": text})

        if not geom:
            problem("has no geometry (null or empty)")
            continue
        if gtype == "Polygon":
            polys = [geom.get("coordinates") or []]
        elif gtype == "MultiPolygon":
            polys = list(geom.get("coordinates") or [])
        else:
            problem(f"has a {gtype} geometry, not a polygon")
            continue
        polys = [rings for rings in polys if rings]
        if not polys:
            problem(f"has an empty {gtype} (no coordinates)")
            continue
        parts = []
        for rings in polys:
            try:
                yx = [_ring_yx(r) for r in rings if len(r)]
            except (TypeError, ValueError) as err:
                raise ValueError(f"{label}: {err}") from None
            if not np.all(np.isfinite(yx[0])):
                raise ValueError(f"{label}: coordinates are not finite numbers")
            if len(yx[0]) < 3:
                problem(f"has a ring of {len(yx[0])} point(s); a polygon needs at least 3")
                continue
            parts.extend(_repair([yx[0]] + [h for h in yx[1:] if len(h) >= 3], label, source))
        if not parts:
            if polys and problems is not None and not any(p["feature"] == k + 1 for p in problems):
                problem("has no area (a repaired polygon without any area left)")
            continue
        for j, (ext, holes) in enumerate(parts):
            roi = ROI(name=str(name) if j == 0 else f"{name} ({j + 1})", polygon_yx=ext, cls=cls,
                      id=fid if len(parts) == 1 else f"{fid}-{j + 1}")
            roi.holes_yx = holes
            out.append(roi)
    return out


def rois_to_geojson(rois: Iterable[ROI]) -> dict:
    """A QuPath-style ``FeatureCollection`` (level-0 pixel (x, y), closed rings) of ``rois``.

    Parameters
    ----------
    rois
        The regions.

    Returns
    -------
    dict
        A GeoJSON ``FeatureCollection`` (one ``Feature`` per ROI, its class and name in
        ``properties``).
    """
    feats = []
    for r in rois:
        rings = [_ring_xy_closed(r.polygon_yx)] + [_ring_xy_closed(h) for h in getattr(r, "holes_yx", []) or []]
        rgb = CLASS_RGB.get(r.cls, (255, 200, 0))
        parts = [p.strip() for p in str(r.cls).split(": ")]
        klass = {"names": parts} if len(parts) > 1 else {"name": str(r.cls)}
        klass["color"] = list(rgb)
        feats.append({
            "type": "Feature",
            "id": str(r.id),
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "name": str(r.name),
                           "classification": klass},
        })
    return {"type": "FeatureCollection", "features": feats}


def read_geojson(path: str | os.PathLike, *, problems: list | None = None, map_classes: bool = True) -> list[ROI]:
    """Read ROIs from a QuPath GeoJSON file (``.geojson`` / ``.json``).

    Features without a usable polygon (null or empty geometry, points, lines) are skipped with
    a warning naming the file and the feature (and listed in ``problems`` when given); invalid
    polygons are repaired with :func:`shapely.make_valid`, with a warning naming the region.

    Parameters
    ----------
    path
        The GeoJSON file.
    problems
        When given, one dict per feature that gave no region is appended (see
        :func:`rois_from_geojson`).
    map_classes
        Map the file's class names to the ROI classes (see :func:`rois_from_geojson`); ``False``
        keeps the file's own class names.

    Returns
    -------
    list of ROI
        One ROI per usable polygon, in file order.

    Raises
    ------
    SampleError
        The file is missing, not JSON, not GeoJSON, or holds no usable polygon at all.
    """
    p = Path(path)
    if not p.is_file():
        raise SampleError("GeoJSON file not found.", path=p)
    found: list = [] if problems is None else problems
    try:
        text = p.read_text(encoding="utf-8")
        if not text.strip():
            raise SampleError("the GeoJSON file is empty.", path=p)
        obj = json.loads(text)
        rois = rois_from_geojson(obj, source=p, problems=found, map_classes=map_classes)
    except SampleError:
        raise
    except UnicodeDecodeError as err:
        raise SampleError(f"not a text (UTF-8) GeoJSON file ({err.reason} at byte {err.start}).", path=p) from None
    except json.JSONDecodeError as err:
        raise SampleError(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).", path=p,
                          hint="Export annotations from QuPath with File > Export objects as GeoJSON.") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise SampleError(f"not a readable GeoJSON annotation file ({err}).", path=p,
                          hint="Export annotations from QuPath with File > Export objects as GeoJSON.") from None
    if not rois and found:
        raise SampleError(f"no usable polygon: {len(found)} feature(s) skipped ("
                          + "; ".join(f"feature {f['feature']} ({f['name']!r}) {f['problem']}" for f in found[:3])
                          + ("; ..." if len(found) > 3 else "") + ").", path=p)
    log.info("%s: %d ROI(s) read", p, len(rois))
    return rois


def write_geojson(rois: Iterable[ROI], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ROIs as QuPath GeoJSON (atomic: temporary file in the same folder, then rename).

    Parameters
    ----------
    rois
        The regions.
    path
        Target ``.geojson`` file.
    overwrite
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    SampleError
        The file exists (without ``overwrite``) or cannot be written.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise SampleError("already exists; not overwritten.", path=p, hint="Choose a new name or pass overwrite=True.")
    text = json.dumps(rois_to_geojson(rois), indent=1)
    try:
        atomic_write_text(p, text)
    except OSError as err:
        raise SampleError(f"cannot write the GeoJSON file ({err.strerror or err}).", path=p) from err
    return p
