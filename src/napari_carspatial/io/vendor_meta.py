"""Per-channel metadata beside the name, from the vendor layouts ``read_tiff`` opens.

* Akoya / PerkinElmer QPTIFF (Vectra Polaris, PhenoCycler-Fusion): each full-resolution page's
  ``ImageDescription`` is ``<PerkinElmer-QPI-ImageDescription>`` XML with ``<Name>`` (the filter
  or Opal fluor, e.g. ``DAPI``, ``Opal 570``, ``Cy5``), ``<Biomarker>`` (the marker, PhenoCycler and
  newer Vectra), ``<Color>``, ``<ExposureTime>``, ``<SignalUnits>``. The channel is named by
  ``Biomarker`` when there is one, else by ``Name``; the fluor, colour and exposure are kept.
* OME-TIFF (Lunaphore COMET and every OME writer): ``Channel`` attributes besides ``Name``
  (``Fluor``, ``EmissionWavelength``, ``ExcitationWavelength``, ``Color``) and the plane's
  ``ExposureTime``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ._util import log

_QPI_FIELDS = {"Name": "fluor", "Biomarker": "biomarker", "Color": "color", "ExposureTime": "exposure_time",
               "SignalUnits": "signal_units", "ImageType": "image_type"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _qpi_fields(description: str) -> dict | None:
    text = (description or "").strip()
    if "PerkinElmer-QPI-ImageDescription" not in text:
        return None
    if text.startswith("<?xml"):
        text = text.split("?>", 1)[1]
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    out = {}
    for el in root:
        key = _QPI_FIELDS.get(_local(el.tag))
        if key and el.text is not None and el.text.strip():
            out[key] = el.text.strip()
    return out


def qpi_channel_metadata(pages0, names: list[str]) -> list[dict] | None:
    """Per channel ``fluor``, ``biomarker``, ``color``, ``exposure_time`` of a QPTIFF (None if not one)."""
    metas = []
    for page, name in zip(pages0, names, strict=False):
        f = _qpi_fields(getattr(page, "description", "") or "")
        if f is None:
            return None
        f.pop("image_type", None)
        metas.append({"name": name, "platform": "Akoya QPTIFF", **f})
    return metas if len(metas) == len(names) else None


def ome_channel_metadata(ome_xml: str | None, image_index: int, names: list[str]) -> list[dict] | None:
    """Per channel ``Channel`` attributes besides ``Name`` (fluor, wavelengths, colour, exposure)."""
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    images = [el for el in root if _local(el.tag) == "Image"]
    if not images:
        return None
    img = images[image_index] if image_index < len(images) else images[0]
    pixels = next((el for el in img if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return None
    chans = [el for el in pixels if _local(el.tag) == "Channel"]
    if len(chans) != len(names):
        return None
    exposure = {}
    for pl in (el for el in pixels if _local(el.tag) == "Plane"):
        if pl.get("ExposureTime") is not None and pl.get("TheZ", "0") == "0" and pl.get("TheT", "0") == "0":
            exposure.setdefault(int(pl.get("TheC", "0")), pl.get("ExposureTime") + (pl.get("ExposureTimeUnit") or ""))
    out = []
    for i, (el, name) in enumerate(zip(chans, names, strict=False)):
        m = {"name": name}
        for attr, key in (("Fluor", "fluor"), ("EmissionWavelength", "emission_nm"),
                          ("ExcitationWavelength", "excitation_nm"), ("Color", "color")):
            if el.get(attr) not in (None, ""):
                m[key] = el.get(attr)
        if i in exposure:
            m["exposure_time"] = exposure[i]
        out.append(m)
    if all(len(m) == 1 for m in out):
        return None
    return out


def channel_metadata(tif, idx: int, pages0, names: list[str] | None) -> list[dict] | None:
    """Channel metadata for :func:`napari_carspatial.io.tiff.read_tiff` (None when the file has none)."""
    if not names:
        return None
    try:
        if tif.is_ome:
            return ome_channel_metadata(tif.ome_metadata, idx, names)
        if getattr(tif, "is_qpi", False):
            return qpi_channel_metadata(pages0, names)
    except Exception as err:  # noqa: BLE001 - optional metadata
        log.debug("channel metadata not readable: %s", err)
    return None
