"""Ligand-receptor signalling: the cluster-level permutation test and its spatial (neighbour) form.

Two tests, one set of pairs:

* :func:`ligrec` - CellPhoneDB's cluster-level test exactly as ``squidpy.gr.ligrec`` runs it
  (same filters, same complex policy, the same permutations for the same ``seed``: those of
  ``squidpy.gr.ligrec(..., seed=seed, n_jobs=1)``), so means and p-values are equal. The cost of
  a permutation is the cluster sums of the genes in the pairs; they are accumulated from the
  non-zeros of the sparse matrix (a numba kernel over genes, permutations in blocks) instead of
  a dense cells x genes pass, and the comparison with the observed statistic is vectorised.
* :func:`spatial_ligrec` - the same statistic restricted to neighbouring cells: for sender type
  A, receiver type B and pair (L, R), the mean over A -> B edges of a spatial graph (Delaunay,
  radius, kNN or mask contact) of ``(L[sender] + R[receiver]) / 2``. Its null keeps every cell's
  type and position and permutes expression profiles among cells of the same type: "do A cells
  that touch B express more L, and B cells that touch A more R, than A and B cells in general?".
  The statistic is linear in the permuted profiles, so its null mean and variance are exact
  closed forms (the permutation moments of a linear statistic; for A = B one permutation acts on
  ``(L + R) / 2``): z-scores and normal p-values need no permutations. ``n_perms`` runs the
  Monte Carlo permutations too (tests check the moments and p-values against them).

Both give Benjamini-Hochberg FDR (statsmodels, as squidpy) and tidy tables; :func:`store_ligrec`
keeps them in ``uns["carspatial"]["analysis"]["ligrec"]`` (h5ad and SpatialData exports carry
``uns``), :func:`plot_ligrec` draws the dot plot, :func:`ligrec_sample_metrics` gives the
per-sample numbers a cohort batch collects.

Pairs come from the resources liana ships (``liana/resource/omni_resource.csv``, read directly:
no network, and without importing liana, which takes seconds): :func:`ligand_receptor_pairs`.
:data:`CART_PAIRS` is the CAR T preset; :data:`PROTEIN_ALIASES` lets it run on protein panels
(``PD-L1`` for CD274, ``PD-1`` for PDCD1, ...).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: the CAR T preset: (ligand, receptor); complexes as liana writes them (subunits joined by "_")
CART_PAIRS: tuple[tuple[str, str], ...] = (
    ("IL18", "IL18R1_IL18RAP"),
    ("IFNG", "IFNGR1_IFNGR2"),
    ("CD274", "PDCD1"),
    ("CD47", "SIRPA"),
    ("TGFB1", "TGFBR1_TGFBR2"),
    ("CSF1", "CSF1R"),
    ("CXCL9", "CXCR3"),
    ("CXCL10", "CXCR3"),
    ("CXCL11", "CXCR3"),
    ("IL6", "IL6R"),
    ("CCL2", "CCR2"),
    ("SPP1", "CD44"),
)

#: gene symbol -> names the same molecule has on protein panels (matched case-insensitively,
#: ignoring '-', '_', ' ' and '.')
PROTEIN_ALIASES: dict[str, tuple[str, ...]] = {
    "CD274": ("PD-L1", "PDL1", "B7-H1", "CD274"),
    "PDCD1": ("PD-1", "PD1", "CD279", "PDCD1"),
    "CD47": ("CD47",),
    "SIRPA": ("SIRPa", "SIRPα", "SIRP-alpha", "CD172a"),
    "CSF1R": ("CD115", "CSF1R", "CSF-1R"),
    "CSF1": ("M-CSF", "MCSF", "CSF-1"),
    "IFNG": ("IFNg", "IFN-gamma", "IFNγ", "IFN-g"),
    "IFNGR1": ("CD119", "IFNGR1"),
    "IL6R": ("CD126", "IL-6R", "IL6R"),
    "IL6": ("IL-6",),
    "IL18": ("IL-18",),
    "IL18R1": ("CD218a", "IL-18R1"),
    "IL18RAP": ("CD218b", "IL-18RAP"),
    "CXCR3": ("CD183", "CXCR3"),
    "CCR2": ("CD192", "CCR2"),
    "CD44": ("CD44",),
    "TGFB1": ("TGF-beta1", "TGFb1", "TGF-β1", "TGFB"),
    "SPP1": ("Osteopontin", "OPN"),
}

SOURCE, TARGET = "source", "target"


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).upper() if ch not in "-_ .")


# --------------------------------------------------------------------------- resources
def liana_resource_file() -> Path:
    """Path of liana's shipped ``omni_resource.csv`` (found without importing liana)."""
    spec = importlib.util.find_spec("liana")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("ligand-receptor resources need the 'liana' package: pip install 'napari-carspatial[omics]'")
    f = Path(next(iter(spec.submodule_search_locations))) / "resource" / "omni_resource.csv"
    if not f.is_file():
        raise ImportError(f"liana is installed but its resource file is missing ({f})")
    return f


@lru_cache(maxsize=8)
def _omni() -> pd.DataFrame:
    return pd.read_csv(liana_resource_file(), usecols=["source_genesymbol", "target_genesymbol", "resource"])


def ligand_receptor_pairs(resource: str = "consensus") -> pd.DataFrame:
    """``ligand``, ``receptor`` pairs of one liana resource (as ``liana.resource.select_resource``).

    ``resource`` is one of liana's names (``"consensus"``, ``"cellphonedb"``, ``"cellchatdb"``,
    ``"mouseconsensus"``, ...). Complex members are joined by ``"_"``.
    """
    df = _omni()
    names = sorted(df["resource"].unique())
    if resource not in names:
        raise KeyError(f"liana has no resource {resource!r}; resources: {', '.join(names)}")
    sub = df[df["resource"] == resource]
    return pd.DataFrame({"ligand": sub["source_genesymbol"].to_numpy(), "receptor": sub["target_genesymbol"].to_numpy()}
                        ).drop_duplicates().reset_index(drop=True)


