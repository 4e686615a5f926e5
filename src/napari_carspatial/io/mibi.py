"""MIBI-TOF: IONpath MIBItiff files and ark / toffy FOV folders (one TIFF per channel per FOV).

MIBItiff (as written by IONpath's ``mibidata.tiff.write``, MIBItracker and mibi-bin-tools): a
multi-page TIFF whose ``Software`` tag starts with ``IonpathMIBI``; every page's
``ImageDescription`` is JSON with ``image.type`` (``SIMS`` for the channels; ``SED``,
``Optical`` and ``Label`` pages are not channels), ``channel.target``, ``channel.mass`` and the
run's ``mibi.*`` fields. ``PageName`` reads ``"<target> (<mass>)"``; we name channels by the
target and keep the mass (and the other per-channel fields) in ``channel_metadata``. Pixel size
from the resolution tags (pixels per centimetre).

FOV folders (ark-analysis, toffy, mibi-bin-tools ``extract_bin_files``, Mantis projects): a
folder per FOV holding one single-channel TIFF per target (``CD3.tiff``; optionally in a
``TIFs/`` sub-folder; OME-TIFFs and mask-like names are not channels), channels in natural-sort order of the file names as ark loads them;
segmentation masks ``<fov>_whole_cell.tiff`` (and ``<fov>_nuclear.tiff``) in
``segmentation/deepcell_output/`` (or ``segmentation/``, ``deepcell_output/``) of the project;
the ark cell table ``segmentation/cell_table/cell_table_size_normalized.csv`` (``fov``,
``label``, ``centroid-0/1``, one column per channel).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..model import ReaderError
from ._util import log, require_exists, stem, wrap_errors
from .tiff import TIFF_SUFFIXES, ImageData, _lazy, _pixel_size

MIBI_SOFTWARE = "IonpathMIBI"
#: mask file suffixes of an ark / deepcell segmentation, preferred first
MASK_SUFFIXES = ("_whole_cell", "_feature_0", "_cell", "_nuclear", "_feature_1")
#: where the masks of a FOV project live, relative to the project folder
SEGMENTATION_DIRS = ("segmentation/deepcell_output", "segmentation_data/deepcell_output", "deepcell_output",
                     "segmentation")
#: ark cell tables, preferred first
CELL_TABLES = ("segmentation/cell_table/cell_table_size_normalized.csv", "segmentation/cell_table_size_normalized.csv",
               "cell_table/cell_table_size_normalized.csv", "cell_table_size_normalized.csv")


def _description(page) -> dict | None:
    try:
        d = json.loads(page.description or "")
    except (TypeError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def is_mibitiff(path) -> bool:
    """A TIFF written in IONpath's MIBItiff layout (``Software`` tag ``IonpathMIBI...``)."""
    import tifffile

    if not os.fspath(path).lower().endswith(TIFF_SUFFIXES):
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            sw = page.tags.get(305)  # Software
            if sw is not None and str(sw.value).startswith(MIBI_SOFTWARE):
                return True
            d = _description(page)
            return bool(d and "channel.target" in d and "image.type" in d)
    except Exception:  # noqa: BLE001 - a probe
        return False


def _channel_entry(d: dict) -> dict:
    entry = {"name": str(d.get("channel.target")), "mass": d.get("channel.mass")}
    for k, v in d.items():
        if k.startswith("channel.") and k not in ("channel.target", "channel.mass"):
            entry[k[len("channel."):]] = v
    return entry


