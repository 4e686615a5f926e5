"""Matplotlib figures of analysis results (no Qt, no pyplot: the dock and ``carspatial analyze`` share them).

Every function draws into a given :class:`matplotlib.figure.Figure` from an
:class:`~napari_carspatial.analysis.results.AnalysisResult` and returns nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..model.atomic import atomic_write

#: dark theme matching napari's (the CLI uses LIGHT)
DARK = {"bg": "#262930", "fg": "#5a626c", "text": "#f0f1f2"}
LIGHT = {"bg": "#ffffff", "fg": "#444444", "text": "#111111"}

#: (table, colour-bar label, diverging?) of the matrix view of each statistic
MATRIX_VIEW = {
    "nhood": ("zscore", "enrichment z-score", True),
    "interactions": ("normalized", "fraction of the row type's edges", False),
    "nn_distances": ("nn_distance_um", "median distance to nearest (µm)", False),
    "niches": ("composition", "mean fraction of the 10-cell window", False),
}

#: the cell type whose curves are shown first (the question of this tool)
FOCUS = "CAR T"


def style_axes(ax, th) -> None:
    """Axes colours of a theme dict (``bg``, ``fg``, ``text``): the plots and the docks' canvases."""
    ax.set_facecolor(th["bg"])
    for s in ax.spines.values():
        s.set_color(th["fg"])
    ax.tick_params(colors=th["text"], labelsize=8)
    ax.xaxis.label.set_color(th["text"])
    ax.yaxis.label.set_color(th["text"])
    ax.title.set_color(th["text"])


_style = style_axes


