"""Spatial transcriptomics instrument folders (Xenium, CosMx, MERSCOPE, Visium HD) through spatialdata-io.

:func:`detect_platform` names the platform of a folder; :func:`read_platform` reads it into
:class:`Sample` s (the same model every other reader produces): morphology images as channels,
cells as labels (rasterized from the platform's polygons where it ships no mask) linked to the
expression table (sparse CSR, genes in ``var``), transcripts in ``Sample.points``, the pixel size
from the platform's metadata or ``pixel_size_um``.

The readers are in ``io/xenium.py``, ``io/cosmx.py`` and here (MERSCOPE, Visium HD). They need the
``[omics]`` extra (``spatialdata``, ``spatialdata-io``); a missing extra is one clear error.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..model import ReaderError, Sample
from ._util import require_exists, stem, wrap_errors

log = logging.getLogger(__name__)

EXTRA_HINT = "Install the optional readers: pip install 'napari-carspatial[omics]' (spatialdata, spatialdata-io)."
PLATFORMS = ("xenium", "cosmx", "merscope", "visium-hd")


def require_spatialdata_io():
    """Import ``spatialdata_io`` or raise a :class:`ReaderError` naming the ``[omics]`` extra."""
    try:
        with quiet():
            import spatialdata_io
    except ImportError as err:
        raise ReaderError(f"reading instrument folders (Xenium, CosMx, MERSCOPE, Visium HD) needs the "
                          f"'spatialdata-io' package ({err}).", hint=EXTRA_HINT) from err
    return spatialdata_io


@contextlib.contextmanager
def quiet():
    """Keep third-party readers' prints and warnings off the user's console (they go to the log)."""
    buf = _io.StringIO()
    loggers = [logging.getLogger(n) for n in ("spatialdata", "spatialdata_io")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf):
            warnings.simplefilter("always")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    text = buf.getvalue().strip()
    if text:
        log.debug("spatialdata-io: %s", text)
    for w in caught:
        log.debug("%s: %s", w.category.__name__, w.message)


# --------------------------------------------------------------------------- detection
def is_cosmx(path) -> bool:
    p = Path(path)
    return p.is_dir() and any(p.glob("*_exprMat_file.csv")) and any(p.glob("*_metadata_file.csv"))


def is_merscope(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "cell_by_gene.csv").is_file() and (
        (p / "detected_transcripts.csv").is_file() or (p / "images" / "micron_to_mosaic_pixel_transform.csv").is_file())


def is_visium_hd(path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "binned_outputs").is_dir() or (p / "segmented_outputs").is_dir())


def detect_platform(path: str | os.PathLike) -> str | None:
    """``"xenium"``, ``"cosmx"``, ``"merscope"``, ``"visium-hd"`` or ``None``. Never raises.

    Parameters
    ----------
    path
        A folder (or a file in it).

    Returns
    -------
    str or None
        The platform name, or ``None`` when the folder is none of them.
    """
    from .xenium import is_xenium

    try:
        for name, test in (("xenium", is_xenium), ("cosmx", is_cosmx), ("merscope", is_merscope),
                           ("visium-hd", is_visium_hd)):
            if test(path):
                return name
    except OSError:
        return None
    return None


def read_platform(path: str | os.PathLike, platform: str | None = None, *, pixel_size_um: float | None = None,
                  check_ids: bool = True, **options) -> list[Sample]:
    """Read an instrument folder into Samples (one per FOV for CosMx, one otherwise).

    Parameters
    ----------
    path
        The instrument's output folder.
    platform
        One of :data:`PLATFORMS`; detected when ``None``.
    pixel_size_um
        µm per level-0 pixel (overrides the platform's metadata; required knowledge for CosMx).
    check_ids
        Check the table against the mask.
    **options
        Platform reader options (see :func:`~napari_carspatial.io.xenium.read_xenium`,
        :func:`~napari_carspatial.io.cosmx.read_cosmx`, :func:`read_merscope`, :func:`read_visium_hd`).

    Returns
    -------
    list of Sample
        One validated sample per FOV (CosMx) or one.

    Raises
    ------
    ReaderError
        The folder is none of the platforms, or the platform reader cannot read it.
    """
    p = require_exists(path, "instrument folder")
    platform = platform or detect_platform(p)
    if platform == "xenium":
        from .xenium import read_xenium

        return [read_xenium(p, pixel_size_um=pixel_size_um, check_ids=check_ids, **options)]
    if platform == "cosmx":
        from .cosmx import read_cosmx

        return read_cosmx(p, pixel_size_um=pixel_size_um, check_ids=check_ids, **options)
    if platform == "merscope":
        return [read_merscope(p, pixel_size_um=pixel_size_um, check_ids=check_ids, **options)]
    if platform == "visium-hd":
        return [read_visium_hd(p, pixel_size_um=pixel_size_um, check_ids=check_ids, **options)]
    raise ReaderError(f"not a Xenium, CosMx, MERSCOPE or Visium HD folder (platform {platform!r}).", path=p)


# --------------------------------------------------------------------------- MERSCOPE
def read_merscope(path: str | os.PathLike, *, pixel_size_um: float | None = None, z_layer: int = 3, transcripts: bool = True,
                  check_ids: bool = True, bin_px: float | None = None, name: str | None = None) -> Sample:
    """Read a Vizgen MERSCOPE region folder (``spatialdata_io.merscope``).

    Cells are the ``cell_boundaries.parquet`` polygons (z index 0), rasterized lazily onto the
    mosaic image grid; the pixel size is the inverse scale of
    ``images/micron_to_mosaic_pixel_transform.csv`` (µm -> mosaic pixels). Blank probes stay in
    ``obsm["blank"]`` as spatialdata-io puts them.

    Parameters
    ----------
    path
        The MERSCOPE region folder.
    pixel_size_um
        µm per mosaic pixel (default: from the micron-to-mosaic transform).
    z_layer
        Which z plane of the mosaic images to read (``spatialdata_io.merscope(z_layers=)``).
    transcripts
        Read ``detected_transcripts.csv`` into ``Sample.points``.
    check_ids
        Check the table against the mask.
    bin_px
        Transcript bin size (level-0 pixels).
    name
        Sample name (default: the folder name).

    Returns
    -------
    Sample
        One validated sample.

    Raises
    ------
    ReaderError
        A required file is missing, or spatialdata-io (the ``[omics]`` extra) is not installed.
    """
    from .spatialdata import samples_from_sdata

    p = require_exists(path, "MERSCOPE folder")
    need = [f for f in ("cell_by_gene.csv", "cell_metadata.csv", "cell_boundaries.parquet",
                        "images/micron_to_mosaic_pixel_transform.csv") if not (p / f).is_file()]
    if need:
        raise ReaderError(f"this MERSCOPE folder lacks {', '.join(need)}.", path=p,
                          hint="Copy the whole region folder (region_N/) of the MERSCOPE output.")
    sdio = require_spatialdata_io()
    with wrap_errors(p, "MERSCOPE folder (spatialdata-io)"), quiet():
        sdata = sdio.merscope(p, z_layers=z_layer, transcripts=transcripts, backend="dask_image")
    m = np.genfromtxt(p / "images" / "micron_to_mosaic_pixel_transform.csv")
    px = pixel_size_um if pixel_size_um is not None else float(1.0 / np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    (s,) = samples_from_sdata(sdata, source=p, pixel_size_um=px, check_ids=check_ids, bin_px=bin_px,
                              metadata={"platform": "MERSCOPE", "reader": "spatialdata-io"})
    s.name = name or stem(p)
    return s


# --------------------------------------------------------------------------- Visium HD
def read_visium_hd(path: str | os.PathLike, *, pixel_size_um: float | None = None, bin_size_um: int = 16, cells: bool | None = None,
                   check_ids: bool = True, name: str | None = None) -> Sample:
    """Read a 10x Visium HD Space Ranger output folder (``spatialdata_io.visium_hd``).

    With Space Ranger's cell segmentation (``segmented_outputs/``) and ``cells`` not ``False``,
    the cells are its segmented cells; otherwise the ``bin_size_um`` bins (``square_016um``)
    are the "cells" (one label per bin, drawn on the full-resolution microscope image). The
    pixel size is ``microns_per_pixel`` of that bin size's ``scalefactors_json.json``.
    There are no transcripts (sequencing-based).

    Parameters
    ----------
    path
        The Space Ranger output folder (``outs/``).
    pixel_size_um
        µm per pixel of the microscope image (default: from ``scalefactors_json.json``).
    bin_size_um
        Bin size (µm) used when the cells are bins (one present in the folder: 2, 8 or 16).
    cells
        ``True``: Space Ranger's segmented cells (error when absent); ``False``: bins; ``None``:
        cells when present, else bins.
    check_ids
        Check the table against the mask.
    name
        Sample name (default: the folder name).

    Returns
    -------
    Sample
        One validated sample (no transcripts).

    Raises
    ------
    ReaderError
        The bins or the segmentation asked for are missing, or the folder cannot be read.
    """
    from .spatialdata import samples_from_sdata

    p = require_exists(path, "Visium HD folder")
    seg = (p / "segmented_outputs").is_dir()
    use_cells = seg if cells is None else bool(cells)
    if use_cells and not seg:
        raise ReaderError("cells=True but this Visium HD folder has no segmented_outputs/ (Space Ranger 4 cell segmentation).",
                          path=p)
    bins = f"square_{int(bin_size_um):03d}um"
    sf = p / "binned_outputs" / bins / "spatial" / "scalefactors_json.json"
    if not use_cells and not sf.is_file():
        have = sorted(d.name for d in (p / "binned_outputs").glob("square_*")) if (p / "binned_outputs").is_dir() else []
        raise ReaderError(f"this Visium HD folder has no {bins} bins (found: {', '.join(have) or 'none'}).", path=p,
                          hint="Pass bin_size_um= one of the bin sizes present.")
    sdio = require_spatialdata_io()
    with wrap_errors(p, "Visium HD folder (spatialdata-io)"), quiet():
        sdata = sdio.visium_hd(p, bin_size=None if use_cells else int(bin_size_um), load_segmentations_only=use_cells,
                               annotate_table_by_labels=not use_cells)
    px = pixel_size_um
    if px is None:
        for f in [sf, *sorted(p.glob("**/scalefactors_json.json"))]:
            if f.is_file():
                with wrap_errors(f, "Visium HD scale factors"):
                    px = json.loads(f.read_text()).get("microns_per_pixel")
                if px:
                    break
    samples = samples_from_sdata(sdata, source=p, pixel_size_um=px, check_ids=check_ids,
                                 metadata={"platform": "Visium HD", "reader": "spatialdata-io",
                                           "cells": "segmented cells" if use_cells else f"{bins} bins"})
    s = samples[0]
    s.name = name or stem(p)
    return s
