"""Ligand-receptor results kept, summarised and drawn: :func:`store_ligrec`,
:func:`ligrec_sample_metrics` (the cohort batch's per-sample rows), :func:`plot_ligrec`,
:func:`save_ligrec_figure`. Re-exported by :mod:`.ligrec`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._ligrec_cluster import LigrecResult
from ._ligrec_pairs import PROTEIN_ALIASES, resolve_pairs
from ._ligrec_spatial import SpatialLigrecResult, spatial_ligrec

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure



# --------------------------------------------------------------------------- storing, metrics, plots
def store_ligrec(adata: AnnData, result: LigrecResult | SpatialLigrecResult | Sequence, *, key: str = "ligrec") -> str:
    """Keep results (one or a list, e.g. per region) in ``uns["carspatial"]["analysis"][key]``.

    The tidy tables are ``cluster`` (:meth:`LigrecResult.to_frame`) and ``spatial``
    (:attr:`SpatialLigrecResult.table`), with a ``region`` column; h5ad / SpatialData writable.

    Parameters
    ----------
    adata
        Cell table (mutated: ``uns``).
    result
        One result or a sequence of them.
    key
        Name under ``uns["carspatial"]["analysis"]``.

    Returns
    -------
    str
        The key the result was stored under.
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
    adata: AnnData,
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


def plot_ligrec(result: LigrecResult | SpatialLigrecResult | pd.DataFrame, *, fig: Figure | None = None,
                alpha: float = 0.05, max_pairs: int = 30, max_columns: int = 40, title: str | None = None,
                theme: dict | None = None) -> Figure:
    """Dot plot: rows = ligand-receptor pairs, columns = sender -> receiver types.

    Dot size = -log10 p-value, colour = mean (cluster test) or z (spatial test); red rings mark
    FDR < ``alpha``. No pyplot (as ``analysis.plotting``).

    Parameters
    ----------
    result
        A result, or a spatial result's table.
    fig
        The figure to draw into (a new :class:`matplotlib.figure.Figure` when ``None``).
    alpha
        FDR level of the rings.
    max_pairs
        The most significant pairs and sender -> receiver combinations shown.
    max_columns
        The most significant pairs and sender -> receiver combinations shown.
    title
        Axes title (default by test).
    theme
        ``analysis.plotting.LIGHT`` (default) or ``DARK``.

    Returns
    -------
    matplotlib.figure.Figure
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


def save_ligrec_figure(result: LigrecResult | SpatialLigrecResult | pd.DataFrame, path: str | os.PathLike, **kwargs: Any) -> Path:
    """:func:`plot_ligrec` written atomically to ``path`` (PNG / SVG by suffix).

    Parameters
    ----------
    result
        As :func:`plot_ligrec`.
    path
        Output file.
    **kwargs
        Passed to :func:`plot_ligrec`.

    Returns
    -------
    pathlib.Path
    """
    from napari_carspatial.analysis.plotting import LIGHT
    from napari_carspatial.model.atomic import atomic_write

    fig = plot_ligrec(result, **kwargs)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor=(kwargs.get("theme") or LIGHT)["bg"]))
    return path
