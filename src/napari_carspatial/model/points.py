"""Transcripts (``Sample.points``): a lazy, spatially binned table of detected molecules.

One row per transcript with ``x``, ``y`` in level-0 pixels (the same frame as the image, the mask
and ``obsm["spatial"]``; pixel centres at integers, as in napari), ``gene`` (integer codes into
:attr:`Transcripts.genes`), ``cell_id`` (the mask label of the cell the platform assigned it to,
0 = outside any cell) and ``quality`` (the platform's per-molecule quality, e.g. Xenium ``qv``;
NaN where the platform has none). Further per-platform columns (``z``, ``compartment``, ...) may
follow.

Rows are sorted by spatial bin (square bins of :attr:`Transcripts.bin_px` level-0 pixels, row
major), and ``offsets[b]:offsets[b + 1]`` are the rows of bin ``b``. So a query for a view box
reads only the rows of the bins it overlaps, and :meth:`Transcripts.density` is a sum over a
(bins x genes) sparse count matrix. Columns are any array that slices to numpy: in-memory
arrays for small tables, memory-mapped ``.npy`` files for large ones (see
``napari_carspatial.io.transcripts``, which builds them). Nothing here reads all rows unless asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SampleError

log = logging.getLogger(__name__)

#: the columns every transcript table has
CORE_COLUMNS = ("x", "y", "gene", "cell_id", "quality")
#: coarsest density level keeps at most this many bins per side
DENSITY_MIN_SIDE = 256


@dataclass
class Transcripts:
    """Lazy transcript table in level-0 pixels, sorted by spatial bin.

    Attributes
    ----------
    columns
        ``{"x", "y", "gene", "cell_id", "quality", ...}``: equal-length 1-D arrays (numpy or
        memory-mapped), rows sorted by bin.
    genes
        Gene (target) names; ``columns["gene"]`` holds codes into this list.
    bin_px
        Side of a spatial bin in level-0 pixels.
    bins_shape
        ``(n_bin_rows, n_bin_cols)``; bin ``b = row * n_bin_cols + col`` covers
        ``y in [row * bin_px, (row + 1) * bin_px)`` (pixel-centre coordinates shifted by 0.5:
        see :meth:`bin_of`).
    offsets
        ``n_bins + 1`` row offsets (int64).
    bin_gene_counts
        ``scipy.sparse.csc_matrix`` (n_bins x n_genes) of counts, or ``None`` (then computed on
        first use).
    source
        Where the rows came from (file), for messages.
    quality_name
        What ``quality`` means on this platform (``"qv"`` for Xenium), or ``None`` when the
        platform has no per-molecule quality (the column is all NaN).
    metadata
        Free-form (platform, unit conversions used, ...).
    """

    columns: dict[str, Any]
    genes: list[str]
    bin_px: float
    bins_shape: tuple[int, int]
    offsets: np.ndarray
    bin_gene_counts: Any = None
    source: str | None = None
    quality_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in CORE_COLUMNS if c not in self.columns]
        if missing:
            raise SampleError(f"the transcript table lacks column(s) {', '.join(missing)}.", path=self.source)
        n = len(self.columns["x"])
        bad = {k: len(v) for k, v in self.columns.items() if len(v) != n}
        if bad:
            raise SampleError(f"transcript columns differ in length (x: {n}, {bad}).", path=self.source)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        ny, nx = (int(s) for s in self.bins_shape)
        self.bins_shape = (ny, nx)
        if self.offsets.shape != (ny * nx + 1,) or self.offsets[0] != 0 or self.offsets[-1] != n:
            raise SampleError(f"transcript bin offsets do not cover the {n} rows.", path=self.source)
        if not (np.isfinite(self.bin_px) and self.bin_px > 0):
            raise SampleError(f"transcript bin size {self.bin_px!r} px is not positive.", path=self.source)
        self.genes = [str(g) for g in self.genes]

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def extent_yx(self) -> tuple[float, float]:
        """(height, width) in level-0 pixels covered by the bins."""
        return self.bins_shape[0] * self.bin_px, self.bins_shape[1] * self.bin_px

    def gene_codes(self, genes: str | Iterable[str] | None) -> np.ndarray | None:
        """Codes of ``genes`` (``None`` = all genes). Unknown names raise ``KeyError`` listing some known ones."""
        if genes is None:
            return None
        if isinstance(genes, str):
            genes = [genes]
        index = {g: i for i, g in enumerate(self.genes)}
        codes, unknown = [], []
        for g in genes:
            if g in index:
                codes.append(index[g])
            else:
                unknown.append(g)
        if unknown:
            raise KeyError(f"no gene {', '.join(map(repr, unknown[:5]))} in the transcripts; genes: "
                           f"{', '.join(self.genes[:20])}{' ...' if self.n_genes > 20 else ''}")
        return np.asarray(sorted(set(codes)), dtype=np.int64)

    def bin_of(self, y, x) -> np.ndarray:
        """Bin index of level-0 positions (clipped into the grid)."""
        return bin_index(y, x, self.bin_px, self.bins_shape)

    # ------------------------------------------------------------------ queries
    def _ranges(self, bbox) -> list[tuple[int, int]]:
        """Row ranges of the bins overlapping ``bbox = (y0, x0, y1, x1)``, adjacent ranges merged."""
        ny, nx = self.bins_shape
        if bbox is None:
            return [(0, len(self))]
        y0, x0, y1, x1 = (float(v) for v in bbox)
        if y1 < y0 or x1 < x0:
            return []
        r0, c0 = (int(np.floor((v + 0.5) / self.bin_px)) for v in (y0, x0))
        r1, c1 = (int(np.floor((v + 0.5) / self.bin_px)) for v in (y1, x1))
        r0, r1 = max(r0, 0), min(r1, ny - 1)
        c0, c1 = max(c0, 0), min(c1, nx - 1)
        if r0 > r1 or c0 > c1:
            return []
        rows = np.arange(r0, r1 + 1)
        starts = self.offsets[rows * nx + c0]
        stops = self.offsets[rows * nx + c1 + 1]
        out: list[tuple[int, int]] = []
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            if b <= a:
                continue
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return out

    def _read(self, name: str, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
        col = self.columns[name]
        if not ranges:
            return np.asarray(col[0:0])
        parts = [np.asarray(col[a:b]) for a, b in ranges]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def query(
        self,
        *,
        bbox: Sequence[float] | None = None,
        genes: str | Iterable[str] | None = None,
        min_quality: float | None = None,
        columns: Sequence[str] = ("x", "y", "gene"),
        max_points: int | None = None,
        seed: int = 0,
    ) -> dict[str, np.ndarray]:
        """Transcripts in a view box, of some genes, with quality at least ``min_quality``.

        Reads only the rows of the bins that overlap ``bbox``.

        Parameters
        ----------
        bbox
            ``(y0, x0, y1, x1)`` in level-0 pixels (inclusive), ``None`` = everywhere.
        genes
            Gene names (``None`` = all).
        min_quality
            Keep rows with ``quality >= min_quality``. On a platform without a quality value
            (all NaN) a threshold keeps nothing, so it raises ``ValueError`` instead.
        columns
            Columns to return (``gene`` as codes; see :meth:`gene_names`).
        max_points
            Keep a uniform random subset of at most this many rows (display budgets).
        seed
            Seed of that subset.

        Returns
        -------
        dict of numpy arrays
            One array per requested column, equal length.
        """
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise KeyError(f"no transcript column {unknown}; columns: {', '.join(self.columns)}")
        if min_quality is not None and self.quality_name is None:
            raise ValueError("these transcripts carry no quality value; a quality threshold would drop every one.")
        ranges = self._ranges(bbox)
        need = list(dict.fromkeys(["x", "y", *columns] if bbox is not None else list(columns)))
        codes = self.gene_codes(genes)
        data = {c: self._read(c, ranges) for c in need}
        keep = None
        if bbox is not None:
            y0, x0, y1, x1 = (float(v) for v in bbox)
            x, y = data["x"], data["y"]
            keep = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        if codes is not None:
            g = data["gene"] if "gene" in data else self._read("gene", ranges)
            m = np.isin(g, codes) if codes.size > 1 else (g == codes[0]) if codes.size else np.zeros(g.shape, bool)
            keep = m if keep is None else keep & m
        if min_quality is not None:
            q = data["quality"] if "quality" in data else self._read("quality", ranges)
            with np.errstate(invalid="ignore"):
                m = q >= float(min_quality)
            keep = m if keep is None else keep & m
        out = {c: data[c] if keep is None else data[c][keep] for c in columns}
        n = len(next(iter(out.values()))) if out else 0
        if max_points is not None and n > max_points:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))
            out = {c: v[idx] for c, v in out.items()}
        return out

    def gene_names(self, codes) -> np.ndarray:
        """Names of gene ``codes`` (object array)."""
        return np.asarray(self.genes, dtype=object)[np.asarray(codes, dtype=np.int64)]

    def to_pandas(self, *, bbox=None, genes=None, min_quality=None):
        """A DataFrame of the selected rows (every column; ``gene`` categorical). Small selections only."""
        import pandas as pd

        cols = list(self.columns)
        d = self.query(bbox=bbox, genes=genes, min_quality=min_quality, columns=cols)
        d["gene"] = pd.Categorical.from_codes(d["gene"].astype(np.int64), categories=self.genes)
        return pd.DataFrame(d)

    # ------------------------------------------------------------------ counts and density
    def _bin_gene_counts(self):
        """The (bins x genes) counts as CSC (gene columns are what density sums select)."""
        if self.bin_gene_counts is None:
            self.bin_gene_counts = bin_gene_count_matrix(self.columns["gene"], self.offsets, self.n_genes)
        if getattr(self.bin_gene_counts, "format", "csc") != "csc":
            self.bin_gene_counts = self.bin_gene_counts.tocsc()
        return self.bin_gene_counts

    def gene_counts(self) -> dict[str, int]:
        """Number of transcripts of every gene (from the bin counts, no row is read)."""
        tot = np.asarray(self._bin_gene_counts().sum(axis=0)).ravel()
        return {g: int(c) for g, c in zip(self.genes, tot, strict=True)}

    def density(self, *, genes: str | Iterable[str] | None = None, min_quality: float | None = None,
                chunk_rows: int = 2_000_000) -> np.ndarray:
        """Transcripts per bin as a ``bins_shape`` float32 image (level-0 bin size :attr:`bin_px`).

        Without ``min_quality`` this sums columns of the (bins x genes) count matrix and reads
        no row; with it, the gene and quality columns are streamed ``chunk_rows`` at a time.
        Place the image in level-0 pixels with :meth:`density_transform`.
        """
        ny, nx = self.bins_shape
        codes = self.gene_codes(genes)
        if min_quality is None:
            if codes is None:
                return np.diff(self.offsets).astype(np.float32).reshape(ny, nx)  # rows per bin: no matrix needed
            m = self._bin_gene_counts()
            v = np.asarray(m[:, codes].sum(axis=1)).ravel()
            return v.astype(np.float32).reshape(ny, nx)
        if self.quality_name is None:
            raise ValueError("these transcripts carry no quality value; a quality threshold would drop every one.")
        n = len(self)
        out = np.zeros(ny * nx, dtype=np.int64)
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            q = np.asarray(self.columns["quality"][a:b])
            with np.errstate(invalid="ignore"):
                keep = q >= float(min_quality)
            if codes is not None:
                keep &= np.isin(np.asarray(self.columns["gene"][a:b]), codes)
            rows = np.flatnonzero(keep) + a
            bins = np.searchsorted(self.offsets, rows, side="right") - 1
            out += np.bincount(bins, minlength=ny * nx)
        return out.astype(np.float32).reshape(ny, nx)

    def density_pyramid(self, *, genes=None, min_quality=None, min_side: int = DENSITY_MIN_SIDE) -> list[np.ndarray]:
        """:meth:`density` then 2 x 2 sums until the longer side is at most ``min_side`` bins.

        Level ``k`` has bins of ``bin_px * 2**k`` level-0 pixels (counts, not means: a level
        shows the same total).
        """
        levels = [self.density(genes=genes, min_quality=min_quality)]
        while max(levels[-1].shape) > min_side:
            a = levels[-1]
            h, w = a.shape
            a = np.pad(a, ((0, h % 2), (0, w % 2)))
            levels.append(a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).sum(axis=(1, 3)))
        return levels

    def density_transform(self, level: int = 0) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(scale, translate)`` in (y, x) that place density level ``level`` over level-0 pixels
        (napari ``Image(scale=..., translate=...)``)."""
        s = self.bin_px * 2**level
        t = s / 2.0 - 0.5
        return (s, s), (t, t)

    def counts_per_cell(self, cell_ids: Sequence[int] | np.ndarray, *, chunk_rows: int = 2_000_000):
        """(cells x genes) CSR counts of the transcripts assigned to ``cell_ids`` (streamed).

        Checks a platform's count matrix against its transcripts (they agree when the platform
        counted the same molecules).
        """
        import scipy.sparse as sp

        ids = np.asarray(cell_ids, dtype=np.int64)
        order = np.argsort(ids)
        sorted_ids = ids[order]
        rows_all, cols_all = [], []
        n = len(self)
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            cid = np.asarray(self.columns["cell_id"][a:b], dtype=np.int64)
            pos = np.searchsorted(sorted_ids, cid)
            pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
            hit = (sorted_ids[pos] == cid) if len(sorted_ids) else np.zeros(cid.shape, bool)
            rows_all.append(order[pos[hit]])
            cols_all.append(np.asarray(self.columns["gene"][a:b], dtype=np.int64)[hit])
        r = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)
        c = np.concatenate(cols_all) if cols_all else np.zeros(0, np.int64)
        m = sp.coo_matrix((np.ones(r.size, np.int64), (r, c)), shape=(ids.size, self.n_genes)).tocsr()
        m.sum_duplicates()
        return m

    def __repr__(self) -> str:
        return (f"Transcripts({len(self)} rows, {self.n_genes} genes, bins {self.bins_shape[0]}x{self.bins_shape[1]} "
                f"of {self.bin_px:g} px, quality={self.quality_name or 'none'})")