def cart_pairs() -> pd.DataFrame:
    """The CAR T preset with the liana resources that list each pair (``resources``; empty when none)."""
    df = _omni()
    rows = []
    for lig, rec in CART_PAIRS:
        subunits = set(rec.split("_"))
        hit = df[(df["source_genesymbol"] == lig) & df["target_genesymbol"].map(
            lambda t, s=subunits: bool(set(str(t).split("_")) & s))]
        rows.append({"ligand": lig, "receptor": rec, "resources": ",".join(sorted(set(hit["resource"])))})
    return pd.DataFrame(rows)


def _as_pairs(pairs) -> pd.DataFrame:
    if isinstance(pairs, str):
        if pairs.lower() in ("cart", "car-t", "car_t"):
            return cart_pairs()[["ligand", "receptor"]]
        if os.path.isfile(pairs):
            df = pd.read_csv(pairs)
        else:
            return ligand_receptor_pairs(pairs)
    elif isinstance(pairs, pd.DataFrame):
        df = pairs
    else:
        return pd.DataFrame(list(pairs), columns=["ligand", "receptor"])
    cols = {c.lower(): c for c in df.columns}
    lc = cols.get("ligand") or cols.get(SOURCE) or cols.get("source_genesymbol")
    rc = cols.get("receptor") or cols.get(TARGET) or cols.get("target_genesymbol")
    if lc is None or rc is None:
        raise KeyError(f"pairs need 'ligand' and 'receptor' (or 'source'/'target') columns; found {list(df.columns)}")
    return pd.DataFrame({"ligand": df[lc].astype(str).to_numpy(), "receptor": df[rc].astype(str).to_numpy()})


def _lookup(var_names: Sequence[str]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for v in var_names:
        lookup.setdefault(_norm(v), v)
    return lookup


def resolve_names(var_names: Sequence[str] | dict, symbol: str, *,
                  aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES) -> str | None:
    """The ``var_names`` entry for a gene symbol: the symbol itself (case-insensitive), else a
    protein alias (``PD-L1`` for ``CD274``). ``var_names`` may be a prepared :func:`_lookup`."""
    lookup = var_names if isinstance(var_names, dict) else _lookup(var_names)
    hit = lookup.get(_norm(symbol))
    if hit is not None:
        return hit
    for a in (aliases or {}).get(symbol.upper(), ()):
        hit = lookup.get(_norm(a))
        if hit is not None:
            return hit
    return None


def resolve_pairs(var_names: Sequence[str], pairs="cart", *, aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES
                  ) -> pd.DataFrame:
    """Map ligand / receptor symbols (complex members too) to the panel's names.

    Returns ``ligand``, ``receptor`` (symbols), ``source``, ``target`` (panel names; complexes
    joined by ``"_"`` over the members present) and ``missing`` (members not in the panel).
    Pairs with no member of the ligand or of the receptor in the panel are dropped.
    """
    df = _as_pairs(pairs)
    lookup = _lookup(var_names)
    rows = []
    for lig, rec in df.itertuples(index=False):
        src, tgt, miss = [], [], []
        for part, out in ((lig, src), (rec, tgt)):
            for sym in str(part).split("_"):
                n = resolve_names(lookup, sym, aliases=aliases)
                (out.append(n) if n is not None else miss.append(sym))
        if src and tgt:
            rows.append({"ligand": lig, "receptor": rec, SOURCE: "_".join(dict.fromkeys(src)),
                         TARGET: "_".join(dict.fromkeys(tgt)), "missing": ",".join(miss)})
    return pd.DataFrame(rows, columns=["ligand", "receptor", SOURCE, TARGET, "missing"])


# --------------------------------------------------------------------------- data
def _matrix(adata, layer: str | None, use_raw: bool):
    if use_raw:
        if adata.raw is None:
            raise AttributeError("use_raw=True but the table has no .raw")
        return adata.raw.X, adata.raw.var_names
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"no layer {layer!r}; layers: {', '.join(adata.layers.keys()) or 'none'}")
        return adata.layers[layer], adata.var_names
    return adata.X, adata.var_names


def _csc(X, cols: np.ndarray, rows: np.ndarray | None):
    import scipy.sparse as sp

    if sp.issparse(X):
        sub = X.tocsr()[rows] if rows is not None else X
        sub = sp.csc_matrix(sub)[:, cols] if not sp.isspmatrix_csc(sub) else sub[:, cols]
    else:
        a = np.asarray(X)
        sub = sp.csc_matrix(a[rows][:, cols] if rows is not None else a[:, cols])
    sub = sp.csc_matrix(sub, dtype=np.float64)
    sub.sum_duplicates()
    sub.sort_indices()
    return sub


@dataclass
class _Prepared:
    pairs: pd.DataFrame        # ligand, receptor, source, target (upper-case gene names as squidpy)
    genes: list[str]           # upper-case names of the columns of X
    X: Any                     # csc (cells x genes) float64
    codes: np.ndarray          # int32 cluster code per cell
    clusters: list[str]        # cluster names in code order
    src: np.ndarray            # gene index per pair
    tgt: np.ndarray


