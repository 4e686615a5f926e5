"""Cell tables: AnnData (.h5ad / .zarr) and CSV flavours, turned into one AnnData convention.

Output convention (see :mod:`napari_carspatial.model.conventions`): ``X`` = per-channel mean
intensity (float32), ``var_names`` = markers, ``obs`` holds the instance-id column declared in
``uns["spatialdata_attrs"]["instance_key"]`` (the source's own column name, e.g. ``Object``,
``CellID``, ``CellNb``), ``obsm["spatial"]`` = (x, y) level-0 pixel centroids.

CSV flavours (detected from the columns):

========== ================ ================================ =========================================
flavour    id column        centroid (x, y)                  markers
========== ================ ================================ =========================================
steinbock  ``Object``       ``centroid-1``, ``centroid-0``   every other numeric column
mcmicro    ``CellID``       ``X_centroid``, ``Y_centroid``   numeric columns before ``X_centroid``
cytomapper ``CellNb``       ``x_crop``/``y_crop`` or         ``counts_<marker>`` (``exprs_<marker>``
                            ``Pos_X``/``Pos_Y``              goes to ``layers["exprs"]``)
qupath     ``Cell ID`` /    ``Centroid X µm`` (µm, divided   ``Cell: <m>: Mean``, ``<m>: Cell: Mean``,
           ``Object ID``    by the pixel size) or ``... px`` ``Entire Cell <m> Mean (...)`` (inForm)
generic    ``id_column=``   ``x``/``y``, ``X``/``Y``, ...    every other numeric column
========== ================ ================================ =========================================

Multi-image tables (cytomapper ``cells.csv``, steinbock ``cells.csv`` / ``cells.h5ad``) are
filtered to one image with :func:`select_image_rows`: the first column of
:data:`IMAGE_COLUMNS` (or ``image_column=``) whose values, reduced to file stems, match the image
or mask file stem.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..model import SampleError, set_pixel_size_um
from ..model.conventions import REGION_KEY, SPATIAL_KEY
from ..model.sample import IMAGE_COLUMNS as _IMAGE_COLUMNS
from ._util import log, require_exists, wrap_errors
from .inform import inform_stem, prepare_inform, record_inform_field

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData

#: columns that name the image a row belongs to, in the order they are tried (one list, in model.sample)
IMAGE_COLUMNS = _IMAGE_COLUMNS
#: id columns tried in AnnData obs when no instance key is declared
ID_COLUMNS = ("Object", "ObjectNumber", "CellID", "CellNb", "cell_id", "label", "instance_id", "Cell ID", "Object ID")
#: (x, y, unit) centroid column pairs, first match wins
COORD_COLUMNS = (
    ("centroid-1", "centroid-0", "px"), ("X_centroid", "Y_centroid", "px"), ("x_crop", "y_crop", "px"),
    ("Pos_X", "Pos_Y", "px"), ("Centroid X px", "Centroid Y px", "px"),
    ("Centroid X µm", "Centroid Y µm", "um"), ("Centroid X um", "Centroid Y um", "um"),
    ("Cell: Centroid X µm", "Cell: Centroid Y µm", "um"),
    ("Cell X Position", "Cell Y Position", "px"), ("x", "y", "px"), ("X", "Y", "px"),
    ("centroid_x", "centroid_y", "px"), ("x_centroid", "y_centroid", "px"),
)
#: numeric columns that are never markers
MORPHOLOGY = {
    "area", "Area", "centroid-0", "centroid-1", "axis_major_length", "axis_minor_length", "eccentricity",
    "perimeter", "solidity", "extent", "orientation", "MajorAxisLength", "MinorAxisLength", "Eccentricity",
    "Solidity", "Extent", "Orientation", "Perimeter", "ImageNb", "ImageNumber", "ObjectNumber",
}
_QUPATH_MEAN = (re.compile(r"^Cell: (.+): Mean$"), re.compile(r"^(.+): Cell: Mean$"),
                re.compile(r"^Entire Cell (.+) Mean(?: \(.*\))?$"))
_QUPATH_IDS = ("Cell ID", "Object ID", "Cell Id", "Object Id", "CellID")


# --------------------------------------------------------------------------- public
def read_table(
    path: str | os.PathLike,
    *,
    id_column: str | None = None,
    pixel_size_um: float | None = None,
    image: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    image_column: str | None = None,
    channel_names: list[str] | None = None,
) -> AnnData:
    """Read a cell table (AnnData or CSV) into the project's AnnData convention.

    Parameters
    ----------
    path
        ``.h5ad``, AnnData ``.zarr`` or ``.csv`` / ``.tsv`` / ``.txt`` (see module docstring for
        the CSV flavours).
    id_column
        Column holding the mask label of each row; needed for generic CSVs.
    pixel_size_um
        µm per level-0 pixel: converts µm coordinates (QuPath) to pixels and is stored in ``uns``.
        Without it µm coordinates are kept in ``obsm["spatial_um"]`` only (warning logged) and the
        centroids are computed from the mask.
    image
        Image file this table should be restricted to (multi-image tables).
    mask
        Mask file this table should be restricted to (multi-image tables).
    image_column
        Column naming the image of each row (default: auto-detected from :data:`IMAGE_COLUMNS`).
    channel_names
        When all are columns of a CSV, they are the markers (in this order).

    Returns
    -------
    anndata.AnnData
        Rows = cells, ``obsm["spatial"]`` centroids in level-0 pixels, the mask link declared.

    Raises
    ------
    SampleError
        Unsupported format, no rows, no id column, or rows that do not match ``image``/``mask``.
    """
    p = require_exists(path, "cell table")
    low = os.fspath(p).lower().rstrip("/\\")
    if low.endswith((".h5ad", ".zarr")) or p.is_dir():
        import anndata as ad

        with wrap_errors(p, "AnnData table", hint="Is it a complete .h5ad / AnnData .zarr written by anndata?"):
            adata = ad.read_h5ad(p) if low.endswith(".h5ad") else ad.read_zarr(p)
        if adata.n_obs == 0:
            raise SampleError("the cell table has no rows (0 cells).", path=p,
                              hint="Is it the table of this sample, written after segmentation?")
        if image is not None or mask is not None:
            keep = select_image_rows(adata.obs, [image, mask], image_column=image_column, source=p)
            if keep is not None:
                adata = adata[keep].copy()
        adata = normalize_anndata(adata, id_column=id_column, pixel_size_um=pixel_size_um, source=p)
        # where it came from, so a save that forgets paths= still never replaces it (io.write)
        meta = dict(adata.uns.get("carspatial", {}) or {})
        meta["read_from"] = os.fspath(p.resolve())
        adata.uns["carspatial"] = meta
        return adata
    if not low.endswith((".csv", ".tsv", ".txt")):
        raise SampleError(f"unsupported table format {p.suffix!r}.", path=p,
                          hint="Supported: .h5ad, AnnData .zarr, .csv (steinbock, MCMICRO, QuPath, cytomapper).")
    sep = "," if low.endswith(".csv") else "\t"
    df = _read_csv(p, sep)
    if df.empty:
        raise SampleError("the cell table has no rows.", path=p)
    if image is not None or mask is not None:
        keep = select_image_rows(df, [image, mask], image_column=image_column, source=p)
        if keep is not None:
            df = df.loc[keep].reset_index(drop=True)
    df = prepare_inform(df, image=image, pixel_size_um=pixel_size_um, source=p)
    adata = table_from_dataframe(df, id_column=id_column, pixel_size_um=pixel_size_um,
                                 channel_names=channel_names, source=p)
    record_inform_field(adata, df)   # inForm: the field and where its µm per pixel came from
    return adata


def _read_csv(p, sep: str) -> pd.DataFrame:
    """``pd.read_csv`` with clear messages: empty file, another separator (``;`` from European
    spreadsheets), and Windows-1252 / Latin-1 text (QuPath on Windows writes ``µ`` that way)."""
    try:
        with wrap_errors(p, "CSV table"):
            try:
                df = pd.read_csv(p, sep=sep)
            except UnicodeDecodeError:
                df = pd.read_csv(p, sep=sep, encoding="cp1252", encoding_errors="replace")
                log.warning("%s: not UTF-8; read as Windows-1252 text", p)
    except SampleError as err:
        if "EmptyDataError" in str(err):
            raise SampleError("the cell table file is empty.", path=p) from None
        raise
    if len(df.columns) == 1:
        head = str(df.columns[0])
        other = next((c for c in (";", "\t", ",", "|") if c != sep and c in head), None)
        if other:
            name = {"\t": "tab", ";": "semicolon (;)", ",": "comma", "|": "pipe (|)"}[other]
            raise SampleError(f"the table is {name}-separated (header {head[:60]!r}), not "
                              f"{'comma' if sep == ',' else 'tab'}-separated.", path=p,
                              hint="Export it as CSV with commas (in Excel: 'CSV UTF-8'), or as .tsv for tabs. "
                                   "Decimal commas must become points.")
    return df


def _check_id_range(ids, column: str, source) -> None:
    """Refuse cell ids that cannot be mask labels in int64: >= 2**63 (uint64 masks) or negative."""
    v = np.asarray(ids)
    if v.dtype.kind == "u" and v.size and int(v.max()) > np.iinfo(np.int64).max:
        raise SampleError(f"cell ids in {column!r} reach {int(v.max())}, at or above 2^63; ids up to "
                          f"{np.iinfo(np.int64).max} are supported.", path=source,
                          hint="Relabel the segmentation (e.g. skimage.segmentation.relabel_sequential).")
    if v.dtype.kind == "f" and v.size and np.nanmax(v) >= 2.0**63:
        raise SampleError(f"cell ids in {column!r} reach {np.nanmax(v):.0f}, at or above 2^63 (not exact in "
                          "int64).", path=source, hint="Relabel the segmentation with smaller ids.")
    if v.size and v.dtype.kind in "iuf" and np.nanmin(v) < 0:
        bad = v[v < 0]
        raise SampleError(f"{bad.size} cell id(s) in {column!r} are negative (e.g. {bad[:3].tolist()}); mask "
                          "labels are 0 (background) or positive.", path=source)


def select_image_rows(df: pd.DataFrame, files: Iterable[str | os.PathLike | None], *, image_column: str | None = None, source: str | os.PathLike | None=None) -> np.ndarray | None:
    """Boolean row mask selecting the rows of ``df`` that belong to one of ``files``.

    Values of the image column and ``files`` are compared as file stems (``E34_imc.tiff`` ->
    ``E34_imc``). Returns ``None`` when the table has no image column (keep every row).

    Parameters
    ----------
    df
        The per-cell table.
    files
        Image / mask files of the sample (``None`` entries are ignored).
    image_column
        Column naming each row's image (default: the first of :data:`IMAGE_COLUMNS` present).
    source
        The table file, for messages.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask over the rows of ``df``, or ``None`` to keep every row.

    Raises
    ------
    SampleError
        The table names several images and none matches.
    """
    keys = {inform_stem(f) for f in files if f is not None}   # file stems; inForm suffixes dropped too
    cols = [image_column] if image_column else [c for c in IMAGE_COLUMNS if c in df.columns]
    if image_column and image_column not in df.columns:
        raise SampleError(f"image column {image_column!r} is not in the table.", path=source)
    examples = {}
    for col in cols:
        codes, uniq = pd.factorize(df[col].astype(str))  # stems of the distinct values only
        ustems = np.array([inform_stem(u) for u in uniq], dtype=object)
        keep = np.isin(ustems, list(keys))[codes] & (codes >= 0)
        vals = ustems
        if keep.any():
            log.debug("%s: %d of %d rows match %s via column %r", source, keep.sum(), len(df), sorted(keys), col)
            return keep
        examples[col] = vals
    if not cols:
        return None
    if all(len(v) <= 1 for v in examples.values()):
        log.warning("%s: image column(s) %s name %s, not %s; using all rows", source, list(examples),
                    [v[0] for v in examples.values() if len(v)], sorted(keys))
        return None
    shown = "; ".join(f"{c}: {', '.join(map(str, v[:4]))}{', ...' if len(v) > 4 else ''}" for c, v in examples.items())
    n_images = max(len(v) for v in examples.values())
    raise SampleError(
        f"no table row belongs to {', '.join(sorted(keys))}: the table holds rows of {n_images} images "
        f"(image columns hold {shown}).",
        path=source, hint="Name the image as the table does (file name without suffix), or pass image_column= "
                          "naming the column that matches the image file name.",
    )


def table_from_dataframe(
    df: pd.DataFrame,
    *,
    id_column: str | None = None,
    pixel_size_um: float | None = None,
    channel_names: list[str] | None = None,
    source: str | os.PathLike | None=None,
) -> AnnData:
    """Turn a per-cell DataFrame (any supported CSV flavour) into AnnData; see :func:`read_table`.

    Parameters
    ----------
    df
        One row per cell (steinbock, MCMICRO, QuPath, inForm or generic columns).
    id_column
        Column holding the mask label of each row; needed for generic tables.
    pixel_size_um
        µm per level-0 pixel (converts µm coordinates to pixels; stored in ``uns``).
    channel_names
        When all are columns of ``df``, they are the markers (in this order).
    source
        The file ``df`` came from, for messages.

    Returns
    -------
    anndata.AnnData
        The table in the project's convention (as :func:`read_table` returns it).

    Raises
    ------
    SampleError
        No id column, ids that cannot be mask labels, or no marker columns.
    """
    import anndata as ad

    cols = list(df.columns)
    idcol = id_column or _detect_id(cols)
    if idcol is None or idcol not in df.columns:
        raise SampleError(
            f"cannot tell which column holds the cell (mask label) ids; columns: {', '.join(map(str, cols[:12]))}"
            f"{', ...' if len(cols) > 12 else ''}.",
            path=source, hint="Pass id_column='<name>' (the column whose values equal the mask labels).",
        )
    obs = df.copy()
    ids = pd.to_numeric(obs[idcol], errors="coerce")
    if ids.notna().all():
        _check_id_range(ids.to_numpy(), idcol, source)
    if ids.isna().any() or not np.array_equal(ids.to_numpy(), np.round(ids.to_numpy())):
        log.warning("%s: id column %r is not integer (e.g. %s); numbering rows 1..n as 'instance_id'",
                    source, idcol, obs[idcol].iloc[0])
        obs["instance_id"] = np.arange(1, len(obs) + 1, dtype=np.int64)
        idcol = "instance_id"
    else:
        obs[idcol] = ids.to_numpy(np.int64)

    markers, X, layers = _markers(obs, idcol, channel_names, source)
    xy, unit, used = _coords(obs)
    obs = obs.drop(columns=[c for c in used_marker_columns(obs, markers) if c in obs.columns])
    idx = obs[idcol].astype(str)
    # an unnamed string index: named after the id column it would clash with that column when written
    obs.index = (pd.Index(idx.to_numpy(), dtype=str) if idx.is_unique else
                 pd.Index(pd.Series(idx.to_numpy()) + "_" + pd.Series(np.arange(len(idx))).astype(str), dtype=str))
    obs.columns = [str(c) for c in obs.columns]
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(markers, dtype=str)), layers=layers)
    _store_coords(adata, xy, unit, pixel_size_um, source)
    adata.uns["spatialdata_attrs"] = {"instance_key": idcol, "region_key": REGION_KEY}
    if pixel_size_um is not None:
        set_pixel_size_um(adata, pixel_size_um)
    return adata


def normalize_anndata(adata, *, id_column: str | None = None, pixel_size_um: float | None = None, source=None):
    """Make a foreign AnnData follow our convention (instance key, ``obsm["spatial"]``, pixel size)."""
    attrs = dict(adata.uns.get("spatialdata_attrs", {}) or {})
    key = id_column or attrs.get("instance_key")
    if key is None or key not in adata.obs:
        key = next((c for c in ID_COLUMNS if c in adata.obs and _is_integral(adata.obs[c])), None)
    if key is None:
        m = adata.obs_names.to_series().str.extract(r"^\D*?(\d+)", expand=False)
        if m.notna().all():
            key = "instance_id" if "instance_id" not in adata.obs else "instance_id_"
            adata.obs[key] = m.astype(np.int64).to_numpy()
            log.info("%s: instance ids parsed from obs names (e.g. %r)", source, adata.obs_names[0])
    if key is None:
        raise SampleError(
            "the AnnData table has no instance-id column linking rows to mask labels.", path=source,
            hint="Pass id_column=, or declare uns['spatialdata_attrs']['instance_key'].",
        )
    attrs["instance_key"] = key
    attrs.setdefault("region_key", REGION_KEY)
    adata.uns["spatialdata_attrs"] = attrs
    if pd.api.types.is_numeric_dtype(adata.obs[key]):
        _check_id_range(adata.obs[key].to_numpy(), key, source)
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()].unique()
        ids = adata.obs[key].astype(str)
        if ids.is_unique:
            log.warning("%s: %d row name(s) (obs_names) repeat, e.g. %r; rows renamed by their cell id in memory "
                        "(the file is unchanged)", source, len(dup), dup[0])
            adata.obs_names = pd.Index(ids.to_numpy(), dtype=str)
        else:
            raise SampleError(f"{len(dup)} row name(s) repeat (e.g. {dup[0]!r}) and so do the cell ids in {key!r}: "
                              "is this a table of several images?", path=source,
                              hint="Pass image= (or image_column=) to keep one image's rows.")
    if SPATIAL_KEY not in adata.obsm:
        xy, unit, _ = _coords(adata.obs)
        _store_coords(adata, xy, unit, pixel_size_um, source)
    if pixel_size_um is not None:
        set_pixel_size_um(adata, pixel_size_um)
    return adata


# --------------------------------------------------------------------------- helpers
def _is_integral(s: pd.Series) -> bool:
    v = pd.to_numeric(s, errors="coerce")
    return bool(v.notna().all() and np.array_equal(v.to_numpy(), np.round(v.to_numpy())))


def _detect_id(cols) -> str | None:
    for c in ("Object", "CellID", "CellNb", "ObjectNumber", *_QUPATH_IDS, "cell_id", "label", "instance_id"):
        if c in cols:
            return c
    return None


def _markers(obs: pd.DataFrame, idcol: str, channel_names, source):
    cols = [c for c in obs.columns if c != idcol]
    layers = {}
    counts = [c for c in cols if str(c).startswith("counts_")]
    if counts:  # cytomapper / SingleCellExperiment export
        names = [c[len("counts_"):] for c in counts]
        X = obs[counts].to_numpy(np.float32)
        exprs = [f"exprs_{n}" for n in names]
        if all(e in obs.columns for e in exprs):
            layers["exprs"] = obs[exprs].to_numpy(np.float32)
        return names, X, layers
    for rx in _QUPATH_MEAN:
        hits = [(c, rx.match(str(c))) for c in cols]
        hits = [(c, m.group(1)) for c, m in hits if m]
        if hits:
            return [n for _, n in hits], obs[[c for c, _ in hits]].to_numpy(np.float32), layers
    if channel_names and all(n in obs.columns for n in channel_names):
        return list(channel_names), obs[list(channel_names)].to_numpy(np.float32), layers
    coord_cols = {c for x, y, _ in COORD_COLUMNS for c in (x, y)}
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(obs[c]) and not pd.api.types.is_bool_dtype(obs[c])
               and c not in MORPHOLOGY and c not in coord_cols and c not in IMAGE_COLUMNS]
    if "X_centroid" in obs.columns:  # MCMICRO: markers come before the morphology block
        before = set(cols[: cols.index("X_centroid")])
        numeric = [c for c in numeric if c in before]
    if not numeric:
        log.warning("%s: no marker columns found; the table has no intensities", source)
    return [str(c) for c in numeric], obs[numeric].to_numpy(np.float32).reshape(len(obs), len(numeric)), layers


def used_marker_columns(obs: pd.DataFrame, markers) -> list:
    """The obs columns that became ``X`` (removed from obs to avoid duplicating data)."""
    out = []
    for c in obs.columns:
        s = str(c)
        if s in markers or s.startswith(("counts_", "exprs_")) or any(rx.match(s) for rx in _QUPATH_MEAN):
            out.append(c)
    return out


def _coords(obs: pd.DataFrame):
    for x, y, unit in COORD_COLUMNS:
        if x in obs.columns and y in obs.columns:
            xy = np.column_stack([pd.to_numeric(obs[x], errors="coerce"), pd.to_numeric(obs[y], errors="coerce")])
            return xy.astype(float), unit, (x, y)
    return None, None, ()


def _store_coords(adata, xy, unit, pixel_size_um, source) -> None:
    if xy is None:
        return
    if unit == "um":
        adata.obsm["spatial_um"] = xy
        if pixel_size_um is None:
            log.warning("%s: centroids are in µm and the pixel size is unknown; pixel centroids will be computed "
                        "from the mask (pass pixel_size_um= to use the table's)", source)
            return
        xy = xy / float(pixel_size_um)
    adata.obsm[SPATIAL_KEY] = xy
