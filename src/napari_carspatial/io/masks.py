"""Label masks (TIFF, OME-TIFF, OME-Zarr labels): lazy integer pyramids, checked on open."""

from __future__ import annotations

import os

import numpy as np

from ..model import SampleError
from ._util import log, strided_pyramid
from .image import _read_levels


def read_mask(path: str | os.PathLike, *, check_empty: bool = True) -> list:
    """Open a segmentation mask lazily as a (Y, X) pyramid.

    Parameters
    ----------
    path
        Label image as TIFF / OME-TIFF or OME-Zarr (a labels group, or a store with ``labels/``).
        Any integer dtype; ids need not be consecutive; 0 is background.
    check_empty
        Raise when the mask holds no cells. The check looks at the file's coarsest level first and
        reads level 0 (chunk by chunk) only when that level is all zero (see :func:`_has_cells`).

    Returns
    -------
    list of dask.array.Array
        Level 0 first. When the file has a single level, nearest-neighbour levels are added by
        striding (``lab[::2, ::2]``) until the longest side is <= 2048 px.

    Raises
    ------
    SampleError
        Missing / unreadable file, more than one plane, float dtype, or no cells.
    """
    data = _read_levels(path)
    levels = []
    for lvl in data.levels:
        if lvl.shape[0] != 1:
            raise SampleError(
                f"mask has {lvl.shape[0]} planes {tuple(lvl.shape)}; expected a single 2-D label image.",
                path=path, hint="Save one label image per mask file.",
            )
        levels.append(lvl[0])
    dtype = levels[0].dtype
    if not np.issubdtype(dtype, np.integer):
        raise SampleError(
            f"mask has dtype {dtype}; a segmentation mask must be an integer label image "
            "(0 = background, one id per cell).",
            path=path,
            hint="Export the segmentation as uint16/uint32 labels, not a probability or float image.",
        )
    _check_label_range(levels, path)
    if check_empty and not _has_cells(levels):
        raise SampleError("mask has no cells (every pixel is 0).", path=path,
                          hint="Check that this is the segmentation output and not an empty placeholder.")
    if len(levels) == 1:
        levels = strided_pyramid(levels[0])
    log.debug("%s: mask %s %s, %d level(s)", path, tuple(levels[0].shape), dtype, len(levels))
    return levels


def _check_label_range(native, path) -> None:
    """Refuse negative label ids (signed masks) and ids >= 2**63 (uint64 masks): checked on the
    coarsest level (the whole mask when it has one level of at most :data:`EMPTY_CHECK_MAX_PIXELS`);
    :meth:`Sample.validate` checks level 0 with the id check."""
    dtype = native[0].dtype
    signed, huge = np.issubdtype(dtype, np.signedinteger), dtype == np.uint64
    if not (signed or huge):
        return
    small = native[-1]
    if small.size > EMPTY_CHECK_MAX_PIXELS:
        return
    if signed:
        lo = int(small.min().compute())
        if lo < 0:
            raise SampleError(f"mask holds negative label ids (smallest {lo}); labels are 0 (background) or "
                              "positive cell ids.", path=path,
                              hint="Re-export the segmentation as an unsigned integer label image.")
    else:
        hi = int(small.max().compute())
        if hi > np.iinfo(np.int64).max:
            raise SampleError(f"mask holds label ids up to {hi}, at or above 2^63; ids up to "
                              f"{np.iinfo(np.int64).max} are supported.", path=path,
                              hint="Relabel it (skimage.segmentation.relabel_sequential).")


#: masks up to this many pixels per level are checked for emptiness on open
EMPTY_CHECK_MAX_PIXELS = 2**26


def _has_cells(native) -> bool:
    """False when the mask is provably all zero; checks the file's coarsest level first.

    Level 0 is read (chunk by chunk) only when the coarsest level is all zero and level 0 is at
    most :data:`EMPTY_CHECK_MAX_PIXELS`; larger single-level masks are not checked here (the id
    check in :meth:`Sample.validate` still catches a table without cells in the mask).
    """
    small = native[-1]
    if small.size <= EMPTY_CHECK_MAX_PIXELS:
        if bool((small != 0).any().compute()):
            return True
        if len(native) == 1:
            return False
    if native[0].size <= EMPTY_CHECK_MAX_PIXELS:
        return bool((native[0] != 0).any().compute())
    log.debug("mask too large to check for emptiness on open; skipped")
    return True