def _prepare(adata, cluster_key: str, pairs, *, layer, use_raw, complex_policy: str, mask, aliases) -> _Prepared:
    """squidpy's ``PermutationTest.prepare``: upper-case names, drop NA / duplicate pairs and duplicate
    genes, complexes -> the member with the lowest mean (``"min"``), keep pairs whose genes are present."""
    if cluster_key not in adata.obs:
        raise KeyError(f"no column {cluster_key!r} in the table; columns: {', '.join(map(str, adata.obs.columns[:12]))}")
    X, var = _matrix(adata, layer, use_raw)
    rows = None if mask is None else np.flatnonzero(np.asarray(mask, bool))
    if rows is not None and rows.size == 0:
        raise ValueError("the region has no cells")
    resolved = resolve_pairs(list(map(str, var)), pairs, aliases=aliases)
    if resolved.empty:
        raise ValueError("none of the ligand-receptor pairs has its genes in the panel")
    upper = pd.Index([str(v).upper() for v in var])
    keep_first = ~upper.duplicated()
    if (~keep_first).any():
        log.warning("removed %d duplicate gene name(s) (case-insensitive)", int((~keep_first).sum()))
    col_of = {g: i for i, g in zip(np.flatnonzero(keep_first), upper[keep_first], strict=True)}
    inter = resolved.copy()
    inter[SOURCE] = inter[SOURCE].str.upper()
    inter[TARGET] = inter[TARGET].str.upper()
    inter = inter.dropna(subset=[SOURCE, TARGET]).drop_duplicates(subset=[SOURCE, TARGET], keep="first")
    members = sorted({m for s in pd.concat([inter[SOURCE], inter[TARGET]]) for m in str(s).split("_") if m in col_of})
    if not members:
        raise ValueError("none of the ligand-receptor pairs has its genes in the panel")
    msub = _csc(X, np.array([col_of[m] for m in members], dtype=np.int64), rows)  # one conversion, sliced below
    mcol = {m: k for k, m in enumerate(members)}
    if complex_policy == "min":
        means = dict(zip(members, np.asarray(msub.sum(axis=0)).ravel() / msub.shape[0], strict=True))

        def pick(c: str) -> str | None:
            parts = [p for p in c.split("_") if p in col_of]
            if not parts:
                return None
            if len(parts) == 1:
                return parts[0]
            vals = np.array([means[p] for p in parts])
            return parts[int(np.argmin(vals))]

        inter[SOURCE] = inter[SOURCE].map(pick)
        inter[TARGET] = inter[TARGET].map(pick)
    elif complex_policy == "all":
        inter = inter.assign(**{SOURCE: inter[SOURCE].str.split("_")}).explode(SOURCE)
        inter = inter.assign(**{TARGET: inter[TARGET].str.split("_")}).explode(TARGET)
    else:
        raise ValueError(f"complex_policy must be 'min' or 'all', not {complex_policy!r}")
    inter = inter[inter[SOURCE].isin(col_of) & inter[TARGET].isin(col_of)]
    inter = inter.drop_duplicates(subset=[SOURCE, TARGET], keep="first").reset_index(drop=True)
    if inter.empty:
        raise ValueError("after filtering by genes, no ligand-receptor pair remains")
    genes = sorted(set(inter[SOURCE]) | set(inter[TARGET]))
    gi = {g: k for k, g in enumerate(genes)}
    Xs = msub[:, np.array([mcol[g] for g in genes], dtype=np.int64)]
    lab = adata.obs[cluster_key]
    lab = lab.iloc[rows] if rows is not None else lab
    lab = lab.astype("string").astype("category")
    lab = lab.cat.remove_unused_categories()
    if lab.isna().any():
        raise ValueError(f"{int(lab.isna().sum())} cells have no {cluster_key!r} value")
    return _Prepared(pairs=inter, genes=genes, X=Xs, codes=lab.cat.codes.to_numpy(np.int32),
                     clusters=[str(c) for c in lab.cat.categories],
                     src=inter[SOURCE].map(gi).to_numpy(np.int64), tgt=inter[TARGET].map(gi).to_numpy(np.int64))


# --------------------------------------------------------------------------- kernels
def _kernels():
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def cluster_sums(indptr, indices, data, labels, n_clusters):  # pragma: no cover - numba
        """(B, K, G) sums of every gene (CSC column) over the cells of each cluster, per permutation."""
        n_genes = indptr.size - 1
        B = labels.shape[1]
        out = np.zeros((B, n_clusters, n_genes))
        for g in prange(n_genes):
            acc = np.zeros((B, n_clusters))
            for k in range(indptr[g], indptr[g + 1]):
                row = labels[indices[k]]
                v = data[k]
                for b in range(B):
                    acc[b, row[b]] += v
            for b in range(B):
                for c in range(n_clusters):
                    out[b, c, g] = acc[b, c]
        return out

    @njit(parallel=True, cache=True)
    def exceed(groups, src, tgt, c1, c2, obs, valid, counts):  # pragma: no cover - numba
        """counts[i, j] += #perms with groups[b, c1, src] + groups[b, c2, tgt] > obs[i, j]."""
        B = groups.shape[0]
        for i in prange(src.size):
            a = src[i]
            t = tgt[i]
            for j in range(c1.size):
                if not valid[i, j]:
                    continue
                thr = obs[i, j]
                n = 0
                for b in range(B):
                    if groups[b, c1[j], a] + groups[b, c2[j], t] > thr:
                        n += 1
                counts[i, j] += n

    return cluster_sums, exceed


_KERNELS = None


def _get_kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    return _KERNELS


# --------------------------------------------------------------------------- cluster-level test
@dataclass
class LigrecResult:
    """Ligand-receptor results in squidpy's layout and as a tidy table.

    Attributes
    ----------
    means
        (pairs x cluster pairs): ``(mean L in cluster_1 + mean R in cluster_2) / 2``, 0 where a
        mean is 0 (squidpy's ``means``). Index ``(source, target)``, columns ``(cluster_1, cluster_2)``.
    pvalues
        Same shape; NaN where not tested (a mean is 0 or a gene is expressed in fewer than
        ``threshold`` of a cluster's cells).
    pvalues_adj
        FDR-adjusted p-values (``corr_method``), or ``None``.
    metadata
        ``ligand``, ``receptor`` (the symbols asked for) per row, and ``missing`` complex members.
    params
        JSON-able parameters.
    region
        Region name (``"whole"`` for all cells).
    """

    means: pd.DataFrame
    pvalues: pd.DataFrame
    pvalues_adj: pd.DataFrame | None
    metadata: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    region: str = "whole"

    def to_frame(self) -> pd.DataFrame:
        """Long form: ``region, source, target, ligand, receptor, cluster_1, cluster_2, mean, pvalue, pvalue_adj``."""
        m = self.means.stack(level=[0, 1], future_stack=True).rename("mean")
        p = self.pvalues.stack(level=[0, 1], future_stack=True).rename("pvalue")
        df = pd.concat([m, p], axis=1)
        if self.pvalues_adj is not None:
            df["pvalue_adj"] = self.pvalues_adj.stack(level=[0, 1], future_stack=True)
        df = df.reset_index()
        meta = self.metadata.reset_index()
        df = df.merge(meta[[SOURCE, TARGET, "ligand", "receptor"]], on=[SOURCE, TARGET], how="left")
        df.insert(0, "region", self.region)
        return df


