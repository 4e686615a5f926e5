"""Build :class:`~napari_carspatial.model.points.Transcripts` from platform tables, out of core.

A platform's transcript table (Xenium ``transcripts.parquet``, CosMx ``*_tx_file.csv``, a
SpatialData points element, ...) arrives as chunks (pandas DataFrames). Two passes turn it into
bin-sorted columns without holding the table in memory:

1. count the rows per spatial bin (and collect the genes when they are not known up front);
2. scatter every chunk's rows to their place (a counting sort), into in-memory arrays for small
   tables or memory-mapped ``.npy`` files in the cache folder for large ones.

Memory: one chunk plus the bin counts; the output columns are ~22 bytes per transcript (on disk
for large tables, paged in only where a query reads). The cache is
``$CARSPATIAL_CACHE_DIR/transcripts`` (else ``$XDG_CACHE_HOME/napari-carspatial/transcripts``),
keyed by the source file's size and modification time and the conversion parameters, and
reused while valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import ReaderError
from ..model.points import Transcripts, bin_gene_count_matrix, bin_index, grid_for

log = logging.getLogger(__name__)

#: tables up to this many rows are sorted in memory; larger ones go to memory-mapped files
IN_MEMORY_MAX_ROWS = 2_000_000
#: default bin size (level-0 pixels) of the spatial index and of the finest density level
DEFAULT_BIN_PX = 64.0
_VERSION = 1


@dataclass
class ColumnSpec:
    """Which source columns hold what, and how positions map to level-0 pixels.

    Attributes
    ----------
    x
        Position columns (platform units).
    y
        Position columns (platform units).
    gene
        Gene / target name column.
    cell_id
        Column with the platform's cell of each molecule, or ``None``.
    quality
        Per-molecule quality column (Xenium ``qv``), or ``None``.
    affine
        3 x 3 matrix mapping ``(x, y, 1)`` in source units to level-0 pixel ``(x, y, 1)``
        (pixel centres at integers).
    cell_map
        Maps the platform's cell ids (any dtype) to mask labels (int); unmapped ids become 0.
        ``None``: the cell ids are already integer labels.
    extra
        ``{our_name: source_column}`` of further columns to keep (numeric or categorical).
    """

    x: str
    y: str
    gene: str
    cell_id: str | None = None
    quality: str | None = None
    affine: np.ndarray | None = None
    cell_map: Mapping | pd.Series | None = None
    extra: Mapping[str, str] | None = None

    def columns(self) -> list[str]:
        cols = [self.x, self.y, self.gene, self.cell_id, self.quality, *((self.extra or {}).values())]
        return list(dict.fromkeys(c for c in cols if c is not None))


def cache_root() -> Path:
    env = os.environ.get("CARSPATIAL_CACHE_DIR")
    if env:
        return Path(env) / "transcripts"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-carspatial" / "transcripts"


def _positions(df: pd.DataFrame, spec: ColumnSpec) -> tuple[np.ndarray, np.ndarray]:
    x = pd.to_numeric(df[spec.x], errors="coerce").to_numpy(np.float64)
    y = pd.to_numeric(df[spec.y], errors="coerce").to_numpy(np.float64)
    if spec.affine is not None:
        a = np.asarray(spec.affine, np.float64)
        x, y = a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]
    return x, y


def _gene_strings(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if len(s) and isinstance(s.iloc[0], bytes):
        s = s.str.decode("utf-8")
    return s.astype(str)


def _cell_labels(df: pd.DataFrame, spec: ColumnSpec) -> np.ndarray:
    n = len(df)
    if spec.cell_id is None:
        return np.zeros(n, np.int64)
    s = df[spec.cell_id]
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if spec.cell_map is None:
        return pd.to_numeric(s, errors="coerce").fillna(0).to_numpy(np.int64)
    if len(s) and isinstance(s.iloc[0], bytes):
        s = s.str.decode("utf-8")
    m = spec.cell_map if isinstance(spec.cell_map, pd.Series) else pd.Series(dict(spec.cell_map))
    return s.astype(str).map(m).fillna(0).to_numpy(np.int64)


def build_transcripts(
    chunks: Callable[[], Iterator[pd.DataFrame]],
    spec: ColumnSpec,
    *,
    shape_yx: tuple[int, int] | None = None,
    genes: Sequence[str] | None = None,
    bin_px: float = DEFAULT_BIN_PX,
    quality_name: str | None = None,
    source: str | os.PathLike | None = None,
    cache_key: str | None = None,
    in_memory_max_rows: int = IN_MEMORY_MAX_ROWS,
    metadata: dict | None = None,
) -> Transcripts:
    """Bin-sort a chunked transcript table into :class:`Transcripts` (two passes over ``chunks``).

    Parameters
    ----------
    chunks
        Called once per pass; returns an iterator of pandas DataFrames (the table's pieces, in
        a fixed order).
    spec
        Column names and the affine to level-0 pixels.
    shape_yx
        Image size in level-0 pixels (the bin grid covers it and every point).
    genes
        Gene names in code order (e.g. the table's ``var_names``); genes found in the table but
        not listed are appended (sorted). ``None``: the genes found, sorted.
    bin_px
        Bin side in level-0 pixels.
    quality_name
        Name of the quality value (``"qv"``); ``None`` when ``spec.quality`` is ``None``.
    source
        The file (for messages and the cache key).
    cache_key
        Identity of the source content (e.g. size and mtime); with ``source`` it names the cache
        folder of large tables. ``None``: :func:`source_key` of ``source``.
    in_memory_max_rows
        Tables up to this size are sorted in memory.
    metadata
        Extra metadata stored with the transcripts (platform, units).

    Returns
    -------
    Transcripts

    Raises
    ------
    ReaderError
        Missing or non-numeric coordinates, genes not in ``genes``, or a table that changed while
        it was read.
    """
    src = None if source is None else os.fspath(source)
    key = cache_key if cache_key is not None else source_key(source)
    digest = None
    if key is not None:  # an index built before from the same content and parameters: no pass at all
        digest = hashlib.sha1(json.dumps([src, key, spec.columns(), _affine_list(spec.affine), float(bin_px),
                                          list(shape_yx) if shape_yx else None, list(genes) if genes is not None else None,
                                          _VERSION], default=str).encode()).hexdigest()[:20]
        cached = _open_cached(cache_root() / digest, None)
        if cached is not None:
            log.info("%s: transcript index reused from %s", src, cache_root() / digest)
            return cached
    # ---- pass 1: number of rows, grid extent, genes
    n = 0
    ymax = xmax = -np.inf
    gene_set: set[str] = set()
    for df in chunks():
        if not len(df):
            continue
        x, y = _positions(df, spec)
        bad = ~(np.isfinite(x) & np.isfinite(y))
        if bad.any():
            raise ReaderError(f"{int(bad.sum())} transcripts have missing or non-numeric coordinates "
                              f"({spec.x!r}, {spec.y!r}).", path=src)
        n += len(df)
        xmax, ymax = max(xmax, float(x.max())), max(ymax, float(y.max()))
        gene_set.update(_gene_strings(df[spec.gene]).unique().tolist())
    gene_list = [str(g) for g in genes] if genes is not None else []
    gene_list += sorted(gene_set - set(gene_list))
    h = max(float(shape_yx[0]) if shape_yx else 0.0, ymax + 1.0 if n else 0.0)
    w = max(float(shape_yx[1]) if shape_yx else 0.0, xmax + 1.0 if n else 0.0)
    ny, nx = grid_for((h, w), [], [], bin_px)
    gene_dtype = np.int16 if len(gene_list) < 2**15 else np.int32
    extra = dict(spec.extra or {})
    if quality_name is None and spec.quality is not None:
        quality_name = spec.quality
    meta = {"version": _VERSION, "n": n, "genes": gene_list, "bin_px": float(bin_px), "bins_shape": [ny, nx],
            "quality_name": quality_name, "source": src, "metadata": metadata or {}}

    folder = None
    if n > in_memory_max_rows:
        if digest is None:  # no identity for the source: a folder of this run only
            digest = hashlib.sha1(f"{src}|{os.getpid()}|{id(chunks)}".encode()).hexdigest()[:20]
        folder = cache_root() / digest
    # ---- pass 1b: bin counts (needs the grid, so after the extent is known)
    counts = np.zeros(ny * nx, np.int64)
    for df in chunks():
        if len(df):
            x, y = _positions(df, spec)
            counts += np.bincount(bin_index(y, x, bin_px, (ny, nx)), minlength=ny * nx)
    offsets = np.zeros(ny * nx + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    dtypes = {"x": np.float32, "y": np.float32, "gene": gene_dtype, "cell_id": np.int64, "quality": np.float32}
    extra_codes: dict[str, list] = {}
    if folder is not None:
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    out: dict[str, np.ndarray] = {}

    def alloc(name, dtype):
        if folder is None:
            return np.empty(n, dtype)
        return np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=(n,))

    for k, dt in dtypes.items():
        out[k] = alloc(k, dt)
    cursor = offsets[:-1].copy()
    gene_index = pd.Index(gene_list)
    # ---- pass 2: scatter
    for df in chunks():
        if not len(df):
            continue
        x, y = _positions(df, spec)
        bins = bin_index(y, x, bin_px, (ny, nx))
        order = np.argsort(bins, kind="stable")
        sb = bins[order]
        first = np.r_[0, np.flatnonzero(np.diff(sb)) + 1]
        run = np.repeat(first, np.diff(np.r_[first, sb.size]))
        dest = cursor[sb] + (np.arange(sb.size) - run)
        cursor += np.bincount(bins, minlength=ny * nx)
        codes = gene_index.get_indexer(_gene_strings(df[spec.gene]))
        if (codes < 0).any():
            miss = _gene_strings(df[spec.gene])[codes < 0].unique()[:5]
            raise ReaderError(f"transcripts of genes not in the gene list, e.g. {list(miss)}.", path=src)
        q = (pd.to_numeric(df[spec.quality], errors="coerce").to_numpy(np.float32) if spec.quality
             else np.full(len(df), np.nan, np.float32))
        vals = {"x": x.astype(np.float32), "y": y.astype(np.float32), "gene": codes.astype(gene_dtype),
                "cell_id": _cell_labels(df, spec), "quality": q}
        for name, col in extra.items():
            s = df[col]
            if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
                v = s.to_numpy()
            else:  # strings / categories -> int16 codes; the names go into the metadata
                cats = extra_codes.setdefault(name, [])
                strs = s.astype(object).where(s.notna(), "").astype(str)
                for u in pd.unique(strs):
                    if u not in cats:
                        cats.append(u)
                v = pd.Index(cats).get_indexer(strs).astype(np.int16)
            if name not in out:
                out[name] = alloc(name, v.dtype)
            vals[name] = v
        for name, v in vals.items():
            out[name][dest] = v[order]
    if not np.array_equal(cursor, offsets[1:]):  # the chunks changed between passes
        raise ReaderError("the transcript table changed while it was read; try again.", path=src)
    meta["extra_categories"] = extra_codes
    bgc = bin_gene_count_matrix(out["gene"], offsets, len(gene_list))
    if folder is not None:
        for v in out.values():
            v.flush()
        np.save(tmp / "offsets.npy", offsets)
        import scipy.sparse as sp

        sp.save_npz(tmp / "bin_gene_counts.npz", bgc)
        (tmp / "meta.json").write_text(json.dumps({**meta, "columns": list(out)}))
        del out
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        log.info("%s: %d transcripts indexed into %s", src, n, folder)
        cached = _open_cached(folder, meta)
        if cached is None:  # pragma: no cover - we just wrote it
            raise ReaderError("the transcript index could not be reopened.", path=folder)
        return cached
    md = {**(metadata or {}), "extra_categories": extra_codes}
    return Transcripts(columns=out, genes=gene_list, bin_px=float(bin_px), bins_shape=(ny, nx), offsets=offsets,
                       bin_gene_counts=bgc, source=src, quality_name=quality_name, metadata=md)


def _affine_list(a):
    return None if a is None else np.round(np.asarray(a, float), 12).tolist()


def source_key(source) -> list | None:
    """(size, mtime_ns) of a file, or of every file of a folder; ``None`` without a source."""
    if source is None:
        return None
    p = Path(source)
    if not p.exists():
        return None
    if p.is_file():
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    out = []
    for q in sorted(p.rglob("*")):
        if q.is_file():
            st = q.stat()
            out.append([str(q.relative_to(p)), st.st_size, st.st_mtime_ns])
    return out


def _open_cached(folder: Path, meta: dict) -> Transcripts | None:
    mfile = folder / "meta.json"
    if not mfile.is_file():
        return None
    try:
        saved = json.loads(mfile.read_text())
        if saved.get("version") != _VERSION:
            return None
        if meta is not None and any(saved.get(k) != meta[k] for k in ("n", "genes", "bin_px", "bins_shape")):
            return None
        cols = {c: np.load(folder / f"{c}.npy", mmap_mode="r") for c in saved["columns"]}
        offsets = np.load(folder / "offsets.npy")
        import scipy.sparse as sp

        bgc = sp.load_npz(folder / "bin_gene_counts.npz").tocsc()
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    md = {**(saved.get("metadata") or {}), "extra_categories": saved.get("extra_categories", {}), "cache": str(folder)}
    return Transcripts(columns=cols, genes=saved["genes"], bin_px=float(saved["bin_px"]),
                       bins_shape=tuple(saved["bins_shape"]), offsets=offsets, bin_gene_counts=bgc,
                       source=saved.get("source"), quality_name=saved.get("quality_name"), metadata=md)


# --------------------------------------------------------------------------- chunk sources
def frame_chunks(df: pd.DataFrame, rows: int = 1_000_000) -> Callable[[], Iterator[pd.DataFrame]]:
    """Chunks of an in-memory DataFrame."""
    def gen():
        for a in range(0, max(len(df), 1), rows):
            yield df.iloc[a:a + rows]
    return gen


def dask_chunks(ddf, columns: Iterable[str] | None = None) -> Callable[[], Iterator[pd.DataFrame]]:
    """Partitions of a dask DataFrame (e.g. a SpatialData points element), computed one at a time."""
    cols = None if columns is None else list(columns)

    def gen():
        d = ddf if cols is None else ddf[cols]
        for i in range(d.npartitions):
            yield d.get_partition(i).compute()
    return gen


def parquet_chunks(path: str | os.PathLike, columns: Iterable[str], rows: int = 1_000_000) -> Callable[[], Iterator[pd.DataFrame]]:
    """Record batches of a parquet file (pyarrow), as DataFrames."""
    import pyarrow.parquet as pq

    cols = list(columns)

    def gen():
        f = pq.ParquetFile(os.fspath(path))
        for batch in f.iter_batches(batch_size=rows, columns=cols):
            yield batch.to_pandas()
    return gen


def csv_chunks(path: str | os.PathLike, columns: Iterable[str], rows: int = 1_000_000) -> Callable[[], Iterator[pd.DataFrame]]:
    """Pieces of a CSV file (pandas, ``chunksize``)."""
    cols = list(columns)

    def gen():
        yield from pd.read_csv(os.fspath(path), usecols=cols, chunksize=rows)
    return gen