def read_mibitiff(path: str | os.PathLike) -> ImageData:
    """Open a MIBItiff lazily: the SIMS pages as (C, Y, X), named by ``channel.target``.

    Returns
    -------
    ImageData
        One level; ``channel_names`` = targets; ``channel_metadata`` = per channel ``name``,
        ``mass`` and any other ``channel.*`` field; ``metadata`` = the run fields (``mibi.fov_id``,
        ``mibi.run``, ``mibi.dwell``, ...); pixel size in µm.
    """
    import dask.array as da
    import tifffile

    p = require_exists(path, "MIBItiff file")
    with wrap_errors(p, "MIBItiff file", hint="Is it a complete MIBItiff? Export it again from MIBItracker."), \
            tifffile.TiffFile(p) as tif:
        sims = []
        for i, page in enumerate(tif.pages):
            d = _description(page)
            if d is None or str(d.get("image.type", "")).lower() != "sims":
                continue
            sims.append((i, page, d))
        if not sims:
            raise ReaderError("the MIBItiff has no SIMS (channel) pages.", path=p)
        shapes = {pg.shape for _, pg, _ in sims}
        if len(shapes) != 1:
            raise ReaderError(f"the MIBItiff's channel pages differ in shape ({sorted(shapes)}).", path=p)
        by_page = {s.pages[0].index if hasattr(s.pages[0], "index") else None: s for s in tif.series}
        arrays = []
        for i, page, _ in sims:
            series = by_page.get(i)
            if series is not None and len(series.shape) == 2:
                arrays.append(_lazy(series, 0))
            else:  # not a series of its own: read the page when computed
                arrays.append(da.from_delayed(_delayed_page(os.fspath(p), i), shape=page.shape, dtype=page.dtype))
        level0 = da.stack(arrays)
        meta = [_channel_entry(d) for _, _, d in sims]
        names = [m["name"] for m in meta]
        run = {k: v for k, v in sims[0][2].items() if k.startswith("mibi.")}
        px = _pixel_size(tif, 0)
    log.debug("%s: MIBItiff, %d channels %s", p, len(names), tuple(level0.shape))
    return ImageData([level0], names, px, os.fspath(p), meta, {"platform": "MIBI", **run,
                     **({"pixel_size_source": "MIBItiff resolution tag"} if px else {})})


def _delayed_page(path: str, index: int):
    import dask

    def _read(path=path, index=index):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tif.pages[index].asarray()

    return dask.delayed(_read, pure=True)()


# --------------------------------------------------------------------------- FOV folders
def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _channel_files(folder: Path) -> list[Path]:
    d = folder / "TIFs" if (folder / "TIFs").is_dir() else folder
    files = [f for f in d.iterdir() if f.is_file() and f.name.lower().endswith(TIFF_SUFFIXES)
             and not f.name.startswith(".") and not f.name.lower().endswith((".ome.tif", ".ome.tiff"))]
    return sorted(files, key=lambda f: _natural_key(stem(f)))


_NOT_CHANNELS = re.compile(r"mask|whole_cell|nuclear|segment|label|deepcell|feature_\d", re.IGNORECASE)


def _is_fov(folder: Path) -> bool:
    """A folder of at least two single-plane TIFFs of one shape (one per channel), not of masks."""
    import tifffile

    if _NOT_CHANNELS.search(folder.name):
        return False
    try:
        files = _channel_files(folder)
    except OSError:
        return False
    if len(files) < 2 or sum(bool(_NOT_CHANNELS.search(f.name)) for f in files) > len(files) // 2:
        return False
    shapes = set()
    for f in files[:3] + files[-1:]:
        try:
            with tifffile.TiffFile(f) as tif:
                s = tif.series[0]
                if len(s.shape) != 2 or len(tif.series) != 1 and not all(len(x.shape) == 2 for x in tif.series):
                    return False
                shapes.add(tuple(s.shape))
        except Exception:  # noqa: BLE001 - a probe
            return False
    return len(shapes) == 1