def _fdr(p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, float)
    q = multipletests(np.nan_to_num(p, nan=1.0), method=method, alpha=alpha, is_sorted=False, returnsorted=False)[1]
    q[np.isnan(p)] = np.nan
    return q


def ligrec(
    adata,
    cluster_key: str,
    *,
    pairs: Any = "cart",
    clusters: Sequence[str] | Sequence[tuple[str, str]] | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    threshold: float = 0.01,
    n_perms: int = 1000,
    seed: int = 0,
    complex_policy: str = "min",
    corr_method: str | None = "fdr_bh",
    corr_axis: str = "clusters",
    alpha: float = 0.05,
    mask: np.ndarray | None = None,
    region: str = "whole",
    aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES,
    block: int = 64,
) -> LigrecResult:
    """CellPhoneDB's permutation test between clusters, equal to ``squidpy.gr.ligrec``.

    Parameters
    ----------
    adata
        Cell table (sparse or dense ``X``; read, never densified as a whole).
    cluster_key
        Categorical ``obs`` column (cell types).
    pairs
        ``"cart"`` (:data:`CART_PAIRS`), a liana resource name (``"consensus"``), a CSV path or a
        DataFrame with ``ligand``/``receptor`` (or ``source``/``target``), or ``(ligand, receptor)`` tuples.
    clusters
        Cluster names (all ordered pairs of them are tested) or explicit ``(cluster_1, cluster_2)``
        pairs; default all clusters.
    layer, use_raw
        Which matrix (``X`` by default; squidpy's default is ``use_raw=True``).
    threshold
        Minimum fraction of a cluster's cells expressing a gene (squidpy's ``threshold``).
    n_perms, seed
        Permutations and seed: the permutations are those of ``squidpy.gr.ligrec(..., seed=seed,
        n_jobs=1)`` (one ``numpy.random.RandomState(seed)`` shuffling the labels ``n_perms``
        times).
    complex_policy
        ``"min"``: a complex is its member with the lowest mean; ``"all"``: every member pair.
    corr_method, corr_axis, alpha
        FDR correction (statsmodels ``multipletests``) per cluster pair (``"clusters"``) or per
        interaction (``"interactions"``), as squidpy; ``None`` for none.
    mask
        Restrict to these cells (a region), ``(n_obs,)`` bool.
    region
        Name of that region in the tidy table.
    aliases
        Protein names per gene symbol (:data:`PROTEIN_ALIASES`).
    block
        Permutations per kernel pass (memory: cells x block bytes for the labels).

    Returns
    -------
    LigrecResult
    """
    if n_perms < 1:
        raise ValueError("n_perms must be at least 1")
    prep = _prepare(adata, cluster_key, pairs, layer=layer, use_raw=use_raw, complex_policy=complex_policy,
                    mask=mask, aliases=aliases)
    cl = prep.clusters
    if clusters is None:
        cpairs = list(product(cl, repeat=2))
    elif all(isinstance(c, str) for c in clusters):
        unknown = [c for c in clusters if c not in cl]
        if unknown:
            raise KeyError(f"clusters {unknown} not in {cluster_key!r} ({', '.join(cl)})")
        cpairs = list(product(list(clusters), repeat=2))
    else:
        cpairs = [tuple(map(str, c)) for c in clusters]
    cpairs = sorted(cpairs)
    flat = sorted({c for p in cpairs for c in p})
    keep_cells = np.isin(np.asarray(cl, dtype=object)[prep.codes], flat)
    X, codes = prep.X, prep.codes
    if not keep_cells.all():  # squidpy drops the cells of clusters not in any pair
        X = X[np.flatnonzero(keep_cells)]
        old = np.asarray(cl, dtype=object)[codes[keep_cells]]
        cl = flat
        codes = pd.Categorical(old, categories=cl).codes.astype(np.int32)
    import scipy.sparse as sp

    X = sp.csc_matrix(X)
    K = len(cl)
    cidx = {c: k for k, c in enumerate(cl)}
    c1 = np.array([cidx[a] for a, _ in cpairs], dtype=np.int64)
    c2 = np.array([cidx[b] for _, b in cpairs], dtype=np.int64)
    size = np.bincount(codes, minlength=K).astype(np.int64)
    # observed cluster means and expression fractions (genes x clusters)
    onehot = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))), shape=(K, codes.size))
    sums = np.asarray((onehot @ X).todense())  # (K, G)
    nz = X.copy()
    nz.data = (nz.data > 0).astype(np.float64)
    frac = np.asarray((onehot @ nz).todense()) / size[:, None]
    mean = sums / size[:, None]
    expr = frac >= threshold
    m1 = mean[c1[None, :], prep.src[:, None]]
    m2 = mean[c2[None, :], prep.tgt[:, None]]
    positive = (m1 > 0) & (m2 > 0)
    means = np.where(positive, (m1 + m2) / 2.0, 0.0)
    valid = positive & expr[c1[None, :], prep.src[:, None]] & expr[c2[None, :], prep.tgt[:, None]]
    obs = m1 + m2
    counts = np.zeros(valid.shape, dtype=np.int64)
    cluster_sums, exceed = _get_kernels()
    rs = np.random.RandomState(seed)
    clustering = codes.copy()
    lab_dtype = np.uint8 if K < 256 else np.uint16
    done = 0
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    if valid.any():
        while done < n_perms:
            b = min(block, n_perms - done)
            L = np.empty((clustering.size, b), dtype=lab_dtype)
            for k in range(b):
                rs.shuffle(clustering)
                L[:, k] = clustering
            groups = cluster_sums(indptr, indices, X.data, L, K)
            groups /= size[None, :, None]
            exceed(groups, prep.src, prep.tgt, c1, c2, obs, valid, counts)
            done += b
    pvals = np.where(valid, counts / float(n_perms), np.nan)
    index = pd.MultiIndex.from_frame(prep.pairs[[SOURCE, TARGET]], names=[SOURCE, TARGET])
    columns = pd.MultiIndex.from_tuples(cpairs, names=["cluster_1", "cluster_2"])
    means_df = pd.DataFrame(means, index=index, columns=columns)
    p_df = pd.DataFrame(pvals, index=index, columns=columns)
    q_df = None
    if corr_method is not None:
        q = np.full(pvals.shape, np.nan)
        if corr_axis == "clusters":
            for j in range(pvals.shape[1]):
                q[:, j] = _fdr(pvals[:, j], corr_method, alpha)
        elif corr_axis == "interactions":
            for i in range(pvals.shape[0]):
                q[i] = _fdr(pvals[i], corr_method, alpha)
        else:
            raise ValueError(f"corr_axis must be 'clusters' or 'interactions', not {corr_axis!r}")
        q_df = pd.DataFrame(q, index=index, columns=columns)
    meta = prep.pairs[["ligand", "receptor", "missing"]].copy()
    meta.index = index
    params = {"test": "cluster", "cluster_key": cluster_key, "n_perms": int(n_perms), "seed": int(seed),
              "threshold": float(threshold), "complex_policy": complex_policy, "corr_method": corr_method,
              "corr_axis": corr_axis, "alpha": float(alpha), "layer": layer, "use_raw": bool(use_raw),
              "pairs": pairs if isinstance(pairs, str) else "custom", "n_pairs": int(len(index)), "n_cells": int(codes.size)}
    return LigrecResult(means=means_df, pvalues=p_df, pvalues_adj=q_df, metadata=meta, params=params, region=region)


