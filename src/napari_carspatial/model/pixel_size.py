"""Where a sample's pixel size came from, so every output can say it (file tag, OME, user).

:func:`pixel_size_info` returns the pixel size to use and its source:

* ``"user"``: given on the command line (``--pixel-size-um``), in a dock or an API call;
* a tag a reader stored in the sample's ``metadata["pixel_size_source"]`` or the table's
  ``uns["carspatial"]["pixel_size_source"]`` (see :func:`set_pixel_size_source`), used as it is;
* otherwise read back from the sample's files: ``"OME-XML PhysicalSizeX"`` (OME-TIFF),
  ``"TIFF resolution tag"`` (XResolution / ResolutionUnit, or ImageJ's unit), ``"OME-Zarr
  coordinateTransformations"``, ``"steinbock images.csv (acquisition width / width px)"``,
  ``"synthetic demo"``, ``"cell table (uns)"``;
* ``"unknown"`` when there is none: distances are then in pixels and every output says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .conventions import UNS_KEY, pixel_size_um

log = logging.getLogger(__name__)

__all__ = ["PixelSize", "pixel_size_info", "set_pixel_size_source"]


@dataclass(frozen=True)
class PixelSize:
    """A pixel size (µm per level-0 pixel, ``None`` when unknown) and where it came from."""

    value: float | None
    source: str

    def describe(self) -> str:
        if self.value is None:
            return "pixel size unknown: distances in pixels, areas in pixels² (set it with --pixel-size-um)"
        return f"pixel size {self.value:g} µm ({self.source})"

    def to_dict(self) -> dict:
        return {"pixel_size_um": self.value, "pixel_size_source": self.source}


def set_pixel_size_source(target, source: str | None) -> None:
    """Record where the pixel size came from (readers call this; mutates ``target``).

    Parameters
    ----------
    target
        A cell table (AnnData: ``uns["carspatial"]["pixel_size_source"]``) or a
        :class:`~napari_carspatial.model.Sample` (``metadata["pixel_size_source"]``, and its
        table's ``uns`` when it has one).
    source
        Where the pixel size came from (``"OME-XML PhysicalSizeX"``, ``"user"``, ...); ``None``
        leaves ``target`` as it is.
    """
    if not source:
        return
    if hasattr(target, "metadata") and hasattr(target, "table") and not hasattr(target, "uns"):
        target.metadata["pixel_size_source"] = str(source)
        if target.table is not None:
            set_pixel_size_source(target.table, source)
        return
    meta = dict(target.uns.get(UNS_KEY, {}) or {})
    meta["pixel_size_source"] = str(source)
    target.uns[UNS_KEY] = meta


def _close(a, b) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def _tiff_source(path: Path, value: float) -> str | None:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
            if xml and "PhysicalSizeX" in xml:
                return "OME-XML PhysicalSizeX"
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            if page.tags.get(282) is not None:
                return "TIFF resolution tag"
    except Exception as err:  # noqa: BLE001 - the source is a courtesy, never an error
        log.debug("pixel size source of %s not readable: %s", path, err)
    return None


def pixel_size_info(sample=None, *, adata=None, override: float | None = None) -> PixelSize:
    """The pixel size to use and where it came from.

    Parameters
    ----------
    sample
        A :class:`~napari_carspatial.model.Sample` (its pixel size, files and table).
    adata
        A cell table, when there is no sample.
    override
        A pixel size given by the user (wins; source ``"user"``).
    """
    if override is not None:
        v = float(override)
        if not v > 0:
            from .errors import SampleError

            raise SampleError(f"the pixel size must be a positive number of µm, got {override!r}.")
        return PixelSize(v, "user")
    table = adata if adata is not None else getattr(sample, "table", None)
    value = getattr(sample, "pixel_size_um", None)
    if value is None and table is not None:
        value = pixel_size_um(table)
    if value is None:
        return PixelSize(None, "unknown")
    recorded = (getattr(sample, "metadata", None) or {}).get("pixel_size_source")
    if recorded:  # the reader's (or the user's) record wins over a table saved earlier
        return PixelSize(float(value), str(recorded))
    meta = (table.uns.get(UNS_KEY, {}) or {}) if table is not None else {}
    if meta.get("pixel_size_source"):
        return PixelSize(float(value), str(meta["pixel_size_source"]))
    if sample is not None:
        md = getattr(sample, "metadata", {}) or {}
        if md.get("synthetic"):
            return PixelSize(float(value), "synthetic demo")
        if md.get("acquisition_width_um") and md.get("width_px") and _close(
                float(md["acquisition_width_um"]) / float(md["width_px"]), value):
            return PixelSize(float(value), "steinbock images.csv (acquisition width / width px)")
        img = (getattr(sample, "paths", {}) or {}).get("image")
        if img:
            p = Path(img)
            if p.is_dir() or p.suffix.lower() == ".zarr" or p.name.lower().endswith(".ome.zarr"):
                return PixelSize(float(value), "OME-Zarr coordinateTransformations")
            if p.suffix.lower() in (".tif", ".tiff", ".qptiff", ".btf"):
                src = _tiff_source(p, value)
                if src:
                    return PixelSize(float(value), src)
    if table is not None and pixel_size_um(table) is not None:
        return PixelSize(float(value), "cell table (uns)")
    return PixelSize(float(value), "reader")