def bin_gene_count_matrix(gene_codes, offsets: np.ndarray, n_genes: int, *, chunk_rows: int = 4_000_000):
    """(n_bins x n_genes) CSC counts from bin-sorted gene codes (streamed ``chunk_rows`` at a time)."""
    import scipy.sparse as sp

    offsets = np.asarray(offsets, dtype=np.int64)
    n_bins = offsets.size - 1
    n = int(offsets[-1])
    keys, counts = [], []
    for a in range(0, n, chunk_rows):
        b = min(a + chunk_rows, n)
        g = np.asarray(gene_codes[a:b], dtype=np.int64)
        bins = np.searchsorted(offsets, np.arange(a, b), side="right") - 1
        k, c = np.unique(bins * n_genes + g, return_counts=True)
        keys.append(k)
        counts.append(c)
    k = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    c = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    m = sp.coo_matrix((c, (k // max(n_genes, 1), k % max(n_genes, 1))), shape=(n_bins, n_genes)).tocsc()
    m.sum_duplicates()
    return m


def transcripts_from_arrays(
    x, y, gene_codes, genes: Sequence[str], *, cell_id=None, quality=None, extra: Mapping[str, Any] | None = None,
    shape_yx: tuple[int, int] | None = None, bin_px: float = 64.0, quality_name: str | None = None,
    source: str | None = None, metadata: dict | None = None,
) -> Transcripts:
    """In-memory :class:`Transcripts` from unsorted arrays (sorted here by bin; small and medium tables).

    ``x``, ``y`` are level-0 pixels; ``shape_yx`` is the image size (default: the points' extent).
    Large tables are built out of core by ``napari_carspatial.io.transcripts.build_transcripts``.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    n = x.size
    g = np.asarray(gene_codes)
    g = g.astype(np.int16 if len(genes) < 2**15 else np.int32)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SampleError(f"{int((~np.isfinite(x) | ~np.isfinite(y)).sum())} transcripts have NaN or infinite coordinates.",
                          path=source)
    if n and (g.min() < 0 or g.max() >= len(genes)):
        raise SampleError("transcript gene codes fall outside the gene list.", path=source)
    cols: dict[str, Any] = {
        "x": x, "y": y, "gene": g,
        "cell_id": np.zeros(n, np.int64) if cell_id is None else np.asarray(cell_id, dtype=np.int64),
        "quality": np.full(n, np.nan, np.float32) if quality is None else np.asarray(quality, dtype=np.float32),
    }
    for k, v in (extra or {}).items():
        cols[k] = np.asarray(v)
    ny, nx = grid_for(shape_yx, x, y, bin_px)
    bins = bin_index(y, x, bin_px, (ny, nx))
    order = np.argsort(bins, kind="stable")
    offsets = np.zeros(ny * nx + 1, np.int64)
    np.cumsum(np.bincount(bins, minlength=ny * nx), out=offsets[1:])
    cols = {k: v[order] for k, v in cols.items()}
    return Transcripts(columns=cols, genes=list(genes), bin_px=float(bin_px), bins_shape=(ny, nx), offsets=offsets,
                       source=source, quality_name=quality_name, metadata=dict(metadata or {}))


def bin_index(y, x, bin_px: float, bins_shape: tuple[int, int]) -> np.ndarray:
    """Row-major bin of level-0 positions (pixel centres at integers, so bin 0 starts at -0.5),
    clipped into the ``bins_shape`` grid."""
    ny, nx = bins_shape
    r = np.clip(np.floor((np.asarray(y, np.float64) + 0.5) / bin_px).astype(np.int64), 0, ny - 1)
    c = np.clip(np.floor((np.asarray(x, np.float64) + 0.5) / bin_px).astype(np.int64), 0, nx - 1)
    return r * nx + c


def grid_for(shape_yx, x, y, bin_px: float) -> tuple[int, int]:
    """Bin grid covering the image (``shape_yx``) and every point."""
    h = float(shape_yx[0]) if shape_yx else 0.0
    w = float(shape_yx[1]) if shape_yx else 0.0
    if len(x):
        h = max(h, float(np.max(y)) + 1.0)
        w = max(w, float(np.max(x)) + 1.0)
    return max(1, int(np.ceil((h + 0.5) / bin_px))), max(1, int(np.ceil((w + 0.5) / bin_px)))