# --------------------------------------------------------------------------- spatial (neighbour) test
@dataclass
class SpatialLigrecResult:
    """Neighbour-restricted ligand-receptor scores, one row per (pair, sender type, receiver type).

    Attributes
    ----------
    table
        ``region, ligand, receptor, source, target, sender, receiver, n_edges, n_senders,
        n_receivers, score, expected, std, z, pvalue, pvalue_adj`` (and ``pvalue_mc`` with
        ``n_perms``). ``score`` = mean over sender -> receiver edges of ``(L[sender] +
        R[receiver]) / 2``; ``expected`` / ``std`` its exact mean and standard deviation when
        expression profiles are permuted within each cell type; ``pvalue`` one-sided
        (enrichment at contacts), normal. NaN (with ``reason``) where not tested.
    params
        JSON-able parameters.
    """

    table: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)


def _linear_perm_moments(w: np.ndarray, y_sum: np.ndarray, y_sq: np.ndarray, n: int):
    """Mean and variance of ``sum_i w_i y_pi(i)`` over uniform permutations of ``n`` items.

    ``w`` (m, n) weights per test row; ``y_sum``, ``y_sq`` (m,) the sum and sum of squares of
    the permuted values. E = mean(w) * sum(y); Var = sum((w - mean w)^2) * sum((y - mean y)^2) / (n - 1).
    """
    wbar = w.mean(axis=1)
    ss_w = ((w - wbar[:, None]) ** 2).sum(axis=1)
    ss_y = y_sq - y_sum**2 / n
    e = wbar * y_sum
    v = ss_w * np.maximum(ss_y, 0.0) / max(n - 1, 1)
    return e, v


