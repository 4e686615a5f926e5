"""One entry point: :func:`read_sample` dispatches on what a path contains (:func:`detect_format`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..model import ReaderError, Sample
from ._util import require_exists, stem, wrap_errors
from .image import read_image
from .imc import is_imc_txt, is_mcd, read_imc_txt, read_mcd
from .masks import read_mask
from .mcmicro import is_mcmicro, read_mcmicro
from .measure import store_measured_table
from .mibi import is_fov_folder, is_mibitiff, read_fov_folders
from .omezarr import is_multiscale
from .platforms import PLATFORMS, detect_platform, read_platform
from .spatialdata import is_spatialdata, read_spatialdata
from .steinbock import is_steinbock, read_steinbock
from .tables import read_table
from .tiff import is_ome_tiff, is_tiff

#: every value :func:`detect_format` can return
FORMATS = ("steinbock", "mcmicro", "spatialdata", "ome-zarr", "ome-tiff", "tiff", "anndata", "imc-mcd", "imc-txt", "mibitiff",
           "fov-folder", *PLATFORMS)
#: formats that give one sample per acquisition / image and bring their own masks and tables
FOLDER_FORMATS = ("steinbock", "mcmicro", "spatialdata", "imc-mcd", "fov-folder", *PLATFORMS)


def detect_format(path: str | os.PathLike) -> str | None:
    """Name the format of ``path`` from its content, or ``None`` when no reader here handles it.

    Parameters
    ----------
    path
        File or folder.

    Returns
    -------
    str or None
        One of :data:`FORMATS`: ``"steinbock"`` (``img/`` + ``panel.csv`` or ``masks*/``),
        ``"mcmicro"`` (``registration/`` or ``markers.csv``), ``"spatialdata"`` (zarr group with
        ``images``/``labels``/``tables``), ``"ome-zarr"`` (NGFF multiscales), ``"ome-tiff"``,
        ``"tiff"``, ``"anndata"`` (``.h5ad``), an instrument folder (``"xenium"``, ``"cosmx"``,
        ``"merscope"``, ``"visium-hd"``). Never raises.
    """
    try:
        p = Path(path)
        if not p.exists():
            return None
        if p.is_dir():
            if is_steinbock(p):
                return "steinbock"
            if is_multiscale(p):
                return "ome-zarr"
            if is_spatialdata(p):
                return "spatialdata"
            if is_mcmicro(p):
                return "mcmicro"
            if is_fov_folder(p):
                return "fov-folder"
            return detect_platform(p)  # Xenium, CosMx, MERSCOPE, Visium HD (io/platforms.py)
        if is_tiff(p):
            if is_mibitiff(p):
                return "mibitiff"
            return "ome-tiff" if is_ome_tiff(p) else "tiff"
        if p.name.lower().endswith(".h5ad"):
            return "anndata"
        if is_mcd(p):
            return "imc-mcd"
        if is_imc_txt(p):
            return "imc-txt"
    except OSError:
        return None
    return None


def read_sample(
    path: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    table: str | os.PathLike | None = None,
    name: str | None = None,
    panel: str | os.PathLike | None = None,
    channel_names: list[str] | None = None,
    pixel_size_um: float | None = None,
    id_column: str | None = None,
    image_column: str | None = None,
    segmentation: str | None = None,
    check_ids: bool = True,
    measure: bool = True,
    **options,
) -> Sample | list[Sample]:
    """Read a sample (image + mask + table) from any supported layout; the result is validated.

    Parameters
    ----------
    path
        Image file (OME-TIFF, TIFF stack, OME-Zarr), table-only ``.h5ad``, or a folder
        (steinbock, MCMICRO, SpatialData store).
    mask
        Label image for a single image (TIFF / OME-TIFF / OME-Zarr labels). For an OME-Zarr image
        with a ``labels/`` group the first labels image is used when ``mask`` is not given.
    table
        Cell table for a single image: ``.h5ad``, AnnData ``.zarr`` or CSV (steinbock, MCMICRO,
        QuPath/inForm, cytomapper, or generic with ``id_column``). Multi-image tables are
        restricted to the rows whose image column (``ImageName``, ``MaskName``, ``Image``, ... or
        ``image_column``) matches the image or mask file name (compared without suffixes).
    name
        Sample name (default: file stem).
    panel
        Channel names from a panel CSV (override the file's).
    channel_names
        Channel names given explicitly (override the file's and the panel's).
    pixel_size_um
        µm per level-0 pixel (overrides the file's).
    id_column
        Column of the table holding each row's mask label (see :func:`napari_carspatial.io.read_table`).
    image_column
        Column of the table naming each row's image (see :func:`napari_carspatial.io.read_table`).
    segmentation
        Folder formats: which segmentation to use (steinbock ``masks_<segmentation>``, MCMICRO
        ``segmentation/<segmentation>-*``).
    check_ids
        Check that every mask id has exactly one table row and vice versa.
    measure
        A sample with image + mask and no table gets its table measured on open
        (:func:`napari_carspatial.io.measure.store_measured_table`: mean intensity per channel
        and shape, in this process); ``metadata["table_source"]`` says so.
    **options
        Options of the instrument-folder readers (``image_pixel_size_um``, ``image_origin_um``,
        ``transcripts``, ``fovs``, ``bin_size_um``, ...; see :func:`napari_carspatial.io.read_platform`).

    Returns
    -------
    Sample or list of Sample
        A list for folder formats (steinbock: one per acquisition), a Sample otherwise.

    Raises
    ------
    SampleError
        Any problem, with the file, what is wrong and a fix where possible.
    """
    p = require_exists(path, "input")
    fmt = detect_format(p)
    if fmt is None:
        raise ReaderError(
            "unsupported format: not an OME-TIFF/TIFF, OME-Zarr, IMC .mcd/.txt, SpatialData store, steinbock or MCMICRO "
            "folder, or a Xenium, CosMx, MERSCOPE or Visium HD output folder.",
            path=p,
            hint="Open the image file itself, or a steinbock / MCMICRO project folder.",
        )
    if options and fmt not in PLATFORMS:
        raise ReaderError(f"options {sorted(options)} apply to instrument folders (Xenium, CosMx, MERSCOPE, "
                          f"Visium HD); this is a {fmt} input.", path=p)
    result = _read(p, fmt, mask=mask, table=table, name=name, panel=panel, channel_names=channel_names,
                   pixel_size_um=pixel_size_um, id_column=id_column, image_column=image_column,
                   segmentation=segmentation, check_ids=check_ids, options=options)
    if measure:
        for s in result if isinstance(result, list) else [result]:
            if s.table is None and s.labels is not None and s.image:
                with wrap_errors(s.paths.get("mask") or p, "mask (measuring cells on open)"):
                    store_measured_table(s)
                    s.validate(check_ids=False)   # ids come from this very mask
    return result


def _read(p: Path, fmt: str, *, mask, table, name, panel, channel_names, pixel_size_um, id_column, image_column,
          segmentation, check_ids, options=None):
    with wrap_errors(p, f"{fmt} input"):
        if fmt in FOLDER_FORMATS:
            if mask is not None or table is not None:
                raise ReaderError(f"mask= and table= apply to single images; this is a {fmt} "
                                  f"{'file of several acquisitions' if p.is_file() else 'folder'} that brings its own.",
                                  path=p)
            if fmt == "steinbock":
                return read_steinbock(p, segmentation=segmentation, check_ids=check_ids)
            if fmt == "mcmicro":
                return read_mcmicro(p, segmentation=segmentation, check_ids=check_ids)
            if fmt == "imc-mcd":
                return read_mcd(p, panel=panel)
            if fmt == "fov-folder":
                return read_fov_folders(p, check_ids=check_ids)
            if fmt in PLATFORMS:
                return read_platform(p, fmt, pixel_size_um=pixel_size_um, check_ids=check_ids, **(options or {}))
            return read_spatialdata(p, check_ids=check_ids, pixel_size_um=pixel_size_um)
        if fmt == "anndata":
            adata = read_table(p, id_column=id_column, pixel_size_um=pixel_size_um)
            s = Sample(name=name or stem(p), table=adata, pixel_size_um=pixel_size_um, paths={"table": os.fspath(p)})
            return s.validate(check_ids=False)
        return _read_single(p, fmt, mask=mask, table=table, name=name, panel=panel, channel_names=channel_names,
                            pixel_size_um=pixel_size_um, id_column=id_column, image_column=image_column,
                            check_ids=check_ids)


def _read_single(p: Path, fmt: str, *, mask, table, name, panel, channel_names, pixel_size_um, id_column,
                 image_column, check_ids) -> Sample:
    if fmt == "imc-txt":
        s = read_imc_txt(p, panel=panel)
        if name:
            s.name = name
        if channel_names is not None:
            if len(channel_names) != s.n_channels:
                raise ReaderError(f"{len(channel_names)} channel names given for {s.n_channels} channels.", path=p)
            s.channel_names = [str(n) for n in channel_names]
        if pixel_size_um is not None:
            s.pixel_size_um = pixel_size_um
    else:
        data = read_image(p, panel=panel, channel_names=channel_names, pixel_size_um=pixel_size_um)
        meta = dict(data.metadata or {})
        if data.channel_metadata:
            meta["channel_metadata"] = data.channel_metadata
        s = Sample(name=name or stem(p), image=data.levels, channel_names=data.channel_names,
                   pixel_size_um=data.pixel_size_um, metadata=meta, paths={"image": os.fspath(p)})
    if mask is None and fmt == "ome-zarr" and (p / "labels").is_dir():
        import zarr

        from .omezarr import _attrs

        labels = _attrs(zarr.open_group(os.fspath(p / "labels"), mode="r")).get("labels") or []
        mask = p / "labels" / labels[0] if labels else None
    if mask is not None:
        mpath = require_exists(mask, "mask")
        s.labels = read_mask(mpath)
        s.paths["mask"] = os.fspath(mpath)
    if table is not None:
        tpath = require_exists(table, "cell table")
        s.table = read_table(tpath, id_column=id_column, pixel_size_um=s.pixel_size_um, image=p, mask=mask,
                             image_column=image_column, channel_names=s.channel_names)
        s.paths["table"] = os.fspath(tpath)
    return s.validate(check_ids=check_ids)
