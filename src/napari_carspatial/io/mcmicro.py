"""MCMICRO output folders: ``registration/*.ome.tif``, ``segmentation/<method>-<name>/cell*.ome.tif``,
``quantification/*.csv``, ``markers.csv`` -> one :class:`Sample` per registered image."""

from __future__ import annotations

import os
from pathlib import Path

from ..model import ReaderError, Sample
from ._util import log, require_exists, stem
from .image import read_image
from .masks import read_mask
from .panel import read_panel
from .tables import read_table

_OME = ("*.ome.tif", "*.ome.tiff")


def is_mcmicro(path) -> bool:
    """A folder with ``registration/`` or ``markers.csv`` (and not a steinbock folder)."""
    p = Path(path)
    return p.is_dir() and ((p / "registration").is_dir() or (p / "markers.csv").is_file())


def _glob(folder: Path, patterns) -> list[Path]:
    return sorted({f for pat in patterns for f in folder.glob(pat)})


def _pick_mask(folder: Path, name: str, segmentation: str | None) -> Path | None:
    segdir = folder / "segmentation"
    if not segdir.is_dir():
        return None
    dirs = sorted(d for d in segdir.iterdir() if d.is_dir())
    if segmentation is not None:
        dirs = [d for d in dirs if d.name.startswith(segmentation)]
    named = [d for d in dirs if d.name.endswith(name)] or dirs
    for d in named:
        cands = _glob(d, ("cell*.ome.tif", "cell*.ome.tiff", "cell*.tif", "cell*.tiff"))
        if cands:
            exact = [c for c in cands if stem(c) == "cell"]
            return (exact or cands)[0]
    return None


def _pick_table(folder: Path, name: str, mask: Path | None) -> Path | None:
    qdir = folder / "quantification"
    if not qdir.is_dir():
        return None
    cands = sorted(qdir.glob("*.csv"))
    if not cands:
        return None
    method = mask.parent.name.split("-")[0] if mask is not None else ""
    scored = sorted(cands, key=lambda c: (name not in c.name, method not in c.name, "cell" not in c.name, c.name))
    return scored[0]


def read_mcmicro(path: str | os.PathLike, *, segmentation: str | None = None, check_ids: bool = True) -> list[Sample]:
    """Read an MCMICRO output folder: one validated :class:`Sample` per ``registration/`` image.

    Parameters
    ----------
    path
        The MCMICRO project folder.
    segmentation
        Prefix of the ``segmentation/`` sub-folder to use (e.g. ``"unmicst"``); default: the one
        named after the image, else the first. ``cell.ome.tif`` is preferred over other ``cell*``.
    check_ids
        Check table ids against the mask.

    Returns
    -------
    list of Sample
        Channel names from the OME-XML, or from ``markers.csv`` (``marker_name``) when the file has
        none or its names are generic; table from ``quantification/*.csv`` (``CellID``).

    Raises
    ------
    ReaderError
        The folder has no image in ``registration/`` or a part cannot be read.
    """
    folder = require_exists(path, "MCMICRO folder")
    imgs = _glob(folder / "registration", _OME + ("*.tif", "*.tiff"))
    if not imgs:
        raise ReaderError("the MCMICRO folder has no image in registration/.", path=folder,
                          hint="Expected registration/<name>.ome.tif as written by ASHLAR.")
    markers = folder / "markers.csv"
    out = []
    for img in imgs:
        name = stem(img)
        data = read_image(img)
        names = data.channel_names
        if markers.is_file():
            panel = read_panel(markers)
            generic = all(n.startswith(("channel_", "Channel ", "Channel:")) for n in names)
            if len(panel) != len(names):
                if generic:
                    data = read_image(img, panel=markers)  # raises with both files and counts
                log.warning("%s lists %d markers, %s has %d channels; using the image's names",
                            markers, len(panel), img, len(names))
            elif generic:
                names = panel
        sample = Sample(name=name, image=data.levels, channel_names=names, pixel_size_um=data.pixel_size_um,
                        paths={"folder": os.fspath(folder), "image": os.fspath(img)})
        mask = _pick_mask(folder, name, segmentation)
        if mask is not None:
            sample.labels = read_mask(mask, check_empty=False)
            sample.paths["mask"] = os.fspath(mask)
        tpath = _pick_table(folder, name, mask)
        if tpath is not None:
            sample.table = read_table(tpath, pixel_size_um=data.pixel_size_um, channel_names=names)
            sample.paths["table"] = os.fspath(tpath)
        out.append(sample.validate(check_ids=check_ids))
    return out
