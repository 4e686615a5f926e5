"""OME-Zarr (NGFF 0.4 and 0.5) multiscale images and labels, read lazily with plain zarr + dask."""

from __future__ import annotations

import os
from pathlib import Path

from ..model import ReaderError
from ._util import log, require_exists, unit_to_um, wrap_errors
from .tiff import ImageData


def _attrs(group) -> dict:
    """NGFF attributes of a group: 0.5 nests them under ``ome``, 0.4 has them at the top."""
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))


def is_multiscale(path) -> bool:
    """True when ``path`` is a zarr group with NGFF ``multiscales`` metadata."""
    import zarr

    try:
        g = zarr.open_group(os.fspath(path), mode="r")
        return "multiscales" in _attrs(g)
    except Exception:  # noqa: BLE001 - a probe
        return False


def _find_multiscale(g, path):
    """The group itself if multiscale, else its first labels image, else its first multiscale child."""
    if "multiscales" in _attrs(g):
        return g, os.fspath(path)
    labels = _attrs(g).get("labels")
    if labels:
        return _find_multiscale(g[f"labels/{labels[0]}"], Path(path) / "labels" / labels[0])
    if "labels" in g and _attrs(g["labels"]).get("labels"):   # NGFF: labels listed on the labels/ group
        first = _attrs(g["labels"])["labels"][0]
        return _find_multiscale(g[f"labels/{first}"], Path(path) / "labels" / first)
    for name, child in sorted(g.groups()):
        if "multiscales" in _attrs(child):
            return child, os.fspath(Path(path) / name)
    raise ReaderError("the zarr store has no NGFF 'multiscales' image.", path=path,
                      hint="Point to an OME-Zarr image group (one with .zattrs/zarr.json 'multiscales').")


def read_omezarr(path: str | os.PathLike) -> ImageData:
    """Open an OME-Zarr multiscale image or labels group lazily.

    Parameters
    ----------
    path
        An NGFF 0.4 / 0.5 image group (or a store whose first child / ``labels`` group is one).

    Returns
    -------
    ImageData
        Levels as dask arrays; images are (C, Y, X) (singleton t/z dropped), labels (1, Y, X).
        Channel names from ``omero.channels[].label``; pixel size from the level-0 ``scale``
        (times a multiscale-wide scale) when the x axis has a length unit.
    """
    import dask.array as da
    import zarr

    p = require_exists(path, "OME-Zarr store")
    with wrap_errors(p, "OME-Zarr store", hint="Is it a complete OME-Zarr (NGFF 0.4/0.5) folder?"):
        root = zarr.open_group(os.fspath(p), mode="r")
        g, gpath = _find_multiscale(root, p)
        attrs = _attrs(g)
        ms = attrs["multiscales"][0]
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
        units = {(a["name"] if isinstance(a, dict) else str(a)): (a.get("unit") if isinstance(a, dict) else None)
                 for a in ms.get("axes", [])}
        levels = []
        for ds in ms["datasets"]:
            arr = da.from_zarr(g[ds["path"]])
            levels.append(_to_cyx(arr, axes or _default_axes(arr.ndim), gpath))
        names = None
        chans = (attrs.get("omero") or {}).get("channels")
        if chans and len(chans) == levels[0].shape[0]:
            names = [str(c.get("label", "")) or None for c in chans]
            if any(n is None for n in names):
                names = None
        px = _pixel_size(ms, axes, units)
    log.debug("%s: OME-Zarr %d level(s), shape %s", gpath, len(levels), tuple(levels[0].shape))
    return ImageData(levels, names, px, gpath,
                     metadata={"pixel_size_source": "OME-Zarr coordinateTransformations"} if px else None)


def _default_axes(ndim: int) -> list[str]:
    return ["t", "c", "z", "y", "x"][-ndim:]


def _to_cyx(arr, axes: list[str], path):
    axes = [a.lower() for a in axes]
    if axes[-2:] != ["y", "x"]:
        raise ReaderError(f"unsupported NGFF axes {axes} (expected ... y, x).", path=path)
    index = []
    for a, n in zip(axes[:-2], arr.shape[:-2], strict=False):
        if a == "c":
            index.append(slice(None))
        elif n == 1:
            index.append(0)
        else:
            log.warning("%s: axis %r has %d planes; using the first", path, a, n)
            index.append(0)
    arr = arr[tuple(index) + (slice(None), slice(None))]
    if arr.ndim == 2:
        arr = arr[None]
    return arr


def _pixel_size(ms: dict, axes: list[str], units: dict) -> float | None:
    if "x" not in axes:
        return None
    xi = axes.index("x")
    scale = 1.0
    for ct in ms["datasets"][0].get("coordinateTransformations", []):
        if ct.get("type") == "scale":
            scale *= float(ct["scale"][xi])
    for ct in ms.get("coordinateTransformations", []) or []:
        if ct.get("type") == "scale" and len(ct.get("scale", [])) == len(axes):
            scale *= float(ct["scale"][xi])
    unit = units.get("x")
    return unit_to_um(scale, unit) if unit else None