def fov_folders(path) -> tuple[list[Path], Path] | None:
    """(FOV folders, project folder) when ``path`` is an ark/toffy FOV folder layout, else None.

    ``path`` may be a project (with ``image_data/``), a folder of FOV folders, or one FOV folder.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "image_data").is_dir():
        fovs = sorted((d for d in (p / "image_data").iterdir() if d.is_dir() and _is_fov(d)),
                      key=lambda d: _natural_key(d.name))
        return (fovs, p) if fovs else None
    if _is_fov(p):
        root = p.parent.parent if p.parent.name == "image_data" else p.parent
        return [p], root
    subs = sorted((d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: _natural_key(d.name))
    fovs = [d for d in subs if _is_fov(d)]
    if fovs and len(fovs) >= max(1, len([d for d in subs if d.name not in ("segmentation", "TIFs")]) // 2):
        root = p.parent if p.name == "image_data" else p
        return fovs, root
    return None


def is_fov_folder(path) -> bool:
    """True for an ark / toffy FOV folder layout (see :func:`fov_folders`)."""
    try:
        return fov_folders(path) is not None
    except OSError:
        return False


def _find_mask(root: Path, fov: str) -> Path | None:
    for sub in SEGMENTATION_DIRS:
        d = root / sub
        if not d.is_dir():
            continue
        for suf in MASK_SUFFIXES:
            for ext in (".tiff", ".tif"):
                f = d / f"{fov}{suf}{ext}"
                if f.is_file():
                    return f
    return None


def _find_table(root: Path) -> Path | None:
    for rel in CELL_TABLES:
        if (root / rel).is_file():
            return root / rel
    return None


def read_fov(folder: str | os.PathLike) -> ImageData:
    """One FOV folder (one TIFF per channel) as a lazy (C, Y, X) image named by file stems.

    Channel files may be MIBItiff pages (``channel.target`` / ``channel.mass`` kept as channel
    metadata) or plain TIFFs. Pixel size from the first file's resolution tags, else unknown.
    """
    import dask.array as da
    import tifffile

    d = require_exists(folder, "FOV folder")
    files = _channel_files(d)
    if not files:
        raise ReaderError("the FOV folder holds no channel TIFFs.", path=d)
    arrays, meta, px = [], [], None
    shape = None
    for i, f in enumerate(files):
        with wrap_errors(f, "channel TIFF", hint="Is it a complete TIFF? Extract the FOV again."), tifffile.TiffFile(f) as tif:
            s = tif.series[0]
            if len(s.shape) != 2:
                raise ReaderError(f"a channel TIFF of a FOV folder must be one 2-D plane; found shape {tuple(s.shape)}.",
                                  path=f)
            if shape is None:
                shape = tuple(s.shape)
            elif tuple(s.shape) != shape:
                raise ReaderError(f"channel TIFFs differ in shape ({tuple(s.shape)} vs {shape}).", path=f,
                                  hint="All channels of a FOV must have the same size.")
            arrays.append(_lazy(s, 0))
            desc = _description(tif.pages[0])
            entry = {"name": stem(f), "file": f.name}
            if desc and "channel.target" in desc:
                entry.update({k: v for k, v in _channel_entry(desc).items() if k != "name"})
                entry["target"] = desc.get("channel.target")
            meta.append(entry)
            if i == 0:
                px = _pixel_size(tif, 0)
    level0 = da.stack(arrays)
    return ImageData([level0], [m["name"] for m in meta], px, os.fspath(d), meta,
                     {"platform": "MIBI", **({"pixel_size_source": "TIFF resolution tag"} if px else {})})


def read_fov_folders(path: str | os.PathLike, *, check_ids: bool = True) -> list:
    """Read an ark / toffy FOV layout: one :class:`Sample` per FOV, with mask and table when present."""
    from ..model import Sample
    from .masks import read_mask
    from .tables import read_table

    p = require_exists(path, "FOV folder")
    found = fov_folders(p)
    if found is None:
        raise ReaderError("not a FOV folder layout (a folder per FOV with one TIFF per channel).", path=p)
    fovs, root = found
    table_path = _find_table(root)
    out = []
    for fov in fovs:
        data = read_fov(fov)
        s = Sample(name=fov.name, image=data.levels, channel_names=data.channel_names, pixel_size_um=data.pixel_size_um,
                   metadata={**(data.metadata or {}), "fov": fov.name, "channel_metadata": data.channel_metadata},
                   paths={"folder": os.fspath(root), "image": os.fspath(fov)})
        mask = _find_mask(root, fov.name)
        if mask is not None:
            s.labels = read_mask(mask, check_empty=False)
            s.paths["mask"] = os.fspath(mask)
            if table_path is not None:
                s.table = read_table(table_path, pixel_size_um=s.pixel_size_um, image=fov, mask=None,
                                     image_column="fov" if _has_column(table_path, "fov") else None,
                                     channel_names=s.channel_names, id_column="label" if _has_column(table_path, "label") else None)
                s.paths["table"] = os.fspath(table_path)
        out.append(s.validate(check_ids=check_ids))
    return out


def _has_column(csv: Path, col: str) -> bool:
    with open(csv, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\r\n").split(",")
    return col in [h.strip().strip('"') for h in header]