#: name endings of an image file that its mask's name does not carry (cytomapper ``E34_imc.tiff``
#: -> ``E34_mask.tiff``; inForm ``<field>_component_data.tif`` -> ``<field>_binary_seg_maps.tif``)
IMAGE_NAME_ENDINGS = ("_imc", "_image", "_img", "_full", "_component_data", "_composite_image")
#: name endings of a mask file, tried after the image's base name
MASK_NAME_ENDINGS = ("_mask", "_masks", "_labels", "_label", "_seg", "_segmentation", "_cells", "_binary_seg_maps", "")
_TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")


def _split_tiff_name(name: str) -> tuple[str, str] | None:
    low = name.lower()
    for suf in _TIFF_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)], suf
    return None


def _tiff_yx(path) -> tuple[int, int] | None:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:  # noqa: BLE001 - a file we cannot read is no candidate
        return None
    return (int(shape[-2]), int(shape[-1])) if len(shape) >= 2 else None


def find_sibling_mask(image: str | os.PathLike) -> str | None:
    """The mask file that belongs to a single image file, by the layouts pipelines write.

    The image's folder's sibling ``masks`` folder first (cytomapper: ``images/E34_imc.tiff`` ->
    ``masks/E34_mask.tiff``), then ``masks_*`` folders (steinbock: ``img/X.tiff`` ->
    ``masks_deepcell/X.tiff``, the first in name order), then the image's own folder. A name matches
    when it is the image's name, or its base (without :data:`IMAGE_NAME_ENDINGS`) followed by one
    of :data:`MASK_NAME_ENDINGS`; the candidate must be a TIFF of the image's height and width.

    Parameters
    ----------
    image
        The image file (TIFF / OME-TIFF).

    Returns
    -------
    str or None
        The mask's path, or None when no file fits.
    """
    p = os.fspath(image)
    split = _split_tiff_name(os.path.basename(p))
    if split is None or not os.path.isfile(p):
        return None
    stem, _suf = split
    base = stem
    for end in IMAGE_NAME_ENDINGS:
        if base.lower().endswith(end) and len(base) > len(end):
            base = base[: -len(end)]
            break
    want = {stem.lower()} | {(base + end).lower() for end in MASK_NAME_ENDINGS}
    folder = os.path.dirname(os.path.abspath(p))
    parent = os.path.dirname(folder)
    try:
        siblings = sorted(d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d)))
    except OSError:
        siblings = []
    dirs = [os.path.join(parent, d) for d in siblings if d.lower() == "masks"]
    dirs += [os.path.join(parent, d) for d in siblings if d.lower().startswith("masks_")]
    dirs.append(folder)
    yx = None
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            cand = os.path.join(d, n)
            sp = _split_tiff_name(n)
            if sp is None or os.path.samefile(cand, p) or sp[0].lower() not in want:
                continue
            if d == folder and sp[0].lower() == stem.lower():
                continue   # the image itself under another suffix
            if yx is None:
                yx = _tiff_yx(p)
            if yx is not None and _tiff_yx(cand) == yx:
                return cand
    return None


def find_sibling_table(image: str | os.PathLike) -> str | None:
    """A cell table beside a single image's folder (``cells.csv`` in the image folder's parent, as
    cytomapper's and steinbock's layouts keep it), or None. Whether it has rows of this image is
    for :func:`~napari_carspatial.io.read_table` (``image=``) to say.

    Parameters
    ----------
    image
        The image file.

    Returns
    -------
    str or None
        The table's path, or None.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(image)))
    for d in (os.path.dirname(folder), folder):
        cand = os.path.join(d, "cells.csv")
        if os.path.isfile(cand):
            return cand
    return None
