"""TIFF readers: OME-TIFF (flat or pyramidal: SubIFDs or series levels) and plain multi-page stacks.

Everything is lazy: each pyramid level is a dask array over tifffile's zarr store
(``TiffPageSeries.aszarr``), so opening reads only metadata, never level-0 pixels.
Channel names come from, in order: OME-XML ``Channel/@Name``, PageName tags (285),
PerkinElmer/Akoya XML in ImageDescription (``<Biomarker>`` or ``<Name>``), ImageJ ``Labels``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import xml.etree.ElementTree as ET
from typing import NamedTuple

import numpy as np

from ..model import ReaderError
from ._util import log, require_exists, unit_to_um, wrap_errors

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".qptiff")


class ImageData(NamedTuple):
    """What an image reader found: lazy levels and the metadata that came with them.

    Attributes
    ----------
    levels
        The pyramid, level 0 first; dask arrays (C, Y, X).
    channel_names
        Channel names from the file's own metadata, or ``None`` when it has none.
    pixel_size_um
        µm per level-0 pixel, or ``None`` when the file does not say.
    path
        The file that was read.
    channel_metadata
        Per channel, what the file says besides the name (mass, metal, fluorophore, ...), or
        ``None``.
    metadata
        File-level facts worth keeping in ``Sample.metadata`` (platform, run ids, ...), or ``None``.
    """

    #: pyramid, level 0 first; dask arrays (C, Y, X)
    levels: list
    #: channel names from the file's own metadata, or ``None`` when it has none
    channel_names: list[str] | None
    #: micrometres per level-0 pixel, or ``None`` when the file does not say
    pixel_size_um: float | None
    #: the file that was read
    path: str
    #: per channel, what the file says besides the name (mass, metal, fluorophore, ...), or None
    channel_metadata: list[dict] | None = None
    #: file-level facts worth keeping in ``Sample.metadata`` (platform, run ids, ...), or None
    metadata: dict | None = None


def is_tiff(path) -> bool:
    """True for names ending in a TIFF suffix."""
    return os.fspath(path).lower().endswith(TIFF_SUFFIXES)


def is_ome_tiff(path) -> bool:
    """True when ``path`` is a TIFF whose first page carries OME-XML."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # noqa: BLE001 - a probe, not a reader
        return False


def read_tiff(path: str | os.PathLike) -> ImageData:
    """Open a TIFF / OME-TIFF lazily as a (C, Y, X) pyramid.

    Parameters
    ----------
    path
        OME-TIFF (flat, SubIFD pyramid or one series per level) or plain TIFF (one page per
        channel, ImageJ hyperstack, RGB).

    Returns
    -------
    ImageData
        Levels as dask arrays (C, Y, X), channel names (``None`` when the file has none) and
        pixel size in µm (``None`` when unknown).

    Raises
    ------
    ReaderError
        The file is missing, not a TIFF, truncated or has no image data.
    """
    import tifffile

    p = require_exists(path, "TIFF file")
    hint = "Is it a complete TIFF file? Re-export or re-copy it."
    with wrap_errors(p, "TIFF file", hint=hint), _capture_tifffile_errors() as errors, \
            tifffile.TiffFile(p) as tif:
            if not tif.series:
                raise ReaderError("the TIFF holds no image data.", path=p)
            _check_open_errors(tif, errors, p)
            stacked = _stacked_pages(tif)
            if stacked:  # one 2-D series per page (MIBI / tifffile "shaped" exports): pages are channels
                _check_complete(tif, [(s, 0) for s in stacked], p)
                import dask.array as da

                s0, axes = stacked[0], "CYX"
                levels = [da.stack([_lazy(s, 0) for s in stacked])]
                pages0 = [_full_page(tif, s.levels[0].pages[0]) for s in stacked]
            else:
                series_list = _pyramid_series(tif)
                _check_complete(tif, series_list, p)
                s0 = series_list[0][0]
                _check_ome_planes(tif, p)
                axes = s0.axes
                levels = [_level_to_cyx(_lazy(s, lvl), s.axes, p) for s, lvl in series_list]
                pages0 = [_full_page(tif, pg) for pg in s0.levels[0].pages]
            n_c = int(levels[0].shape[0])
            idx = next((i for i, s in enumerate(tif.series) if s is s0), 0)
            names = _channel_names(tif, idx, pages0, n_c)
            px = _pixel_size(tif, idx)
            from .vendor_meta import channel_metadata

            cmeta = channel_metadata(tif, idx, pages0, names)
    log.debug("%s: %d level(s), axes %s, shape %s", p, len(levels), axes, tuple(levels[0].shape))
    return ImageData(levels, names, px, os.fspath(p), cmeta)


