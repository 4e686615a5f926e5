"""Region agreement between two readers: per ROI class, Dice and IoU of the union of one reader's
polygons against the other's (shapely); see :mod:`.agreement` (which re-exports it).

Headless: no napari, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..model import ROI


def _geometry(rois, cls: str):
    from shapely import make_valid
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    polys = []
    for r in rois:
        if str(r.cls) != cls:
            continue
        holes = [np.asarray(h, float) for h in (getattr(r, "holes_yx", None) or []) if len(h) >= 3]
        p = Polygon(np.asarray(r.polygon_yx, float), holes)
        polys.append(p if p.is_valid else make_valid(p))
    return unary_union(polys) if polys else None


@dataclass
class RegionAgreement:
    """Per ROI class agreement of two readers' regions (see :func:`region_agreement`).

    Attributes
    ----------
    per_class
        Index class: ``area_a``, ``area_b``, ``intersection``, ``union`` (level-0 px², µm² in the
        ``*_um2`` columns when the pixel size is known), ``dice``, ``iou``, ``note``.
    reader_a
        Who drew A.
    reader_b
        Who drew B.
    pixel_size_um
        µm per level-0 pixel, or ``None``.
    """

    per_class: pd.DataFrame
    reader_a: str = "a"
    reader_b: str = "b"
    pixel_size_um: float | None = None

    @property
    def disagreeing_classes(self) -> list[str]:
        """Classes where the two readers' regions are not the same (Dice < 1, or drawn by one only)."""
        pc = self.per_class
        return [c for c in pc.index if not (np.isfinite(pc.loc[c, "dice"]) and pc.loc[c, "dice"] >= 1 - 1e-9)
                and (pc.loc[c, "area_a"] > 0 or pc.loc[c, "area_b"] > 0)]


def region_agreement(rois_a: Iterable[ROI], rois_b: Iterable[ROI], *, classes: Sequence[str] | None = None, pixel_size_um: float | None = None,
                     reader_a: str = "a", reader_b: str = "b") -> RegionAgreement:
    """Dice and IoU per ROI class between two readers' regions.

    Parameters
    ----------
    rois_a
        Reader A's regions.
    rois_b
        Reader B's regions. Both are lists of :class:`~napari_carspatial.model.roi.ROI` (level-0 pixel polygons, holes kept).
        Overlapping polygons of one class count once (their union). Self-intersecting polygons
        are repaired with ``shapely.make_valid``.
    classes
        ROI classes to compare (default: every class either reader drew, sorted).
    pixel_size_um
        Adds areas in µm².
    reader_a
        Name of reader A (for the tables).
    reader_b
        Name of reader B (for the tables).

    Returns
    -------
    RegionAgreement
        A class only one reader drew has Dice = IoU = 0; a class in ``classes`` neither drew is
        NaN with a note.
    """
    cls = sorted({str(r.cls) for r in [*rois_a, *rois_b]}) if classes is None else [str(c) for c in classes]
    rows = []
    for c in cls:
        ga, gb = _geometry(rois_a, c), _geometry(rois_b, c)
        aa = float(ga.area) if ga is not None else 0.0
        ab = float(gb.area) if gb is not None else 0.0
        if ga is not None and gb is not None:
            inter = float(ga.intersection(gb).area)
            union = float(ga.union(gb).area)
        else:
            inter, union = 0.0, aa + ab
        note = ""
        if aa + ab == 0:
            dice = iou = np.nan
            note = f"neither reader drew a {c} region"
        else:
            dice = 2 * inter / (aa + ab)
            iou = inter / union if union > 0 else np.nan
            if aa == 0 or ab == 0:
                note = f"only {reader_b if aa == 0 else reader_a} drew a {c} region"
        rows.append({"class": c, "area_a": aa, "area_b": ab, "intersection": inter, "union": union,
                     "dice": dice, "iou": iou, "note": note})
    df = pd.DataFrame(rows, columns=["class", "area_a", "area_b", "intersection", "union", "dice", "iou", "note"])
    df = df.set_index("class")
    if pixel_size_um:
        f = float(pixel_size_um) ** 2
        for k in ("area_a", "area_b", "intersection", "union"):
            df[f"{k}_um2"] = df[k] * f
    return RegionAgreement(per_class=df, reader_a=reader_a, reader_b=reader_b, pixel_size_um=pixel_size_um)
