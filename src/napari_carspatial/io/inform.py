"""Akoya / PerkinElmer inForm exports: units of the cell positions and the image-name match.

inForm writes ``<field>_cell_seg_data.txt`` (tab-separated) beside ``<field>_component_data.tif``.
The unit of ``Cell X Position`` / ``Cell Y Position`` changed between versions, and the export
says which through its own column names (the rule phenoptr's ``read_cell_seg_data`` uses):

* older exports are in **pixels** of the field: area columns read ``... Area (pixels)``,
  distances ``... (pixels)``, densities ``(per megapixel)``;
* newer exports are in **microns**: ``... Area (square microns)``, ``(per square mm)``, and the
  positions are slide coordinates, so the field's top-left corner is subtracted: it is the
  component image's ``XPosition`` / ``YPosition`` tags (centimetres), or the field centre in the
  file name (``..._[16142,55840]_component_data.tif``, µm) minus half the field size.
  Microns per pixel: the component image's resolution (pixels per centimetre), else the pixel
  size given.

Field names match without inForm's suffixes (``_component_data``, ``_cell_seg_data``,
``_binary_seg_maps``, ...) and without the ``.im3`` of ``Sample Name``.
"""

from __future__ import annotations

import os
import re

from ._util import log, stem

#: suffixes inForm appends to a field's name
INFORM_SUFFIXES = ("_cell_seg_data_summary", "_cell_seg_data", "_component_data", "_binary_seg_maps",
                   "_composite_image", "_score_data", "_tissue_seg_data_summary", "_tissue_seg_data",
                   "_tissue_seg_map", "_phenotype_data", "_cell_seg_map", "_memb_seg_map", "_nuc_seg_map")
POSITION_COLUMNS = ("Cell X Position", "Cell Y Position")
#: the positions as read (µm, slide coordinates) are kept under these names
MICRON_COLUMNS = ("Cell X Position (µm)", "Cell Y Position (µm)")
_CENTER = re.compile(r"_\[([\d.]+),([\d.]+)\][^\[]*$")


def inform_stem(name) -> str:
    """A field name without directory, image/table suffixes and inForm's suffixes."""
    s = stem(name)
    if s.lower().endswith(".im3"):
        s = s[:-4]
    for suf in INFORM_SUFFIXES:
        if s.endswith(suf):
            return s[: -len(suf)]
    return s


def is_inform_table(columns) -> bool:
    """An inForm cell table: ``Cell X Position`` / ``Cell Y Position`` and ``Cell ID``."""
    cols = set(map(str, columns))
    return all(c in cols for c in POSITION_COLUMNS) and "Cell ID" in cols


def position_unit(columns) -> str:
    """``"um"`` or ``"px"``: microns if any column names microns, or none names pixels (phenoptr's rule)."""
    names = [str(c).lower() for c in columns]
    if any("micron" in n for n in names) or not any("pixel" in n for n in names):
        return "um"
    return "px"


