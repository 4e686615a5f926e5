"""``read_image``: any supported image file to a lazy pyramid with channel names and pixel size."""

from __future__ import annotations

import os

from ..model import ReaderError
from ._util import log, require_exists, strided_pyramid
from .omezarr import read_omezarr
from .panel import find_panel, names_from_panel
from .tiff import ImageData, is_tiff, read_tiff


def _read_levels(path) -> ImageData:
    from .mibi import is_mibitiff, read_mibitiff

    p = require_exists(path, "image")
    name = os.fspath(p).rstrip("/\\").lower()
    if p.is_dir() or name.endswith(".zarr"):
        return read_omezarr(p)
    if is_tiff(p):
        return read_mibitiff(p) if is_mibitiff(p) else read_tiff(p)
    raise ReaderError(
        f"unsupported image format {p.suffix or '(no suffix)'!r}.", path=p,
        hint="Supported: OME-TIFF, TIFF stacks (.tif/.tiff), OME-Zarr (.zarr folders).",
    )


def read_image(
    path: str | os.PathLike,
    *,
    panel: str | os.PathLike | None = None,
    channel_names: list[str] | None = None,
    pixel_size_um: float | None = None,
) -> ImageData:
    """Open an image lazily as a (C, Y, X) pyramid with channel names and pixel size.

    Parameters
    ----------
    path
        OME-TIFF, TIFF stack or OME-Zarr image.
    panel
        Panel CSV giving channel names (overrides names in the file). When neither the file nor
        this argument gives names, a ``panel.csv`` / ``markers.csv`` beside the image (or one
        folder up) is used; failing that, generic names ``channel_<i>`` and a logged warning.
    channel_names
        Explicit names (override everything else).
    pixel_size_um
        Explicit pixel size in µm (overrides the file).

    Returns
    -------
    ImageData
        ``levels`` (dask, level 0 first; a strided pyramid is added when the file has only one
        level larger than 2048 px), ``channel_names`` (always filled), ``pixel_size_um``, ``path``.

    Raises
    ------
    SampleError
        Missing / truncated / unsupported file, or a panel whose row count differs from the
        number of channels.
    """
    data = _read_levels(path)
    levels = data.levels
    if len(levels) == 1:
        # flat slides: the lower levels come from the pyramid cache once it has been built
        from .pyramid_cache import cached_levels

        levels = cached_levels(data.path, levels[0]) or strided_pyramid(levels[0])
    n_c = int(levels[0].shape[0])
    if channel_names is not None:
        names = [str(n) for n in channel_names]
        if len(names) != n_c:
            raise ReaderError(f"{len(names)} channel names given for {n_c} channels.", path=path)
    elif panel is not None:
        names = names_from_panel(require_exists(panel, "panel file"), n_c, path)
    elif data.channel_names:
        names = list(data.channel_names)
    else:
        found = find_panel(path)
        if found is not None:
            names = names_from_panel(found, n_c, path)
        else:
            log.warning("%s: no channel names in the file and no panel.csv beside it; using channel_0..channel_%d",
                        path, n_c - 1)
            names = [f"channel_{i}" for i in range(n_c)]
    px = pixel_size_um if pixel_size_um is not None else data.pixel_size_um
    meta = {**(data.metadata or {}), "pixel_size_source": "user"} if pixel_size_um is not None else data.metadata
    cmeta = data.channel_metadata
    if cmeta is not None:
        cmeta = [{**m, "name": n} for m, n in zip(cmeta, names, strict=False)] if len(cmeta) == len(names) else None
    return ImageData(levels, names, px, data.path, cmeta, meta)