def _heat(fig, ax, mat: pd.DataFrame, *, label: str, diverging: bool, th, title: str, vlim=None, annotate=True):
    vals = mat.to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    if diverging:
        v = vlim or (float(np.nanpercentile(np.abs(finite), 98)) if finite.size else 1.0)
        v = max(v, 1e-9)
        im = ax.imshow(vals, cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto")
    else:
        hi = vlim or (float(np.nanmax(finite)) if finite.size else 1.0)
        im = ax.imshow(vals, cmap="viridis", vmin=0, vmax=max(hi, 1e-9), aspect="auto")
    ax.set_xticks(range(mat.shape[1]))
    ax.set_xticklabels([str(c) for c in mat.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(mat.shape[0]))
    ax.set_yticklabels([str(r) for r in mat.index], fontsize=7)
    ax.set_title(title, fontsize=9, loc="left")
    if annotate and mat.size <= 144:
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                v = vals[i, j]
                if np.isfinite(v):
                    txt = f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"
                    ax.text(j, i, txt, ha="center", va="center", fontsize=5.5,
                            color="black" if (diverging and abs(v) < 0.5 * (vlim or np.nanmax(np.abs(finite)))) else "white")
    cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cb.set_label(label, fontsize=7, color=th["text"])
    cb.ax.tick_params(labelsize=7, colors=th["text"])
    _style(ax, th)


def _drop_empty(mat: pd.DataFrame) -> pd.DataFrame:
    """Drop types with no finite value in their row and column (absent from the region)."""
    ok_r = np.isfinite(mat.to_numpy(float)).any(axis=1)
    ok_c = np.isfinite(mat.to_numpy(float)).any(axis=0)
    if mat.shape[0] == mat.shape[1] and list(mat.index) == list(mat.columns):
        ok = ok_r & ok_c
        return mat.loc[ok, ok]
    return mat.loc[ok_r, ok_c]


def plot_matrix(fig, result, region: str, *, theme=DARK, compare: str | None = None) -> None:
    """Heatmap of a region's matrix; with ``compare``: both regions and their difference."""
    table, label, div = MATRIX_VIEW[result.statistic]
    fig.clear()
    if compare is None or compare == region:
        ax = fig.add_subplot(111)
        m = _drop_empty(result.matrix(table, region))
        _heat(fig, ax, m, label=label, diverging=div, th=theme, title=f"{region}")
        return
    a = result.matrix(table, region)
    b = result.matrix(table, compare)
    keep = [c for c in a.index if c in b.index]
    a, b = a.loc[keep, [c for c in a.columns if c in b.columns]], b.loc[keep, [c for c in a.columns if c in b.columns]]
    both = np.isfinite(a.to_numpy(float)).any(0) | np.isfinite(b.to_numpy(float)).any(0)
    if a.shape[0] == a.shape[1]:
        a, b = a.loc[both, both], b.loc[both, both]
    vals = np.abs(np.r_[a.to_numpy(float).ravel(), b.to_numpy(float).ravel()])
    vlim = float(np.nanpercentile(vals[np.isfinite(vals)], 98)) if np.isfinite(vals).any() else 1.0
    w_in, h_in = fig.get_size_inches()
    if w_in / h_in < 1.8:
        # a narrow dock: only the difference, large and annotated (each region alone via "—")
        ax = fig.add_subplot(111)
        _heat(fig, ax, a - b, label=f"{label}: {region} − {compare}", diverging=True, th=theme,
              title=f"difference {region} − {compare} (red: higher in {region})")
        return
    axs = fig.subplots(1, 3)
    _heat(fig, axs[0], a, label=label, diverging=div, th=theme, title=region, vlim=vlim, annotate=False)
    _heat(fig, axs[1], b, label=label, diverging=div, th=theme, title=compare, vlim=vlim, annotate=False)
    _heat(fig, axs[2], a - b, label=f"difference ({region} − {compare})", diverging=True, th=theme,
          title=f"{region} − {compare}", annotate=False)
    for ax in axs[1:]:
        ax.set_yticklabels([])


def plot_cooccurrence(fig, result, region: str, *, focus: str = FOCUS, theme=DARK, compare: str | None = None) -> None:
    """Co-occurrence ratio of every type around ``focus`` against distance (µm)."""
    fig.clear()
    ax = fig.add_subplot(111)
    df = result.tables["cooccurrence"]
    cats = list(dict.fromkeys(df["cell_type"]))
    if focus not in cats:
        focus = cats[0]
    cmap = __import__("matplotlib").colormaps["tab10"]
    for rg, ls in ((region, "-"), (compare, "--")):
        if rg is None or (rg == region and ls == "--"):
            continue
        d = df[(df["region"] == rg) & (df["cell_type"] == focus)]
        for k, (nt, g) in enumerate(d.groupby("neighbour_type", sort=False)):
            if not np.any(g["ratio"].to_numpy() > 0):
                continue
            ax.plot(g["distance_um"], g["ratio"], ls, color=cmap(k % 10), lw=1.4,
                    label=f"{nt}" if ls == "-" else None)
    ax.axhline(1.0, color=theme["fg"], lw=0.8, ls=":")
    ax.set_xlabel("distance d (µm)", fontsize=8)
    ax.set_ylabel(f"p(type within d of {focus}) / p(type)", fontsize=8)
    title = f"co-occurrence around {focus}: {region}" + (f" (solid) vs {compare} (dashed)" if compare and compare != region else "")
    ax.set_title(title, fontsize=9, loc="left")
    leg = ax.legend(fontsize=6.5, ncol=2, frameon=False)
    for t in leg.get_texts():
        t.set_color(theme["text"])
    _style(ax, theme)


def plot_ripley(fig, result, region: str, *, theme=DARK, compare: str | None = None, focus: str = FOCUS) -> None:
    fig.clear()
    ax = fig.add_subplot(111)
    df = result.tables["ripley"]
    d = df[df["region"] == region]
    mode = str(d["mode"].iloc[0]) if len(d) else "L"
    cmap = __import__("matplotlib").colormaps["tab10"]
    for k, (ct, g) in enumerate(d.groupby("cell_type", sort=False)):
        lw = 2.2 if ct == focus else 1.1
        ax.plot(g["distance_um"], g["stats"], color=cmap(k % 10), lw=lw, label=str(ct))
        if ct == focus and g["csr_lo"].notna().any():
            ax.fill_between(g["distance_um"], g["csr_lo"], g["csr_hi"], color=cmap(k % 10), alpha=0.2,
                            label=f"{ct}: random (CSR) envelope")
    if mode == "L":
        t = np.asarray(sorted(d["distance_um"].unique()))
        ax.plot(t, t, ":", color=theme["fg"], lw=1, label="L(t) = t (random)")
    ax.set_xlabel("distance t (µm)", fontsize=8)
    ax.set_ylabel({"L": "Ripley's L(t) (µm)", "G": "G(t): fraction with NN ≤ t", "F": "F(t): empty-space fraction ≤ t"}[mode], fontsize=8)
    ax.set_title(f"Ripley's {mode}: {region}", fontsize=9, loc="left")
    leg = ax.legend(fontsize=6.5, ncol=2, frameon=False)
    for t in leg.get_texts():
        t.set_color(theme["text"])
    _style(ax, theme)


def plot_cart(fig, result, region: str, *, theme=DARK, compare: str | None = None) -> None:
    """Infiltration profile (CAR T density vs signed distance) and key fractions per region."""
    fig.clear()
    ax, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.2, 1]})
    prof = result.tables["infiltration"]
    regions = list(dict.fromkeys(prof["region"]))
    show = [r for r in regions if r in (region, compare)] if compare else regions
    cmap = __import__("matplotlib").colormaps["tab10"]
    for k, rg in enumerate(show):
        p = prof[prof["region"] == rg]
        mid = 0.5 * (p["bin_start_um"] + p["bin_end_um"])
        ax.plot(mid, p["density_per_mm2"], "-o", ms=2.5, lw=1.4, color=cmap(k % 10), label=rg)
    ax.axvline(0, color=theme["fg"], lw=1, ls="--")
    ax.text(0.02, 0.97, "inside tumour", transform=ax.transAxes, fontsize=7, va="top", color=theme["text"])
    ax.text(0.98, 0.97, "stroma", transform=ax.transAxes, fontsize=7, va="top", ha="right", color=theme["text"])
    ax.set_xlabel("signed distance to tumour boundary (µm)", fontsize=8)
    ax.set_ylabel("CAR T density (cells/mm²)", fontsize=8)
    ax.set_title("CAR T infiltration profile (25 µm bins)", fontsize=9, loc="left")
    leg = ax.legend(fontsize=7, frameon=False, loc="center right")
    for t in leg.get_texts():
        t.set_color(theme["text"])
    _style(ax, theme)
    m = result.tables["metrics"]
    keys = ["frac_car_t_within_r_of_tumor", "frac_car_t_contact_tumor", "frac_car_t_contact_myeloid",
            "frac_car_t_contact_pdl1_macrophage", "antigen_neg_fraction", "frac_car_t_pd1_pos"]
    labels = ["CAR T near tumour", "CAR T–tumour contact", "CAR T–myeloid contact", "CAR T–PD-L1+ mac.",
              "antigen-neg. tumour", "PD-1+ CAR T"]
    w = m.pivot(index="metric", columns="region", values="value")
    y = np.arange(len(keys))
    h = 0.8 / max(1, len(show))
    for k, rg in enumerate(show):
        vals = [float(w.loc[key, rg]) if key in w.index else np.nan for key in keys]
        dens = float(w.loc["car_t_density_per_mm2", rg]) if "car_t_density_per_mm2" in w.index else np.nan
        ax2.barh(y + k * h - 0.4 + h / 2, np.nan_to_num(vals), height=h, color=cmap(k % 10),
                 label=f"{rg}: {dens:.0f} CAR T/mm²")
    ax2.set_yticks(y)
    ax2.set_yticklabels(labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("fraction", fontsize=8)
    ax2.set_title("CAR T measures per region", fontsize=9, loc="left")
    leg2 = ax2.legend(fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for t in leg2.get_texts():
        t.set_color(theme["text"])
    _style(ax2, theme)


def plot_centrality(fig, result, region: str, *, theme=DARK, compare: str | None = None) -> None:
    fig.clear()
    df = result.tables["centrality"]
    w_in, h_in = fig.get_size_inches()
    # a narrow dock stacks the three panels; a wide figure puts them side by side
    axs = fig.subplots(3, 1) if w_in / h_in < 1.8 else fig.subplots(1, 3)
    cols = ["degree_centrality", "closeness_centrality", "average_clustering"]
    cmap = __import__("matplotlib").colormaps["tab10"]
    show = [region] + ([compare] if compare and compare != region else [])
    for ax, col in zip(axs, cols, strict=False):
        for k, rg in enumerate(show):
            d = df[df["region"] == rg].dropna(subset=[col])
            y = np.arange(len(d))
            h = 0.8 / len(show)
            ax.barh(y + k * h - 0.4 + h / 2, d[col], height=h, color=cmap(k), label=rg)
            ax.set_yticks(y)
            ax.set_yticklabels(d["cell_type"] if ax is axs[0] else [], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(col.replace("_", " "), fontsize=8, loc="left")
        _style(ax, theme)
    leg = axs[-1].legend(fontsize=7, frameon=False)
    for t in leg.get_texts():
        t.set_color(theme["text"])


def plot_result(fig, result, region: str, *, compare: str | None = None, theme=DARK, focus: str = FOCUS) -> None:
    """The default figure of a result (dispatch on the statistic)."""
    st = result.statistic
    if st in MATRIX_VIEW:
        if st == "niches":
            region = result.regions[0]
            compare = None
        plot_matrix(fig, result, region, theme=theme, compare=compare)
    elif st == "cooccurrence":
        plot_cooccurrence(fig, result, region, theme=theme, compare=compare, focus=focus)
    elif st == "ripley":
        plot_ripley(fig, result, region, theme=theme, compare=compare, focus=focus)
    elif st == "cart":
        plot_cart(fig, result, region, theme=theme, compare=compare)
    elif st == "centrality":
        plot_centrality(fig, result, region, theme=theme, compare=compare)
    else:  # pragma: no cover
        raise ValueError(f"no plot for {st!r}")
    fig.patch.set_facecolor(theme["bg"])


def save_figure(result, region: str, path, *, compare: str | None = None, size=(8, 5), dpi=130) -> None:
    """Write the result's figure to ``path`` (PNG / SVG by suffix), light theme, headless."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    plot_result(fig, result, region, compare=compare, theme=LIGHT)
    path = Path(path)
    if not path.suffix:  # as savefig: no suffix -> the default format, its suffix appended
        from matplotlib import rcParams

        path = path.with_name(f"{path.name}.{rcParams['savefig.format']}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor=LIGHT["bg"]))