def field_info(image_path) -> dict | None:
    """``location_um`` (x, y of the top-left corner), ``microns_per_pixel`` and ``size_px`` of a component image."""
    import tifffile

    if image_path is None or not os.path.isfile(image_path):
        return None
    try:
        with tifffile.TiffFile(image_path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            h, w = page.shape[:2]
            xres, unit = page.tags.get(282), page.tags.get(296)
            if xres is None or unit is None or int(unit.value) != 3:
                return None
            num, den = xres.value
            mpp = 1e4 / (num / den)
            loc = None
            xp, yp = page.tags.get(286), page.tags.get(287)
            if xp is not None and yp is not None:
                loc = (_rational(xp.value) * 1e4, _rational(yp.value) * 1e4)
            else:
                m = _CENTER.search(os.path.basename(os.fspath(image_path)))
                if m:
                    loc = (float(m[1]) - w * mpp / 2, float(m[2]) - h * mpp / 2)
    except Exception as err:  # noqa: BLE001 - optional metadata
        log.debug("%s: no inForm field info (%s)", image_path, err)
        return None
    return {"location_um": loc, "microns_per_pixel": mpp, "size_px": (int(w), int(h))}


def _rational(v) -> float:
    if isinstance(v, (tuple, list)):
        return float(v[0]) / float(v[1]) if v[1] else 0.0
    return float(v)


def prepare_inform(df, *, image=None, pixel_size_um: float | None = None, source=None):
    """Put an inForm table's positions into field pixels (``Cell X/Y Position``); other tables unchanged.

    Pixel exports are returned as they are. Micron exports are converted with the component
    image's position and resolution (``image``; see the module docstring); the µm values are kept
    in :data:`MICRON_COLUMNS`. When the field's position cannot be found, the positions are moved
    to :data:`MICRON_COLUMNS` only (centroids then come from the mask) and a warning says why.
    """
    if not is_inform_table(df.columns):
        return df
    unit = position_unit(df.columns)
    df.attrs["inform_position_unit"] = unit
    if unit == "px":
        log.debug("%s: inForm positions in pixels (column names say pixels)", source)
        return df
    df = df.copy()
    um = [df[c].to_numpy(float) for c in POSITION_COLUMNS]
    for c, v in zip(MICRON_COLUMNS, um, strict=True):
        df[c] = v
    info = field_info(image)
    mpp = info["microns_per_pixel"] if info else pixel_size_um
    mpp_source = (f"inForm component image resolution tag ({os.path.basename(os.fspath(image))})" if info
                  else "user" if pixel_size_um is not None else None)
    loc = info["location_um"] if info else None
    if loc is None and image is not None:
        m = _CENTER.search(os.path.basename(os.fspath(image)))
        if m and mpp and info:
            w, h = info["size_px"]
            loc = (float(m[1]) - w * mpp / 2, float(m[2]) - h * mpp / 2)
    if loc is None or not mpp:
        log.warning("%s: inForm positions are in microns (slide coordinates) and the field's position is unknown "
                    "(open it with its _component_data.tif); cell centroids are taken from the mask", source)
        df = df.drop(columns=list(POSITION_COLUMNS))
        return df
    df[POSITION_COLUMNS[0]] = (um[0] - loc[0]) / mpp
    df[POSITION_COLUMNS[1]] = (um[1] - loc[1]) / mpp
    df.attrs["inform_field"] = {"location_um": tuple(map(float, loc)), "microns_per_pixel": float(mpp),
                                "pixel_size_source": mpp_source}
    log.debug("%s: inForm positions converted from µm (field at %s µm, %.4f µm/px)", source, loc, mpp)
    return df


def record_inform_field(adata, df) -> None:
    """Keep what :func:`prepare_inform` used to turn micron positions into pixels in the table
    (``uns["carspatial"]["inform_field"]``: the field's position, ``microns_per_pixel`` and where
    that came from), and record the pixel size's source
    (:func:`~napari_carspatial.model.pixel_size.set_pixel_size_source`) as the other readers do.
    A table with no pixel size of its own takes the field's. Other tables are left as they are.

    Parameters
    ----------
    adata
        The cell table made from ``df``.
    df
        The data frame :func:`prepare_inform` returned.
    """
    from ..model.conventions import UNS_KEY, pixel_size_um, set_pixel_size_um
    from ..model.pixel_size import set_pixel_size_source

    field = (getattr(df, "attrs", None) or {}).get("inform_field")
    if not field:
        return
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta["inform_field"] = {"location_um": [float(v) for v in field["location_um"]],
                            "microns_per_pixel": float(field["microns_per_pixel"]),
                            "pixel_size_source": field.get("pixel_size_source") or "unknown"}
    adata.uns[UNS_KEY] = meta
    own = pixel_size_um(adata)
    if own is None:
        set_pixel_size_um(adata, float(field["microns_per_pixel"]))
        own = float(field["microns_per_pixel"])
    if field.get("pixel_size_source") and abs(own - float(field["microns_per_pixel"])) <= 1e-9 * own:
        set_pixel_size_source(adata, field["pixel_size_source"])
