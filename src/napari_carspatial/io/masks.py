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