# --------------------------------------------------------------------------- structure
class _ErrorList(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _capture_tifffile_errors():
    """tifffile logs (instead of raising) broken IFDs / tags; collect them to fail cleanly."""
    handler = _ErrorList()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _check_open_errors(tif, errors, path) -> None:
    if errors:
        raise ReaderError(f"the TIFF is damaged or truncated ({errors[0]}).", path=path,
                          hint="The file is incomplete or corrupt; copy or export it again.")


def _stacked_pages(tif) -> list | None:
    """Series to stack as channels when every series is one same-shaped 2-D page, else None."""
    ser = tif.series
    s0 = ser[0]
    if len(ser) < 2 or len(s0.levels) > 1 or len(s0.shape) != 2:
        return None
    if all(s.shape == s0.shape and s.dtype == s0.dtype and len(s.levels) == 1 for s in ser):
        return list(ser)
    return None


def _full_page(tif, page):
    return page if hasattr(page, "tags") and hasattr(page, "description") else tif.pages[page.index]


def _pyramid_series(tif) -> list[tuple]:
    """[(series, level index)] for level 0, 1, ...: SubIFD / reduced-page levels, else series levels."""
    s0 = tif.series[0]
    if len(s0.levels) > 1:
        return [(s0, i) for i in range(len(s0.levels))]
    out = [(s0, 0)]
    prev = s0
    for s in tif.series[1:]:  # older OME pyramids: one series (Image) per resolution
        if s.axes != prev.axes or _lead(s) != _lead(prev):
            break
        ry = prev.shape[_yi(prev.axes)] / max(1, s.shape[_yi(s.axes)])
        if not 1.5 <= ry <= 4.5:
            break
        out.append((s, 0))
        prev = s
    return out


def _lead(series) -> tuple:
    return tuple(n for a, n in zip(series.axes, series.shape, strict=False) if a not in "YX")


def _yi(axes: str) -> int:
    return axes.index("Y") if "Y" in axes else -2


def _check_complete(tif, series_list, path) -> None:
    """Raise if the data of any page lies beyond the end of the file (truncated copy)."""
    size = tif.filehandle.size
    for s, lvl in series_list:
        for page in s.levels[lvl].pages:
            if page is None:
                raise ReaderError("the TIFF is missing image pages listed in its metadata.", path=path,
                                  hint="The file is incomplete; re-export or re-copy it.")
            offs, counts = page.dataoffsets, page.databytecounts
            if len(offs) and int(np.max(np.asarray(offs, np.int64) + np.asarray(counts, np.int64))) > size:
                raise ReaderError(
                    f"the TIFF is truncated: image data extends beyond the end of the file ({size} bytes).",
                    path=path, hint="The copy is incomplete; copy the file again.",
                )


def _check_ome_planes(tif, path) -> None:
    """Refuse an OME-TIFF holding more image planes than its OME-XML describes (tifffile would
    drop the extra planes with a warning only): name both counts."""
    if not tif.is_ome:
        return
    described = {pg.index for s in tif.series for lvl in s.levels for pg in lvl.pages
                 if pg is not None and isinstance(pg.index, int)}
    n = len(tif.pages)
    if n > len(described):
        raise ReaderError(f"the OME-XML describes {len(described)} image plane(s) but the file holds {n}: "
                          f"{n - len(described)} plane(s) have no channel in the metadata and would be dropped.",
                          path=path, hint="Fix the OME-XML (SizeC and one Channel per plane) or re-export "
                                          "the image with every channel named.")


#: levels up to this many bytes are read in one lazy chunk instead of through a zarr store
#: (opening the store costs ~0.1 s per file, more than reading a small IMC / MIBI acquisition)
SMALL_LEVEL_BYTES = 8 << 20


def _read_level(path: str, series_index: int, level: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.series[series_index].asarray(level=level)


def _lazy(series, level: int):
    import dask.array as da
    import zarr

    lvl = series.levels[level] if level < len(series.levels) else series
    tif = series.parent
    if int(np.prod(lvl.shape)) * np.dtype(lvl.dtype).itemsize <= SMALL_LEVEL_BYTES and tif is not None:
        import dask

        index = next((i for i, s in enumerate(tif.series) if s is series), None)
        if index is not None:   # one lazy chunk: read the whole (small) level when computed
            task = dask.delayed(_read_level, pure=True)(tif.filehandle.path, index, level)
            return da.from_delayed(task, shape=tuple(lvl.shape), dtype=lvl.dtype)
    store = series.aszarr(level=level)
    z = zarr.open(store, mode="r")
    return da.from_zarr(z)


def _level_to_cyx(arr, axes: str, path):
    """Reshape a level with tifffile ``axes`` to (C, Y, X); RGB samples become channels."""
    axes = axes.upper()
    if axes.endswith("YXS"):
        arr = arr.transpose(*range(arr.ndim - 3), arr.ndim - 1, arr.ndim - 3, arr.ndim - 2)
        axes = axes[:-3] + "SYX"
    if not axes.endswith("YX") or arr.ndim < 2:
        raise ReaderError(f"unsupported TIFF axes {axes!r} (expected the last two to be Y, X).", path=path)
    lead = arr.shape[:-2]
    big = [a for a, n in zip(axes[:-2], lead, strict=False) if n > 1]
    if len(big) > 1:
        log.warning("%s: axes %s %s are flattened into %d channels", path, axes, tuple(arr.shape), int(np.prod(lead)))
    return arr.reshape((int(np.prod(lead)) if lead else 1,) + tuple(arr.shape[-2:]))


# --------------------------------------------------------------------------- channel names
def _clean(names) -> list[str] | None:
    if not names:
        return None
    out = [None if n is None else str(n).strip() for n in names]
    if any(not n for n in out):
        return None
    return out


def _channel_names(tif, idx: int, pages0, n_c: int) -> list[str] | None:
    for getter in (_ome_names, _page_names, _perkinelmer_names, _imagej_names):
        try:
            names = _clean(getter(tif, idx, pages0))
        except Exception as err:  # noqa: BLE001 - metadata is optional; say so and go on
            log.debug("channel names via %s failed: %s", getter.__name__, err)
            names = None
        if names is not None and len(names) == n_c:
            return names
        if names is not None:
            log.debug("%s gave %d names for %d channels; ignored", getter.__name__, len(names), n_c)
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_pixels(tif, idx: int):
    if not tif.is_ome or not tif.ome_metadata:
        return None
    root = ET.fromstring(tif.ome_metadata)
    images = [el for el in root if _local(el.tag) == "Image"]
    if not images:
        return None
    img = images[idx] if idx < len(images) else images[0]
    return next((el for el in img if _local(el.tag) == "Pixels"), None)


def _ome_names(tif, idx, pages0):
    pixels = _ome_pixels(tif, idx)
    if pixels is None:
        return None
    return [el.get("Name") for el in pixels if _local(el.tag) == "Channel"]


def _page_names(tif, idx, pages0):
    names = []
    for page in pages0:
        tag = page.tags.get(285)  # PageName
        if tag is None:
            return None
        names.append(tag.value)
    return names


_PE_RE = re.compile(r"<(Biomarker|Name)>([^<]*)</\1>")


def _perkinelmer_names(tif, idx, pages0):
    names = []
    for page in pages0:
        desc = page.description or ""
        if "<" not in desc or ("PerkinElmer" not in desc and "Biomarker" not in desc and "<Name>" not in desc):
            return None
        found = dict(_PE_RE.findall(desc))
        names.append(found.get("Biomarker") or found.get("Name"))
    return names


def _imagej_names(tif, idx, pages0):
    meta = tif.imagej_metadata or {}
    labels = meta.get("Labels")
    return list(labels) if labels else None


# --------------------------------------------------------------------------- pixel size
def _pixel_size(tif, idx: int) -> float | None:
    try:
        pixels = _ome_pixels(tif, idx)
        if pixels is not None and pixels.get("PhysicalSizeX"):
            return unit_to_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        xres = page.tags.get(282)
        if xres is None:
            return None
        num, den = xres.value
        ppu = num / den if den else 0  # pixels per unit
        if ppu <= 0:
            return None
        meta = tif.imagej_metadata or {}
        if meta.get("unit"):
            return unit_to_um(1.0 / ppu, str(meta["unit"]).replace("\\u00B5", "µ"))
        runit = page.tags.get(296)
        runit = int(runit.value) if runit is not None else 1
        if runit == 3:  # centimetre
            return 1e4 / ppu
        if runit == 2:  # inch; 72/96/300 dpi defaults are screen resolutions, not microscopy
            um = 25400.0 / ppu
            return um if um < 20 else None
    except Exception as err:  # noqa: BLE001 - metadata is optional
        log.debug("pixel size not readable: %s", err)
    return None