def spatial_ligrec(
    adata,
    cluster_key: str,
    *,
    graph=None,
    pairs: Any = "cart",
    layer: str | None = None,
    threshold: float = 0.01,
    min_edges: int = 5,
    method: str = "delaunay",
    max_distance_um: float | None = 30.0,
    radius_um: float | None = None,
    n_neighs: int = 6,
    labels=None,
    expand_px: int = 2,
    pixel_size_um: float | None = None,
    mask: np.ndarray | None = None,
    region: str = "whole",
    n_perms: int | None = None,
    seed: int = 0,
    complex_policy: str = "min",
    corr_method: str | None = "fdr_bh",
    alpha: float = 0.05,
    aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES,
) -> SpatialLigrecResult:
    """Ligand-receptor co-expression between neighbouring cells, with an exact permutation null.

    Parameters
    ----------
    adata
        Cell table with ``obsm["spatial"]`` (level-0 pixels).
    cluster_key
        Cell-type column.
    graph
        A :class:`~napari_carspatial.analysis.graph.SpatialGraph` or ``(n, n)`` sparse adjacency
        over ``adata``'s cells; built when ``None`` (``method``: ``"delaunay"`` with
        ``max_distance_um``, ``"radius"`` with ``radius_um``, ``"knn"`` with ``n_neighs``, or
        ``"contact"`` from the mask ``labels`` with ``expand_px``).
    pairs, layer, threshold, complex_policy, aliases
        As :func:`ligrec` (``threshold`` applies to the sender type for L and the receiver type for R).
    min_edges
        Sender -> receiver combinations with fewer edges are not tested.
    mask, region
        Restrict to a region's cells (the graph is restricted to them too) and name it.
    n_perms, seed
        Also run ``n_perms`` Monte Carlo permutations (``pvalue_mc``); ``None``: analytic only.
    corr_method, alpha
        FDR over every tested row of the region.

    Returns
    -------
    SpatialLigrecResult
    """
    import scipy.sparse as sp

    from napari_carspatial.model.conventions import pixel_size_um as stored_px

    px = pixel_size_um if pixel_size_um is not None else stored_px(adata)
    rows = None if mask is None else np.flatnonzero(np.asarray(mask, bool))
    prep = _prepare(adata, cluster_key, pairs, layer=layer, use_raw=False, complex_policy=complex_policy,
                    mask=mask, aliases=aliases)
    W = _adjacency(adata, graph, rows=rows, method=method, max_distance_um=max_distance_um, radius_um=radius_um,
                   n_neighs=n_neighs, labels=labels, expand_px=expand_px, px=px)
    W = ((W + W.T) > 0).astype(np.float64).tocsr()  # undirected: each contact counts both ways
    W.setdiag(0)
    W.eliminate_zeros()
    codes, K, cl = prep.codes, len(prep.clusters), prep.clusters
    n = codes.size
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, K))
    D = np.asarray((W @ onehot).todense())  # (n, K): neighbours of each type
    X = sp.csc_matrix(prep.X)
    Xr = X.tocsr()
    members = [np.flatnonzero(codes == k) for k in range(K)]
    Xsq = Xr.multiply(Xr).tocsr()
    tsum = np.vstack([np.asarray(Xr[m].sum(axis=0)).ravel() if m.size else np.zeros(X.shape[1]) for m in members])
    nzfrac = np.vstack([np.asarray((Xr[m] > 0).sum(axis=0)).ravel() / max(m.size, 1) for m in members])
    rows_out = []
    rng = np.random.default_rng(seed)
    perms = None
    if n_perms:
        perms = [[rng.permutation(m) for m in members] for _ in range(int(n_perms))]
    for a, b in product(range(K), repeat=2):
        ma, mb = members[a], members[b]
        if ma.size == 0 or mb.size == 0:
            continue
        wa = D[ma, b]  # sender weights: B-neighbours of each A cell
        wb = D[mb, a]  # receiver weights: A-neighbours of each B cell
        n_e = float(wa.sum())
        base = {"region": region, "sender": cl[a], "receiver": cl[b], "n_edges": int(n_e),
                "n_senders": int((wa > 0).sum()), "n_receivers": int((wb > 0).sum())}
        Lv = Xr[ma][:, prep.src]  # (n_a, P)
        Rv = Xr[mb][:, prep.tgt]
        score = (np.asarray(Lv.T @ wa).ravel() + np.asarray(Rv.T @ wb).ravel()) / (2 * n_e) if n_e > 0 else np.full(prep.src.size, np.nan)
        if a != b:
            eL, vL = _linear_perm_moments(np.broadcast_to(wa / (2 * n_e) if n_e else wa, (1, ma.size)),
                                          tsum[a, prep.src], np.asarray(Xsq[ma][:, prep.src].sum(axis=0)).ravel(), ma.size)
            eR, vR = _linear_perm_moments(np.broadcast_to(wb / (2 * n_e) if n_e else wb, (1, mb.size)),
                                          tsum[b, prep.tgt], np.asarray(Xsq[mb][:, prep.tgt].sum(axis=0)).ravel(), mb.size)
            e, v = eL + eR, vL + vR
        else:  # one permutation moves L and R together: a linear statistic of y = L + R
            Y = Lv + Rv
            ysum = np.asarray(Y.sum(axis=0)).ravel()
            ysq = np.asarray(Y.multiply(Y).sum(axis=0)).ravel()
            e, v = _linear_perm_moments(np.broadcast_to(wa / (2 * n_e) if n_e else wa, (1, ma.size)), ysum, ysq, ma.size)
        std = np.sqrt(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score - e) / std
        from scipy.stats import norm

        pval = norm.sf(z)
        fa, fb = nzfrac[a, prep.src], nzfrac[b, prep.tgt]
        enough = bool(n_e >= min_edges)
        ok = enough & (fa >= threshold) & (fb >= threshold) & (std > 0)
        reason = np.where(not enough, f"fewer than {min_edges} edges",
                          np.where(~((fa >= threshold) & (fb >= threshold)), "not expressed", np.where(std > 0, "", "constant")))
        mc = None
        if perms is not None and n_e > 0:
            null = np.empty((len(perms), prep.src.size))
            for k, pm in enumerate(perms):
                La = Xr[pm[a]][:, prep.src]
                Rb = Xr[pm[b]][:, prep.tgt]
                null[k] = (np.asarray(La.T @ wa).ravel() + np.asarray(Rb.T @ wb).ravel()) / (2 * n_e)
            mc = ((null >= score[None, :] - 1e-12).sum(axis=0) + 1) / (len(perms) + 1)
        for i in range(prep.src.size):
            r = {**base, "ligand": prep.pairs["ligand"].iat[i], "receptor": prep.pairs["receptor"].iat[i],
                 "source": prep.pairs[SOURCE].iat[i], "target": prep.pairs[TARGET].iat[i],
                 "score": float(score[i]), "expected": float(e[i]) if ok[i] else np.nan,
                 "std": float(std[i]) if ok[i] else np.nan, "z": float(z[i]) if ok[i] else np.nan,
                 "pvalue": float(pval[i]) if ok[i] else np.nan, "reason": str(reason[i])}
            if mc is not None:
                r["pvalue_mc"] = float(mc[i]) if ok[i] else np.nan
            rows_out.append(r)
    table = pd.DataFrame(rows_out)
    if table.empty:
        raise ValueError("no sender/receiver combination to test (empty region or one cell type)")
    if corr_method is not None:
        table["pvalue_adj"] = _fdr(table["pvalue"].to_numpy(), corr_method, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = table["score"].to_numpy(float) / table["expected"].to_numpy(float)
    table["log2_enrichment"] = np.where(ratio > 0, np.log2(np.where(ratio > 0, ratio, 1.0)), np.nan)
    order = ["region", "ligand", "receptor", "source", "target", "sender", "receiver", "n_edges", "n_senders",
             "n_receivers", "score", "expected", "std", "z", "log2_enrichment", "pvalue", "pvalue_adj", "pvalue_mc", "reason"]
    table = table[[c for c in order if c in table.columns]]
    params = {"test": "spatial", "cluster_key": cluster_key, "graph": method if graph is None else "given",
              "max_distance_um": max_distance_um, "radius_um": radius_um, "n_neighs": n_neighs, "expand_px": expand_px,
              "threshold": float(threshold), "min_edges": int(min_edges), "n_perms": n_perms, "seed": int(seed),
              "complex_policy": complex_policy, "corr_method": corr_method, "alpha": float(alpha), "layer": layer,
              "pairs": pairs if isinstance(pairs, str) else "custom", "pixel_size_um": px, "n_cells": int(n)}
    return SpatialLigrecResult(table=table, params=params)


def _adjacency(adata, graph, *, rows, method, max_distance_um, radius_um, n_neighs, labels, expand_px, px):
    import scipy.sparse as sp

    if graph is not None:
        W = graph.connectivities if hasattr(graph, "connectivities") else graph
        W = sp.csr_matrix(W)
        if W.shape[0] != adata.n_obs:
            raise ValueError(f"the graph has {W.shape[0]} nodes, the table {adata.n_obs} cells")
        return W[rows][:, rows] if rows is not None else W
    sub = adata if rows is None else adata[rows]
    if method == "contact":
        from napari_carspatial.analysis.contact import contact_graph

        if labels is None:
            raise ValueError("the contact graph needs the mask (labels=)")
        return contact_graph(sub, labels, expand_px=expand_px).connectivities
    from napari_carspatial.analysis.graph import spatial_graph

    if method == "delaunay":
        return spatial_graph(sub, method="delaunay", max_distance=max_distance_um, pixel_size_um=px).connectivities
    if method == "radius":
        if radius_um is None:
            raise ValueError("method='radius' needs radius_um")
        return spatial_graph(sub, method="radius", radius=radius_um, pixel_size_um=px).connectivities
    if method == "knn":
        return spatial_graph(sub, method="knn", n_neighs=n_neighs).connectivities
    raise ValueError(f"method must be delaunay, radius, knn or contact, not {method!r}")


# --------------------------------------------------------------------------- storing, metrics, plots
def store_ligrec(adata, result: LigrecResult | SpatialLigrecResult | Sequence, *, key: str = "ligrec") -> str:
    """Keep results (one or a list, e.g. per region) in ``uns["carspatial"]["analysis"][key]``.

    The tidy tables are ``cluster`` (:meth:`LigrecResult.to_frame`) and ``spatial``
    (:attr:`SpatialLigrecResult.table`), with a ``region`` column; h5ad / SpatialData writable.
    """
    from napari_carspatial.analysis.results import AnalysisResult, store_result

    results = [result] if isinstance(result, (LigrecResult, SpatialLigrecResult)) else list(result)
    tables: dict[str, list] = {"cluster": [], "spatial": []}
    params: dict[str, Any] = {}
    regions: list[str] = []
    for r in results:
        if isinstance(r, LigrecResult):
            tables["cluster"].append(r.to_frame())
            params["cluster"] = r.params
            regions.append(r.region)
        else:
            tables["spatial"].append(r.table)
            params["spatial"] = r.params
            regions += list(pd.unique(r.table["region"]))
    out = {k: pd.concat(v, ignore_index=True) for k, v in tables.items() if v}
    res = AnalysisResult("ligrec", out, params, list(dict.fromkeys(regions)), datetime.now(UTC).isoformat(timespec="seconds"))
    return store_result(adata, res, key=key)


def ligrec_sample_metrics(
    adata,
    cluster_key: str,
    *,
    pairs: Any = "cart",
    regions: Mapping[str, np.ndarray] | None = None,
    alpha: float = 0.05,
    **spatial_kwargs: Any,
) -> pd.DataFrame:
    """Per-sample ligand-receptor metrics for a cohort table (tidy: ``region, metric, value, note``).

    Parameters
    ----------
    adata
        Cell table with ``obsm["spatial"]`` and the panel's genes or markers in ``var_names``.
    cluster_key
        Cell-type column of ``obs``.
    pairs
        As :func:`spatial_ligrec`: ``"cart"`` (the preset), a liana resource name, a CSV path,
        a DataFrame or ``(ligand, receptor)`` tuples.
    regions
        Region name -> boolean cell mask (default: the whole sample).
    alpha
        FDR level of ``lr_n_significant``.
    **spatial_kwargs
        Passed to :func:`spatial_ligrec` (graph ``method``, ``max_distance_um``, ``min_edges``,
        ``threshold``, ``pixel_size_um``, ``labels``, ``seed``, ...).

    Returns
    -------
    pandas.DataFrame
        Columns ``region, metric, value, note``. For every pair and sender -> receiver type
        combination tested: ``lr_z:<L>-<R>:<sender>-><receiver>`` (z of the neighbour test; grows
        with the number of contacts, so not comparable across samples), ``lr_score:...`` (mean
        ``(L + R) / 2`` over the contacts) and ``lr_log2_enrichment:...`` (log2 of the score over
        its expectation under the type-matched null: comparable across samples); per region
        ``lr_n_tested`` and ``lr_n_significant`` (FDR < ``alpha``). A region that cannot be
        tested (fewer than 3 cells, one cell type) has ``lr_n_tested`` NaN with the reason in
        ``note``.

    Raises
    ------
    ValueError
        No pair has its genes in the panel (names the pairs asked for).
    """
    if resolve_pairs(list(map(str, adata.var_names)), pairs, aliases=spatial_kwargs.get("aliases", PROTEIN_ALIASES)
                     ).empty:
        what = pairs if isinstance(pairs, str) else "given"
        raise ValueError(f"none of the ligand-receptor pairs ({what}) has its genes in the panel "
                         f"({', '.join(map(str, adata.var_names[:8]))}{', ...' if adata.n_vars > 8 else ''})")
    regions = dict(regions) if regions else {"whole": np.ones(adata.n_obs, bool)}
    rows = []
    for name, m in regions.items():
        m = np.asarray(m, bool)
        if m.sum() < 3:
            rows.append({"region": name, "metric": "lr_n_tested", "value": np.nan, "note": "fewer than 3 cells"})
            continue
        try:
            t = spatial_ligrec(adata, cluster_key, pairs=pairs, mask=m, region=name, **spatial_kwargs).table
        except ValueError as err:  # one cell type, no pair expressed in this region, ...
            rows.append({"region": name, "metric": "lr_n_tested", "value": np.nan, "note": str(err)})
            continue
        tested = t[t["z"].notna()]
        for r in tested.itertuples(index=False):
            tag = f"{r.ligand}-{r.receptor}:{r.sender}->{r.receiver}"
            rows.append({"region": name, "metric": f"lr_z:{tag}", "value": float(r.z), "note": ""})
            rows.append({"region": name, "metric": f"lr_score:{tag}", "value": float(r.score), "note": ""})
            rows.append({"region": name, "metric": f"lr_log2_enrichment:{tag}", "value": float(r.log2_enrichment),
                         "note": ""})
        rows.append({"region": name, "metric": "lr_n_tested", "value": float(len(tested)), "note": ""})
        sig = float((tested["pvalue_adj"] < alpha).sum()) if "pvalue_adj" in tested else np.nan
        rows.append({"region": name, "metric": "lr_n_significant", "value": sig, "note": f"FDR < {alpha}"})
    return pd.DataFrame(rows, columns=["region", "metric", "value", "note"])


def plot_ligrec(result: LigrecResult | SpatialLigrecResult | pd.DataFrame, *, fig=None, alpha: float = 0.05,
                max_pairs: int = 30, max_columns: int = 40, title: str | None = None, theme: dict | None = None):
    """Dot plot: rows = ligand-receptor pairs, columns = sender -> receiver types; dot size =
    -log10 p-value, colour = mean (cluster test) or z (spatial test); red rings mark FDR < ``alpha``.

    Draws into ``fig`` (a new :class:`matplotlib.figure.Figure` when ``None``; no pyplot, as
    ``analysis.plotting``) and returns it. ``theme``: ``analysis.plotting.LIGHT`` (default) or ``DARK``.
    """
    from matplotlib.figure import Figure

    from napari_carspatial.analysis.plotting import LIGHT, _style

    th = theme or LIGHT
    if isinstance(result, LigrecResult):
        df = result.to_frame().rename(columns={"cluster_1": "sender", "cluster_2": "receiver", "mean": "value"})
        label = "mean expression"
    else:
        df = result.table if isinstance(result, SpatialLigrecResult) else result
        df = df.rename(columns={"z": "value"})
        label = "z vs type-matched null"
    df = df[df["pvalue"].notna()].copy()
    padj = "pvalue_adj" if "pvalue_adj" in df else "pvalue"
    if fig is None:
        n_rows = min(max_pairs, df["ligand"].astype(str).str.cat(df["receptor"].astype(str)).nunique()) if len(df) else 1
        fig = Figure(figsize=(9, 3.4 + 0.3 * n_rows), dpi=130, layout="constrained")
    fig.set_facecolor(th["bg"])
    ax = fig.add_subplot(111)
    _style(ax, th)
    if df.empty:
        ax.text(0.5, 0.5, "no pair could be tested\n(genes not expressed, or too few contacts)", ha="center",
                va="center", transform=ax.transAxes, color=th["text"])
        ax.set_axis_off()
        return fig
    df["pair"] = df["ligand"].astype(str) + " → " + df["receptor"].astype(str)
    df["combo"] = df["sender"].astype(str) + " → " + df["receiver"].astype(str)
    best = df.groupby("pair")["pvalue"].min().sort_values(kind="stable").index[:max_pairs]
    cols = df[df["pair"].isin(best)].groupby("combo")["pvalue"].min().sort_values(kind="stable").index[:max_columns]
    d = df[df["pair"].isin(best) & df["combo"].isin(cols)]
    ys = {p: i for i, p in enumerate(best)}
    xs = {c: i for i, c in enumerate(sorted(cols))}
    size = 15 + 160 * np.clip(-np.log10(np.maximum(d["pvalue"].to_numpy(float), 1e-4)) / 4, 0, 1)
    x = np.array([xs[c] for c in d["combo"]])
    y = np.array([ys[p] for p in d["pair"]])
    sc_ = ax.scatter(x, y, s=size, c=d["value"].to_numpy(float), cmap="viridis", edgecolors="none")
    sig = d[padj].to_numpy(float) < alpha
    ax.scatter(x[sig], y[sig], s=size[sig] + 45, facecolors="none", edgecolors="crimson", linewidths=1.0)
    ax.set_xticks(range(len(xs)), list(xs), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(ys)), list(ys), fontsize=7)
    ax.set_xlim(-0.7, len(xs) - 0.3)
    ax.set_ylim(len(ys) - 0.3, -0.7)
    cb = fig.colorbar(sc_, ax=ax, fraction=0.04)
    cb.set_label(label, color=th["text"], fontsize=8)
    cb.ax.tick_params(colors=th["text"], labelsize=7)
    for p in (0.05, 0.001):
        ax.scatter([], [], s=15 + 160 * min(-np.log10(p) / 4, 1), c="grey", label=f"p = {p:g}")
    ax.scatter([], [], s=60, facecolors="none", edgecolors="crimson", label=f"FDR < {alpha:g}")
    leg = ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7, frameon=False)
    for t in leg.get_texts():
        t.set_color(th["text"])
    ax.set_title(title or ("Ligand-receptor between neighbouring cells" if label.startswith("z")
                           else "Ligand-receptor between cell types"), fontsize=9, loc="left")
    ax.set_xlabel("sender → receiver", fontsize=8)
    ax.set_ylabel("ligand → receptor", fontsize=8)
    return fig


def save_ligrec_figure(result, path, **kwargs) -> Path:
    """:func:`plot_ligrec` written atomically to ``path`` (PNG / SVG by suffix)."""
    from napari_carspatial.analysis.plotting import LIGHT
    from napari_carspatial.model.atomic import atomic_write

    fig = plot_ligrec(result, **kwargs)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor=(kwargs.get("theme") or LIGHT)["bg"]))
    return path


__all__ = [
    "CART_PAIRS", "PROTEIN_ALIASES", "LigrecResult", "SpatialLigrecResult", "cart_pairs", "ligand_receptor_pairs",
    "ligrec", "ligrec_sample_metrics", "liana_resource_file", "plot_ligrec", "resolve_pairs", "save_ligrec_figure",
    "spatial_ligrec",
    "store_ligrec",
]

