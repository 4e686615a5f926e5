"""Matplotlib figures of analysis results (no Qt, no pyplot: the dock and ``carspatial analyze`` share them).

Every function draws into a given :class:`matplotlib.figure.Figure` from an
:class:`~napari_carspatial.analysis.results.AnalysisResult` and returns nothing.

What every figure keeps to, so that it cannot mislead:

* a cell type has the colour the legend and the slide give it (``colors=``, default the colours
  stored with the result, which :func:`~napari_carspatial.analysis.results.iter_compute` takes
  from ``uns[f"{key}_colors"]`` through :mod:`napari_carspatial.model.palette`);
* many types are small multiples (one panel per type) or a chosen subset (``types=``), never a
  dozen overlapping lines;
* fractions carry their counts (``k/n``) and Wilson intervals, densities their intervals,
  comparisons are differences with intervals (log2 O/E for enrichment: z-scores grow with the
  number of cells, so their difference has no meaning);
* labels are plain words with units (:func:`metric_label`), not column names;
* a value that could not be computed is shown as "n/a" with its reason, never as 0; nothing is
  drawn beyond the axis limits.

One module (1199 lines) because it is one figure module: every plot shares the same styling helpers
(colours from the result, legends, small-multiple grids, metric labels, forest and difference
panels, the n/a convention), so the rules listed above are enforced in one place;
:func:`plot_result` dispatches to them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.atomic import atomic_write

#: dark theme matching napari's (the CLI uses LIGHT)
DARK = {"bg": "#262930", "fg": "#5a626c", "text": "#f0f1f2", "muted": "#9aa1a9"}
LIGHT = {"bg": "#ffffff", "fg": "#444444", "text": "#111111", "muted": "#777777"}

#: (table, colour-bar label, diverging?) of the matrix view of each statistic
MATRIX_VIEW = {
    "nhood": ("log2_oe", "log2 observed / expected neighbours", True),
    "interactions": ("normalized", "fraction of the row type's neighbours", False),
    "nn_distances": ("nn_distance_um", "median distance to nearest (µm)", False),
    "niches": ("composition", "mean fraction of the 10-cell window", False),
}

#: most panels of a small-multiples figure before the rest is left out (and said so)
MAX_PANELS = 16

# --------------------------------------------------------------------------- words
#: metric -> plain label (``{r}``: the near radius); the unit is added by :func:`metric_label`
METRIC_LABELS: dict[str, str] = {
    "n_cells": "Cells",
    "n_car_t": "CAR T cells",
    "n_tumor": "Tumour cells",
    "n_myeloid": "Myeloid cells",
    "area_mm2": "Area",
    "car_t_density_per_mm2": "CAR T density",
    "tumor_density_per_mm2": "Tumour density",
    "myeloid_density_per_mm2": "Myeloid density",
    "frac_car_t_within_r_of_tumor": "CAR T within {r} of a tumour cell",
    "frac_car_t_contact_tumor": "CAR T touching tumour",
    "frac_car_t_contact_myeloid": "CAR T touching myeloid",
    "frac_car_t_contact_pdl1_macrophage": "CAR T touching PD-L1+ macrophages",
    "antigen_neg_fraction": "Antigen-negative tumour",
    "antigen_neg_clustering": "Antigen-negative clustering (1 = random)",
    "antigen_neg_clustering_z": "Antigen-negative clustering z (grows with n)",
    "log2_oe_car_t_tumor": "CAR T–tumour neighbours, log2 obs/exp",
    "log2_oe_car_t_myeloid": "CAR T–myeloid neighbours, log2 obs/exp",
    "n_contacts_car_t_tumor": "CAR T–tumour neighbour pairs",
    "n_contacts_car_t_myeloid": "CAR T–myeloid neighbour pairs",
    "infiltration_median_um": "CAR T median distance to tumour edge (< 0 inside)",
}
#: what a fraction is a fraction of
FRACTION_OF = {"antigen_neg_fraction": "of tumour cells"}
#: unit shown for a unit code of ``region_metrics``
UNIT_TEXT = {"cells": "n", "fraction": "%", "O/E ratio": "ratio", "log2 ratio": "log2", "edges": "n"}

#: table column -> plain header
COLUMN_LABELS: dict[str, str] = {
    "region": "Region", "metric": "Measure", "value": "Value", "unit": "Unit", "note": "Note",
    "cell_type": "Cell type", "neighbour_type": "Neighbour type", "distance_um": "Distance (µm)",
    "ratio": "Co-occurrence ratio", "row": "From", "col": "To", "observed": "Observed neighbours (n)",
    "expected": "Expected neighbours (n)", "log2_oe": "log2 obs/exp", "lo": "95% low", "hi": "95% high",
    "n_row": "From cells (n)", "n_col": "To cells (n)", "zscore": "z (grows with n)", "method": "Interval",
    "count": "Count (n)", "nobs": "Of (n)", "stats": "Statistic", "csr_lo": "Random 2.5%", "csr_hi": "Random 97.5%",
    "csr_mean": "Random mean", "mode": "Function", "degree_centrality": "Degree centrality",
    "closeness_centrality": "Closeness centrality", "average_clustering": "Mean clustering",
    "phenotype1": "Type A", "phenotype2": "Type B", "total1": "A cells (n)", "total2": "B cells (n)",
    "p1_touch_p2": "A touching B (n)", "p2_touch_p1": "B touching A (n)", "touch_pairs": "Touching pairs (n)",
    "from": "From", "to": "To", "radius": "Radius (µm)", "from_count": "From cells (n)", "to_count": "To cells (n)",
    "from_with": "From cells with one (n)", "within_mean": "Mean within radius", "niche": "Niche",
    "n_cells": "Cells (n)", "bin_start_um": "From (µm)", "bin_end_um": "To (µm)", "car_t_count": "CAR T cells (n)",
    "area_mm2": "Area (mm²)", "density_per_mm2": "Density (cells/mm²)", "density_lo": "95% low",
    "density_hi": "95% high", "ligand": "Ligand", "receptor": "Receptor", "source": "Ligand gene",
    "target": "Receptor gene", "sender": "Sender", "receiver": "Receiver", "n_edges": "Neighbour pairs (n)",
    "n_senders": "Senders (n)", "n_receivers": "Receivers (n)", "score": "Score", "z": "z", "pvalue": "p",
    "pvalue_adj": "FDR", "log2_enrichment": "log2 enrichment", "reason": "Not tested because",
    "cluster_1": "Sender", "cluster_2": "Receiver", "mean": "Mean", "cell_id": "Cell id",
    "region_a": "Region A", "region_b": "Region B", "difference": "A − B", "a": "A", "b": "B",
}


def _marker_of(metric: str) -> str | None:
    m = re.fullmatch(r"frac_car_t_(.+)_pos", metric)
    return m.group(1) if m else None


def metric_label(metric: str, unit: str | None = None, *, params: Mapping | None = None, with_unit: bool = True) -> str:
    """Plain label of a CAR T measure, with its unit: ``n_car_t`` -> ``"CAR T cells (n)"``,
    ``area_mm2`` -> ``"Area (mm²)"``, ``frac_car_t_pd1_pos`` -> ``"PD-1+ CAR T (% of CAR T)"``."""
    p = dict(params or {})
    r = p.get("near_radius_um", 30.0)
    unit_px = unit in ("px", "Mpx²", "cells/Mpx²")
    r_txt = f"{float(r):g} {'px' if unit_px or p.get('pixel_size_um', 1) is None else 'µm'}"
    mk = _marker_of(metric)
    if metric in METRIC_LABELS:
        base = METRIC_LABELS[metric].format(r=r_txt)
    elif mk is not None:
        base = f"{mk.upper().replace('KI67', 'Ki-67').replace('PD1', 'PD-1')}+ CAR T"
    else:
        base = metric.replace("_", " ")
    if not with_unit:
        return base
    if metric.startswith("frac_") or metric == "antigen_neg_fraction":
        return f"{base} (% {FRACTION_OF.get(metric, 'of CAR T cells')})"
    u = UNIT_TEXT.get(unit or "", unit or "")
    return f"{base} ({u})" if u else base


def column_label(column: str) -> str:
    """Plain header of a result-table column (``neighbour_type`` -> ``"Neighbour type"``)."""
    return COLUMN_LABELS.get(str(column), str(column).replace("_", " "))


def short_reason(note: str) -> str:
    """A few words of why a value is missing, for a figure (the table keeps the whole note)."""
    n = str(note or "")
    if "not mapped" in n:
        m = re.match(r"(.+?) roles? not mapped", n)
        return f"{m.group(1)} not mapped" if m else "role not mapped"
    m = re.match(r"no (.+?) cells in this region", n)
    if m:
        return f"no {m.group(1)} cells here"
    return n.split(";")[0][:40] if n else "n/a"


# --------------------------------------------------------------------------- colours
def style_axes(ax, th) -> None:
    """Axes colours of a theme dict (``bg``, ``fg``, ``text``): the plots and the docks' canvases."""
    ax.set_facecolor(th["bg"])
    for s in ax.spines.values():
        s.set_color(th["fg"])
    ax.tick_params(colors=th["text"], labelsize=7)
    ax.xaxis.label.set_color(th["text"])
    ax.yaxis.label.set_color(th["text"])
    ax.title.set_color(th["text"])


_style = style_axes


def _m(th) -> str:
    """The theme's muted colour (secondary text, reference lines)."""
    return th.get("muted", th["fg"])


def result_colors(result, colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """Cell-type colours of a result: ``colors`` (the legend's, given by the dock) over the ones
    stored with the result at compute time."""
    out = dict((result.params or {}).get("colors") or {})
    out.update(colors or {})
    return out


def _fallback(k: int) -> str:
    from ..model.palette import DEFAULT_PALETTE

    return DEFAULT_PALETTE[k % len(DEFAULT_PALETTE)]


def type_color(colors: Mapping[str, str], name, k: int = 0) -> str:
    """The legend colour of type ``name`` (a palette colour when the result has none)."""
    return colors.get(str(name)) or _fallback(k)


def _legend(ax, th, **kw):
    leg = ax.legend(frameon=False, fontsize=kw.pop("fontsize", 6.5), **kw)
    for t in leg.get_texts():
        t.set_color(th["text"])
    return leg


def _strip(ax, names, colors, *, axis: str, n_other: int) -> None:
    """Coloured squares of the types along a heatmap axis, inside the axes (never clipped)."""
    for k, nm in enumerate(names):
        c = type_color(colors, nm, k)
        if axis == "y":
            ax.add_patch(__import__("matplotlib").patches.Rectangle((n_other - 0.5, k - 0.5), 0.35, 1.0,
                                                                     color=c, lw=0, clip_on=True))
        else:
            ax.add_patch(__import__("matplotlib").patches.Rectangle((k - 0.5, n_other - 0.5), 1.0, 0.35,
                                                                     color=c, lw=0, clip_on=True))


# --------------------------------------------------------------------------- heatmaps
def _heat(fig, ax, mat: pd.DataFrame, *, label: str, diverging: bool, th, title: str, vlim=None, annotate=True,
          colors: Mapping[str, str] | None = None, marks: np.ndarray | None = None, fmt=None, col_colors=None,
          percent: bool = False):
    import matplotlib

    vals = mat.to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    cmap = matplotlib.colormaps["RdBu_r" if diverging else "viridis"].with_extremes(bad=th["fg"])
    if diverging:
        v = vlim or (float(np.nanpercentile(np.abs(finite), 98)) if finite.size else 1.0)
        v = max(v, 1e-9)
        norm = (-v, v)
    else:
        hi = vlim or (float(np.nanmax(finite)) if finite.size else 1.0)
        norm = (0, max(hi, 1e-9))
    nr, nc = vals.shape
    strips = colors is not None
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=norm[0], vmax=norm[1], aspect="auto",
                   extent=(-0.5, nc - 0.5, nr - 0.5, -0.5))
    if strips:   # a column of the row types' colours right of the matrix, a row of the columns' below
        _strip(ax, list(mat.index), colors, axis="y", n_other=nc)
        _strip(ax, list(mat.columns), col_colors if col_colors is not None else colors, axis="x", n_other=nr)
        ax.set_xlim(-0.5, nc - 0.5 + 0.45)
        ax.set_ylim(nr - 0.5 + 0.45, -0.5)
    ax.set_xticks(range(nc))
    ax.set_xticklabels([str(c) for c in mat.columns], rotation=45, ha="right", fontsize=6.5)
    ax.set_yticks(range(nr))
    ax.set_yticklabels([str(r) for r in mat.index], fontsize=6.5)
    ax.set_title(title, fontsize=8, loc="left")
    if annotate and mat.size <= 196:
        big = max(abs(norm[0]), abs(norm[1]))
        for i in range(nr):
            for j in range(nc):
                v = vals[i, j]
                if not np.isfinite(v):
                    continue
                txt = fmt(v) if fmt else (f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}")
                if marks is not None and marks[i, j]:
                    txt += "*"
                light = (abs(v) < 0.5 * big) if diverging else (v > 0.6 * big)
                ax.text(j, i, txt, ha="center", va="center", fontsize=5.5 if mat.size > 64 else 6.5,
                        color="black" if light else "white")
    cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cb.set_label(label, fontsize=7, color=th["text"])
    if percent:   # fractions shown as % (the cells' numbers are %)
        from matplotlib.ticker import PercentFormatter

        cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    cb.ax.tick_params(labelsize=6.5, colors=th["text"])
    _style(ax, th)


def _drop_empty(mat: pd.DataFrame) -> pd.DataFrame:
    """Drop types with no finite value in their row and column (absent from the region)."""
    ok_r = np.isfinite(mat.to_numpy(float)).any(axis=1)
    ok_c = np.isfinite(mat.to_numpy(float)).any(axis=0)
    if mat.shape[0] == mat.shape[1] and list(mat.index) == list(mat.columns):
        ok = ok_r & ok_c
        return mat.loc[ok, ok]
    return mat.loc[ok_r, ok_c]


def _wide(df: pd.DataFrame, value: str, rows: str = "row", cols: str = "col") -> pd.DataFrame:
    r = list(dict.fromkeys(df[rows]))
    c = list(dict.fromkeys(df[cols]))
    return df.pivot(index=rows, columns=cols, values=value).reindex(index=r, columns=c)


def _select(mat: pd.DataFrame, types: Sequence[str] | None) -> pd.DataFrame:
    if not types:
        return mat
    keep = [str(t) for t in types]
    rows = [r for r in mat.index if str(r) in keep] or list(mat.index)
    cols = [c for c in mat.columns if str(c) in keep] or list(mat.columns)
    return mat.loc[rows, cols]


def plot_matrix(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None) -> None:
    """Heatmap of a region's matrix; with ``compare`` the difference (region − compare).

    Enrichment is shown as log2 observed / expected neighbours (an asterisk: the 95% interval
    excludes 0) and compared as the difference of log2 O/E with MOVER intervals, never as a
    difference of z-scores.
    """
    table, label, div = MATRIX_VIEW[result.statistic]
    cols = result_colors(result, colors)
    fig.clear()
    ax = fig.add_subplot(111)
    st = result.statistic
    if st == "nhood" and "log2_oe" not in result.tables:   # a result stored before intervals existed
        table, label = "zscore", "z-score (grows with the number of cells: do not compare regions)"
    col_colors = cols if st != "niches" else cols
    row_colors = cols
    if compare is None or compare == region:
        if table == "log2_oe":
            d = result.tables["log2_oe"]
            d = d[d["region"] == region]
            m = _select(_drop_empty(_wide(d, "log2_oe")), types)
            lo, hi = _wide(d, "lo").loc[m.index, m.columns], _wide(d, "hi").loc[m.index, m.columns]
            marks = ((lo > 0) | (hi < 0)).to_numpy()
            _heat(fig, ax, m, label=label, diverging=True, th=theme, colors=row_colors, marks=marks,
                  title=f"{region}: neighbours, log2 observed / expected\n(* the 95% interval excludes 0)")
        else:
            m = _select(_drop_empty(result.matrix(table, region)), types)
            _heat(fig, ax, m, label=label, diverging=div, th=theme, title=region, colors=row_colors,
                  col_colors=col_colors,
                  fmt=(lambda v: f"{100 * v:.0f}") if st in ("interactions", "niches") else None)
            if st in ("interactions", "niches"):
                ax.set_title(f"{region} ({'%' if st == 'interactions' else '% of window'}; rows = "
                             f"{'from' if st == 'interactions' else 'niche'})", fontsize=8, loc="left")
        return
    if table == "log2_oe" and "comparisons" in result.tables:
        c = result.tables["comparisons"]
        c = c[(c["region_a"] == region) & (c["region_b"] == compare)]
        m = _select(_drop_empty(_wide(c, "difference")), types)
        lo, hi = _wide(c, "lo").loc[m.index, m.columns], _wide(c, "hi").loc[m.index, m.columns]
        marks = ((lo > 0) | (hi < 0)).to_numpy()
        _heat(fig, ax, m, label=f"log2 O/E: {region} − {compare}", diverging=True, th=theme, colors=cols,
              marks=marks, title=f"{region} − {compare}: difference of log2 obs / exp neighbours\n"
                                 "(* the 95% interval excludes 0)")
        return
    a = result.matrix(table, region)
    b = result.matrix(table, compare)
    keep = [x for x in a.index if x in b.index]
    kc = [x for x in a.columns if x in b.columns]
    diff = _select(_drop_empty(a.loc[keep, kc] - b.loc[keep, kc]), types)
    note = "" if table != "zscore" else " (z-scores: stored before intervals; re-run for log2 O/E)"
    _heat(fig, ax, diff, label=f"{label}: {region} − {compare}", diverging=True, th=theme, colors=cols,
          title=f"{region} − {compare}: difference, no interval{note}",
          fmt=(lambda v: f"{100 * v:+.0f}") if st in ("interactions", "niches") else None)


# --------------------------------------------------------------------------- small multiples
def _grid(fig, n: int):
    """``n`` axes in a grid shaped for the figure, shared x and y; returns (axes, rows, cols)."""
    w, h = fig.get_size_inches()
    ncols = max(1, min(n, round(math.sqrt(n * w / max(h, 1e-6)))))
    nrows = math.ceil(n / ncols)
    axs = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    flat = axs.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    for k in range(max(0, n - ncols), n):   # the lowest panel of each column shows its x ticks
        if k + ncols >= n:
            flat[k].xaxis.set_tick_params(labelbottom=True)
    return flat[:n], nrows, ncols


_FIT_TITLE = None


def _fit_title_class():
    """A text that shortens itself with "…" to its axes' width whenever it is drawn or laid out,
    so a long type name never runs into the next panel (the full name is in the legend)."""
    global _FIT_TITLE
    if _FIT_TITLE is None:
        from matplotlib.text import Text

        class FitTitle(Text):
            def __init__(self, ax, full: str, **kw):
                super().__init__(0.0, 1.0, full, transform=ax.transAxes, ha="left", va="bottom", **kw)
                self._ax, self.full_text = ax, full

            def _fit(self, renderer) -> None:
                avail = self._ax.get_window_extent(renderer).width
                self.set_text(self.full_text)
                if avail <= 0 or super().get_window_extent(renderer).width <= avail:
                    return
                lo, hi = 0, len(self.full_text)      # the longest prefix + "…" that fits
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    self.set_text(self.full_text[:mid].rstrip() + "…")
                    if super().get_window_extent(renderer).width <= avail:
                        lo = mid
                    else:
                        hi = mid - 1
                self.set_text(self.full_text[:lo].rstrip() + "…")

            def get_window_extent(self, renderer=None, dpi=None):
                r = renderer or self.get_figure(root=True)._get_renderer()
                self._fit(r)
                return super().get_window_extent(r, dpi)

            def draw(self, renderer):
                self._fit(renderer)
                super().draw(renderer)

        _FIT_TITLE = FitTitle
    return _FIT_TITLE


def _panel_title(ax, name: str, color: str, th) -> None:
    """The panel's type name, with a square of its legend colour in front; a name longer than the
    panel is shortened with "…" so it never runs into its neighbour."""
    from matplotlib.transforms import offset_copy

    t = _fit_title_class()(ax, f"     {name}", fontsize=6.8, color=th["text"])
    t.set_transform(offset_copy(ax.transAxes, fig=ax.figure, y=2, units="points"))
    ax.add_artist(t)
    t.set_clip_on(False)                  # add_artist clips to the axes; the title sits above them
    ax.text(0.0, 1.0, "■", transform=offset_copy(ax.transAxes, fig=ax.figure, y=2, units="points"), fontsize=8,
            color=color, ha="left", va="bottom")


def default_focus(result) -> str | None:
    """The type a per-type figure centres on: the result's ``focus`` (the CAR T role's type), else the first."""
    f = (result.params or {}).get("focus")
    return str(f) if f else None


def _rank_types(d: pd.DataFrame, key: str, value: str) -> list[str]:
    """Types ordered by how far their curve strays from 1 (the most informative first)."""
    dev = d.groupby(key, sort=False)[value].apply(lambda v: float(np.nanmax(np.abs(np.log2(np.clip(v, 1e-3, None))))
                                                            if np.isfinite(v).any() else -1))
    return list(dev.sort_values(ascending=False, kind="stable").index)


def plot_cooccurrence(fig, result, region: str, *, focus: str | None = None, theme=DARK, compare: str | None = None,
                      colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None,
                      max_panels: int = MAX_PANELS) -> None:
    """Co-occurrence around ``focus``: one panel per neighbour type (its legend colour), ratio
    p(type within d of focus) / p(type) against d; ``compare`` dashed in the same panel."""
    fig.clear()
    cols = result_colors(result, colors)
    df = result.tables["cooccurrence"]
    cats = list(dict.fromkeys(df["cell_type"]))
    focus = focus or default_focus(result)
    if focus not in cats:
        focus = cats[0]
    d = df[(df["region"] == region) & (df["cell_type"] == focus)]
    present = [t for t in dict.fromkeys(d["neighbour_type"]) if np.any(d.loc[d["neighbour_type"] == t, "ratio"] > 0)]
    order = [str(t) for t in types if str(t) in present] if types else _rank_types(
        d[d["neighbour_type"].isin(present)], "neighbour_type", "ratio")
    shown, left = order[:max_panels], order[max_panels:]
    if not shown:
        ax = fig.add_subplot(111)
        ax.text(0.5, 0.5, f"no neighbours of {focus} in {region}", ha="center", va="center", color=theme["text"],
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    axs, nrows, ncols = _grid(fig, len(shown))
    cidx = {c: k for k, c in enumerate(cats)}
    ymax = 1.0
    for ax, nt in zip(axs, shown, strict=True):
        col = type_color(cols, nt, cidx.get(nt, 0))
        for rg, ls in ((region, "-"), (compare, "--")):
            if rg is None or (rg == region and ls == "--"):
                continue
            g = df[(df["region"] == rg) & (df["cell_type"] == focus) & (df["neighbour_type"] == nt)]
            if len(g) and np.any(g["ratio"].to_numpy(float) > 0):
                ax.plot(g["distance_um"], g["ratio"], ls, color=col, lw=1.5)
                ymax = max(ymax, float(np.nanmax(g["ratio"].to_numpy(float))))
            elif ls == "--":   # no such neighbour (or no focus cell) there: say so, not a missing line
                ax.text(0.97, 0.06, f"none in {rg}", transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=5.5, color=_m(theme), style="italic")
        ax.axhline(1.0, color=_m(theme), lw=0.7, ls=":")
        _style(ax, theme)
        _panel_title(ax, nt, col, theme)
        ax.tick_params(labelsize=6)
    for ax in axs:
        ax.set_ylim(0, ymax * 1.08)
    unit = "µm" if (result.params or {}).get("pixel_size_um", 1) is not None else "px"
    fig.supxlabel(f"distance d from {focus} ({unit})", fontsize=7.5, color=theme["text"])
    fig.supylabel(f"p(type within d of {focus}) / p(type); 1 = random", fontsize=7.5, color=theme["text"])
    title = f"Co-occurrence around {focus}: {region}" + (
        f" (solid) vs {compare} (dashed)" if compare and compare != region else "")
    if left:
        title += f"; {len(left)} more types not shown"
    fig.suptitle(title, fontsize=8.5, color=theme["text"], x=0.01, ha="left")


def plot_ripley(fig, result, region: str, *, theme=DARK, compare: str | None = None, focus: str | None = None,
                colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None,
                max_panels: int = MAX_PANELS) -> None:
    """Ripley's function per type (its legend colour), one panel each, with the random (CSR) envelope."""
    fig.clear()
    cols = result_colors(result, colors)
    df = result.tables["ripley"]
    d = df[df["region"] == region]
    mode = str(d["mode"].iloc[0]) if len(d) else "L"
    cats = list(dict.fromkeys(df["cell_type"]))
    present = list(dict.fromkeys(d["cell_type"]))
    focus = focus or default_focus(result)
    order = [str(t) for t in types if str(t) in present] if types else (
        [focus] if focus in present else []) + [t for t in present if t != focus]
    shown, left = order[:max_panels], order[max_panels:]
    if not shown:
        ax = fig.add_subplot(111)
        ax.text(0.5, 0.5, f"no cells in {region}", ha="center", va="center", transform=ax.transAxes,
                color=theme["text"])
        ax.set_axis_off()
        return
    axs, _, _ = _grid(fig, len(shown))
    cidx = {c: k for k, c in enumerate(cats)}
    for ax, ct in zip(axs, shown, strict=True):
        col = type_color(cols, ct, cidx.get(ct, 0))
        for rg, ls in ((region, "-"), (compare, "--")):
            if rg is None or (rg == region and ls == "--"):
                continue
            g = df[(df["region"] == rg) & (df["cell_type"] == ct)]
            if not len(g):
                continue
            if g["csr_lo"].notna().any() and ls == "-":
                ax.fill_between(g["distance_um"], g["csr_lo"], g["csr_hi"], color=_m(theme), alpha=0.35, lw=0)
            ax.plot(g["distance_um"], g["stats"], ls, color=col, lw=1.5)
        if mode == "L":
            t = np.asarray(sorted(d["distance_um"].unique()))
            ax.plot(t, t, ":", color=_m(theme), lw=0.7)
        _style(ax, theme)
        _panel_title(ax, ct, col, theme)
        ax.tick_params(labelsize=6)
    unit = "µm" if (result.params or {}).get("pixel_size_um", 1) is not None else "px"
    fig.supxlabel(f"distance t ({unit})", fontsize=7.5, color=theme["text"])
    fig.supylabel({"L": f"Ripley's L(t) ({unit}); grey = random", "G": "G(t): fraction with NN ≤ t",
                   "F": "F(t): empty-space fraction ≤ t"}.get(mode, mode), fontsize=7.5, color=theme["text"])
    title = f"Ripley's {mode}: {region}" + (f" (solid) vs {compare} (dashed)" if compare and compare != region else "")
    if left:
        title += f"; {len(left)} more types not shown"
    fig.suptitle(title, fontsize=8.5, color=theme["text"], x=0.01, ha="left")


# --------------------------------------------------------------------------- CAR T measures
#: the fractions of the CAR T figure, in order
CART_FRACTIONS = ("frac_car_t_within_r_of_tumor", "frac_car_t_contact_tumor", "frac_car_t_contact_myeloid",
                  "frac_car_t_contact_pdl1_macrophage", "antigen_neg_fraction")
CART_DENSITIES = ("car_t_density_per_mm2", "tumor_density_per_mm2", "myeloid_density_per_mm2")


def _car_color(result, cols) -> str:
    mapping = ((result.params or {}).get("metrics") or {}).get("role_mapping") or {}
    types = (mapping.get("roles") or {}).get("car_t")
    if isinstance(types, list) and types:
        return type_color(cols, types[0])
    return cols.get("CAR T", "#ff00ff")


def _intervals(result) -> pd.DataFrame | None:
    iv = result.tables.get("intervals")
    return iv if iv is not None and len(iv) else None


def cart_rows(result, region: str, compare: str | None = None) -> pd.DataFrame:
    """The CAR T measures of one region (and a second one) as the dock's table shows them.

    Columns ``metric, label, a, a_lo, a_hi, a_count, a_nobs, a_note, b ..., difference, lo, hi,
    note``; values as numbers (fractions as fractions), labels plain with units.
    """
    m = result.tables["metrics"]
    units = dict(zip(m["metric"], m.get("unit", pd.Series([""] * len(m))), strict=False))
    params = ((result.params or {}).get("metrics") or {})
    iv = _intervals(result)
    base = iv if iv is not None else m.assign(lo=np.nan, hi=np.nan, count=np.nan, nobs=np.nan, method="")
    metrics = list(dict.fromkeys(m["metric"]))

    def side(rg):
        d = base[base["region"] == rg].set_index("metric").reindex(metrics)
        return d

    a = side(region)
    out = pd.DataFrame({"metric": metrics,
                        "label": [metric_label(k, units.get(k), params=params) for k in metrics],
                        "unit": [units.get(k, "") for k in metrics]})
    for p, d in (("a", a),):
        out[f"{p}"] = d["value"].to_numpy(float)
        out[f"{p}_lo"], out[f"{p}_hi"] = d["lo"].to_numpy(float), d["hi"].to_numpy(float)
        out[f"{p}_count"], out[f"{p}_nobs"] = d["count"].to_numpy(float), d["nobs"].to_numpy(float)
        out[f"{p}_note"] = d["note"].fillna("").astype(str).replace("nan", "").to_numpy()
        out[f"{p}_method"] = d["method"].fillna("").astype(str).replace("nan", "").to_numpy()
    if compare and compare != region:
        b = side(compare)
        out["b"] = b["value"].to_numpy(float)
        out["b_lo"], out["b_hi"] = b["lo"].to_numpy(float), b["hi"].to_numpy(float)
        out["b_count"], out["b_nobs"] = b["count"].to_numpy(float), b["nobs"].to_numpy(float)
        out["b_note"] = b["note"].fillna("").astype(str).replace("nan", "").to_numpy()
        cmp = result.tables.get("comparisons")
        if cmp is not None and len(cmp):
            c = cmp[(cmp["region_a"] == region) & (cmp["region_b"] == compare)].set_index("metric").reindex(metrics)
            out["difference"] = c["difference"].to_numpy(float)
            out["lo"], out["hi"] = c["lo"].to_numpy(float), c["hi"].to_numpy(float)
            out["note"] = c["note"].fillna("").astype(str).replace("nan", "").to_numpy()
        else:
            out["difference"] = out["a"] - out["b"]
            out["lo"] = out["hi"] = np.nan
            out["note"] = "no interval (stored before intervals existed: re-run)"
    return out


def fmt_value(metric: str, v, lo=np.nan, hi=np.nan, count=np.nan, nobs=np.nan, unit: str = "", *,
              diff: bool = False) -> str:
    """One value as text: ``"64% [60–68] · 346/540"``, ``"1,758 [1,510 to 2,010]"``, ``"n/a"``; a
    difference of fractions in percentage points (``"+47 pts [+30 to +60]"``)."""
    if v is None or not np.isfinite(v):
        return "n/a"
    frac = metric.startswith("frac_") or metric == "antigen_neg_fraction"
    has = np.isfinite(lo) and np.isfinite(hi)
    if frac:
        s = 100.0
        if diff:
            txt = f"{s * v:+.0f} pts" + (f" [{s * lo:+.0f} to {s * hi:+.0f}]" if has else "")
        else:
            txt = f"{s * v:.0f}%" + (f" [{s * lo:.0f}–{s * hi:.0f}]" if has else "")
            if np.isfinite(count) and np.isfinite(nobs):
                txt += f" · {count:.0f}/{nobs:.0f}"
        return txt
    if unit in ("cells", "edges") and not diff:
        return f"{v:,.0f}"
    big = max(abs(v), abs(lo) if has else 0, abs(hi) if has else 0)
    if big >= 100 or unit in ("cells/mm²", "cells/Mpx²"):
        f = "{:+,.0f}" if diff else "{:,.0f}"
    elif big >= 10:
        f = "{:+.1f}" if diff else "{:.1f}"
    elif 0 < big < 0.1:   # a 100 µm IMC image is 0.01 mm²: three significant digits, not "0.00"
        f = "{:+.3g}" if diff else "{:.3g}"
    else:
        f = "{:+.2f}" if diff else "{:.2f}"
    txt = f.format(v)
    if has:
        txt += f" [{f.format(lo)} to {f.format(hi)}]"
    return txt


def _forest(ax, rows: pd.DataFrame, keys: Sequence[str], *, compare: bool, color: str, th, log: bool = False,
            xlim=None, region=None, other=None):
    """Points with interval whiskers, one row per measure: region A filled, B hollow; n/a rows say why."""
    y = np.arange(len(keys))
    d = rows.set_index("metric").reindex(list(keys))
    off = 0.16 if compare else 0.0
    lims = []
    for tag, dy, filled in (("a", -off, True), ("b", off, False)):
        if tag == "b" and not compare:
            continue
        v, lo, hi = d[tag].to_numpy(float), d[f"{tag}_lo"].to_numpy(float), d[f"{tag}_hi"].to_numpy(float)
        ok = np.isfinite(v)
        if log:
            ok &= v > 0
        lo_ = np.where(np.isfinite(lo), lo, v)
        hi_ = np.where(np.isfinite(hi), hi, v)
        if ok.any():   # an empty errorbar with clip_on=False has a (0, 0) extent: constrained layout
            # then counts the whole figure as this axis' decoration and collapses on the next draw
            ax.errorbar(v[ok], y[ok] + dy, xerr=[np.clip(v - lo_, 0, None)[ok], np.clip(hi_ - v, 0, None)[ok]],
                        fmt="o", ms=4.2, color=color, mfc=color if filled else th["bg"], mec=color, ecolor=color,
                        elinewidth=1.2, capsize=2, lw=0, label=region if tag == "a" else other, clip_on=False)
        lims += [lo_[ok], hi_[ok], v[ok]]
        for i in np.flatnonzero(~np.isfinite(v) | (log & (np.nan_to_num(v) <= 0))):
            note = d[f"{tag}_note"].iloc[i] if f"{tag}_note" in d else ""
            txt = ("0" if (log and np.isfinite(v[i]) and v[i] == 0) else "n/a: " + short_reason(note))
            yy = y[i] + dy
            if compare:   # the same n/a in both regions: one line between them, not two on top of each other
                va_, vb_ = d["a"].iloc[i], d["b"].iloc[i]
                same = (not np.isfinite(va_) and not np.isfinite(vb_)
                        and short_reason(d["a_note"].iloc[i] if "a_note" in d else "")
                        == short_reason(d["b_note"].iloc[i] if "b_note" in d else ""))
                if same and tag == "b":
                    continue
                if same:
                    yy, txt = y[i], txt + " (both)"
            ax.text(0.5 if not log else 0.02, yy, txt, transform=ax.get_yaxis_transform(), fontsize=6,
                    va="center", ha="center" if not log else "left", color=_m(th), style="italic")
    if xlim is not None:
        ax.set_xlim(*xlim)
    else:
        allv = np.concatenate([x for x in lims if x.size]) if any(x.size for x in lims) else np.array([1.0])
        allv = allv[np.isfinite(allv)]
        if log:
            pos = allv[allv > 0]
            lo, hi = (pos.min() / 1.6, pos.max() * 1.6) if pos.size else (1, 10)
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            _plain_log_ticks(ax)
        else:
            hi = float(allv.max()) if allv.size else 1.0
            ax.set_xlim(min(0.0, float(allv.min()) if allv.size else 0.0), hi * 1.08 if hi > 0 else 1.0)
    ax.set_yticks(y)
    ax.set_ylim(len(keys) - 0.5, -0.5)
    ax.grid(axis="x", color=th["fg"], lw=0.5, alpha=0.6)
    _style(ax, th)


def _plain_log_ticks(ax) -> None:
    """A log x axis labelled in plain numbers (600, 1,000, 2,000), at most ~5 labels: matplotlib's
    ``2×10³ 3×10³ 4×10³`` minor labels ran into each other in a dock-wide figure."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_xlim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = ((1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 0.8 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
            if decades > 0.3 else tuple(float(k) for k in range(1, 10)))
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _diff_panel(ax, rows: pd.DataFrame, keys, *, scale: float, color: str, th, title: str | None):
    """Differences (region A − B) with their intervals on a symmetric axis around 0; coloured
    where the interval excludes 0, grey where it does not, hollow where there is none."""
    from matplotlib.ticker import MaxNLocator

    y = np.arange(len(keys))
    d = rows.set_index("metric").reindex(list(keys))
    v, lo, hi = (d[c].to_numpy(float) * scale for c in ("difference", "lo", "hi"))
    ok = np.isfinite(v)
    has = ok & np.isfinite(lo) & np.isfinite(hi)
    sig = has & ((lo > 0) | (hi < 0))
    for sel, c in ((has & ~sig, _m(th)), (sig, color)):
        if sel.any():
            ax.errorbar(v[sel], y[sel], xerr=[(v - lo)[sel], (hi - v)[sel]], fmt="D", ms=3.6, color=c, ecolor=c,
                        elinewidth=1.2, capsize=2, lw=0, clip_on=False)
    noint = ok & ~has
    if noint.any():
        ax.plot(v[noint], y[noint], "D", ms=3.6, color=_m(th), mfc=th["bg"], clip_on=False)
    for i in np.flatnonzero(~ok):
        ax.text(0.5, y[i], "n/a", transform=ax.get_yaxis_transform(), fontsize=6, ha="center", va="center",
                color=_m(th), style="italic")
    ext = np.concatenate([np.abs(lo[has]), np.abs(hi[has]), np.abs(v[ok])]) if ok.any() else np.array([1.0])
    lim = float(np.nanmax(ext)) * 1.12 if ext.size and np.nanmax(ext) > 0 else 1.0
    ax.set_xlim(-lim, lim)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=3, symmetric=True))
    ax.axvline(0, color=th["text"], lw=0.8)
    ax.set_yticks(y)
    ax.tick_params(axis="y", labelleft=False, length=0)
    ax.set_ylim(len(keys) - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=7, loc="left")
    ax.grid(axis="x", color=th["fg"], lw=0.5, alpha=0.6)
    _style(ax, th)


#: short names of the fractions in the CAR T figure (the figure's title says "CAR T")
SHORT_LABELS = {
    "frac_car_t_within_r_of_tumor": "near tumour (≤ {r})",
    "frac_car_t_contact_tumor": "touching tumour",
    "frac_car_t_contact_myeloid": "touching myeloid",
    "frac_car_t_contact_pdl1_macrophage": "touching PD-L1+ mac.",
    "antigen_neg_fraction": "tumour antigen-neg.",
    "car_t_density_per_mm2": "CAR T",
    "tumor_density_per_mm2": "tumour",
    "myeloid_density_per_mm2": "myeloid",
}


def _short(metric: str, params) -> str:
    if metric in SHORT_LABELS:
        r = (params or {}).get("near_radius_um", 30.0)
        unit = "px" if (params or {}).get("pixel_size_um", 1) is None else "µm"
        return SHORT_LABELS[metric].format(r=f"{float(r):g} {unit}")
    mk = _marker_of(metric)
    return metric_label(metric, params=params, with_unit=False).replace(" CAR T", "") if mk else metric


#: the views of the CAR T figure
CART_VIEWS = {"measures": "Fractions and densities", "profile": "Infiltration profile", "all": "Both"}


def plot_cart(fig, result, region: str, *, theme=DARK, compare: str | None = None,
              colors: Mapping[str, str] | None = None, min_bin_area: float = 0.1, view: str = "all", **_) -> None:
    """CAR T measures (``view``: ``"measures"``, ``"profile"`` or ``"all"``): the infiltration profile (density vs signed distance to the tumour edge,
    95% Poisson band per bin; bins with less than ``min_bin_area`` of the median bin's tissue are
    left out), the fractions with Wilson intervals and counts (k/n), the densities with bootstrap
    intervals; with ``compare`` both regions (filled / hollow) and their difference with its
    interval (in colour when it excludes 0)."""
    import matplotlib.gridspec as gridspec
    from matplotlib.ticker import PercentFormatter

    fig.clear()
    cols = result_colors(result, colors)
    car = _car_color(result, cols)
    cmp = compare if compare and compare != region else None
    rows = cart_rows(result, region, cmp)
    params = ((result.params or {}).get("metrics") or {})
    unit_len = "px" if params.get("pixel_size_um", 1) is None else "µm"
    dens_unit = "cells/Mpx²" if unit_len == "px" else "cells/mm²"
    keys = [k for k in CART_FRACTIONS if k in set(rows["metric"])]
    keys += [k for k in rows["metric"] if _marker_of(k)]
    dk = [k for k in CART_DENSITIES if k in set(rows["metric"])]
    if view not in CART_VIEWS:
        raise ValueError(f"view must be one of {', '.join(CART_VIEWS)}, not {view!r}")
    # compared, each density's difference is its own small axis (own scale, own ticks): give them room,
    # else constrained layout collapses and the panels float apart
    dh = 0.3 + (0.22 if cmp else 0.16) * len(dk)
    heights = {"profile": [1.0], "measures": [0.55 + 0.16 * len(keys), dh],
               "all": [1.1, 0.55 + 0.16 * len(keys), dh]}[view]
    gs = gridspec.GridSpec(len(heights), 2 if cmp and view != "profile" else 1, figure=fig, height_ratios=heights,
                           width_ratios=[1.6, 1] if cmp and view != "profile" else [1])
    sub_t = f"{region}" + (f" (●) vs {cmp} (○)" if cmp else "")
    fig.suptitle(f"CAR T measures: {sub_t}", fontsize=8.5, color=theme["text"], x=0.01, ha="left")
    if view != "measures":
        _cart_profile(fig.add_subplot(gs[0, :]), result, region, cmp, car, theme, unit_len, dens_unit, min_bin_area)
    if view == "profile":
        return
    r0 = 1 if view == "all" else 0
    vals = rows.set_index("metric").reindex(keys + dk)
    if not np.isfinite(vals["a"].to_numpy(float)).any() and not (cmp and np.isfinite(vals["b"].to_numpy(float)).any()):
        ax = fig.add_subplot(gs[r0:, :])
        ax.set_axis_off()
        notes = sorted({short_reason(n) for n in vals["a_note"] if n})
        ax.text(0.5, 0.5, "No CAR T measure can be computed here:\n" + "\n".join(notes) +
                "\n\nMap the roles to this sample's cell types in the Roles tab.", ha="center", va="center",
                fontsize=8, color=theme["text"], transform=ax.transAxes)
        return
    ax2 = fig.add_subplot(gs[r0, 0])
    _forest(ax2, rows, keys, compare=cmp is not None, color=car, th=theme, xlim=(-0.02, 1.02))
    d = rows.set_index("metric").reindex(keys)

    def cnt(tag, i):
        k, n = d[f"{tag}_count"].iloc[i], d[f"{tag}_nobs"].iloc[i]
        return f"{k:.0f}/{n:.0f}" if np.isfinite(k) and np.isfinite(n) else "–"

    ax2.set_yticklabels([f"{_short(k, params)}  {cnt('a', i)}" + (f" · {cnt('b', i)}" if cmp else "")
                         for i, k in enumerate(keys)], fontsize=6.5)
    ax2.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax2.set_title("CAR T cells (% · k/n), 95% Wilson", fontsize=7, loc="left")
    if cmp:
        _diff_panel(fig.add_subplot(gs[r0, 1]), rows, keys, scale=100.0, color=car, th=theme,
                    title="difference (% points)")
    ax3 = fig.add_subplot(gs[r0 + 1, 0])
    _forest(ax3, rows, dk, compare=cmp is not None, color=car, th=theme, log=True)
    ax3.set_yticklabels([_short(k, params) for k in dk], fontsize=6.5)
    ax3.set_title(f"Density, {dens_unit} (log), 95% interval", fontsize=7, loc="left")
    if cmp and dk:
        # one small axis per density (own scale), as insets of one cell: constrained layout sizes the
        # cell and leaves the insets alone (sub-gridspec axes, each with ticks, collapsed it)
        host = fig.add_subplot(gs[r0 + 1, 1])
        host.set_axis_off()
        host.set_title(f"difference ({dens_unit})", fontsize=7, loc="left", color=theme["text"])
        n = len(dk)
        for i, k in enumerate(dk):
            axd = host.inset_axes([0.0, 1 - (i + 1) / n + 0.42 / n, 1.0, 0.5 / n])
            _diff_panel(axd, rows, [k], scale=1.0, color=car, th=theme, title=None)
            axd.tick_params(axis="x", labelsize=5.5, pad=1)


def _cart_profile(ax, result, region, cmp, car, theme, unit_len, dens_unit, min_bin_area):
    prof = result.tables.get("infiltration")
    dropped = False
    if prof is not None and len(prof):
        top = 0.0
        for rg, ls in ((region, "-"), (cmp, "--")):
            if rg is None:
                continue
            p = prof[prof["region"] == rg]
            area = p["area_mm2"].to_numpy(float)
            med = np.nanmedian(area[area > 0]) if (area > 0).any() else 0.0
            keep = area >= min_bin_area * med if med > 0 else area > 0
            dropped |= bool((~keep & (area > 0)).any())
            mid = (0.5 * (p["bin_start_um"] + p["bin_end_um"])).to_numpy(float)
            dens = np.where(keep, p["density_per_mm2"].to_numpy(float), np.nan)
            if "density_lo" in p:
                lo = np.where(keep, p["density_lo"].to_numpy(float), np.nan)
                hi = np.where(keep, p["density_hi"].to_numpy(float), np.nan)
                ax.fill_between(mid, lo, hi, color=car, alpha=0.2 if ls == "-" else 0.1, lw=0)
                top = max(top, float(np.nanmax(hi)) if np.isfinite(hi).any() else 0.0)
            top = max(top, float(np.nanmax(dens)) if np.isfinite(dens).any() else 0.0)
            ax.plot(mid, dens, ls, marker="o", ms=2.2, lw=1.4, color=car, label=rg)
        ax.axvline(0, color=_m(theme), lw=0.9, ls=":")
        ax.text(0.01, 0.97, "← inside tumour", transform=ax.transAxes, fontsize=6.5, va="top", color=theme["text"])
        ax.text(0.99, 0.97, "outside →", transform=ax.transAxes, fontsize=6.5, va="top", ha="right",
                color=theme["text"])
        ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
        _legend(ax, theme, loc="center right", fontsize=6.5)
    ax.set_xlabel(f"signed distance to the tumour edge ({unit_len})", fontsize=7)
    ax.set_ylabel(f"CAR T ({dens_unit})", fontsize=7)
    ax.set_title("CAR T infiltration profile, 95% Poisson band", fontsize=7.5, loc="left")
    if dropped:
        ax.text(0.01, 0.03, f"bins with < {100 * min_bin_area:.0f}% of the median tissue area left out",
                transform=ax.transAxes, fontsize=5.8, color=_m(theme), va="bottom")
    _style(ax, theme)


def plot_centrality(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                    colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None, **_) -> None:
    """Centrality scores per type: bars in the types' legend colours (``compare``: hollow bars)."""
    fig.clear()
    cols = result_colors(result, colors)
    df = result.tables["centrality"]
    w_in, h_in = fig.get_size_inches()
    axs = fig.subplots(3, 1, sharey=True) if w_in / h_in < 1.8 else fig.subplots(1, 3, sharey=True)
    measures = ["degree_centrality", "closeness_centrality", "average_clustering"]
    show = [region] + ([compare] if compare and compare != region else [])
    order = list(dict.fromkeys(df[df["region"] == region]["cell_type"]))
    if types:
        order = [t for t in order if t in set(map(str, types))] or order
    cats = list(dict.fromkeys(df["cell_type"]))
    cidx = {c: k for k, c in enumerate(cats)}
    y = np.arange(len(order))
    h = 0.8 / len(show)
    for ax, col in zip(axs, measures, strict=True):
        hi = 0.0
        for k, rg in enumerate(show):
            d = df[df["region"] == rg].set_index("cell_type").reindex(order)
            v = d[col].to_numpy(float)
            c = [type_color(cols, t, cidx.get(t, 0)) for t in order]
            ax.barh(y + k * h - 0.4 + h / 2, np.nan_to_num(v), height=h, color=c if k == 0 else "none",
                    edgecolor=c, lw=1.0, label=rg)
            for i in np.flatnonzero(~np.isfinite(v)):
                ax.text(0, y[i] + k * h - 0.4 + h / 2, " n/a", fontsize=5.5, va="center", color=_m(theme))
            hi = max(hi, float(np.nanmax(v)) if np.isfinite(v).any() else 0.0)
        ax.set_xlim(0, hi * 1.1 if hi > 0 else 1.0)
        ax.set_yticks(y)
        ax.set_yticklabels(order, fontsize=6.5)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_title(column_label(col), fontsize=7.5, loc="left")
        _style(ax, theme)
    if len(show) > 1:
        _legend(axs[-1], theme, fontsize=6.5, loc="lower right")
    fig.suptitle(f"Centrality: {region}" + (f" (filled) vs {compare} (outline)" if len(show) > 1 else ""),
                 fontsize=8.5, color=theme["text"], x=0.01, ha="left")


# --------------------------------------------------------------------------- published (phenoptr)
def plot_touching(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                  colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None, **_) -> None:
    """phenoptr's touching cells as a matrix: % of row-type cells touching a column-type cell."""
    fig.clear()
    cols = result_colors(result, colors)
    d = result.tables["touching"]

    def mat(rg):
        x = d[d["region"] == rg]
        names = list(dict.fromkeys(list(x["phenotype1"]) + list(x["phenotype2"])))
        m = pd.DataFrame(np.nan, index=names, columns=names)
        for r in x.itertuples(index=False):
            if r.total1 > 0:
                m.loc[r.phenotype1, r.phenotype2] = r.p1_touch_p2 / r.total1
            if r.total2 > 0:
                m.loc[r.phenotype2, r.phenotype1] = r.p2_touch_p1 / r.total2
        return _select(m, types)

    ax = fig.add_subplot(111)
    a = mat(region)
    if compare and compare != region:
        b = mat(compare).reindex(index=a.index, columns=a.columns)
        _heat(fig, ax, a - b, label=f"% touching: {region} − {compare}", diverging=True, th=theme, colors=cols,
              title=f"{region} − {compare}: touching cells, difference (no interval)", fmt=lambda v: f"{100 * v:+.0f}",
              percent=True)
        return
    _heat(fig, ax, a, label="% of row-type cells touching a column-type cell", diverging=False, th=theme,
          colors=cols, title=f"{region}: touching cells (phenoptr), % of row type", fmt=lambda v: f"{100 * v:.0f}",
          percent=True)


def plot_count_within(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                      colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None,
                      radius: float | None = None, **_) -> None:
    """phenoptr's count_within as a matrix: mean column-type cells within the radius of a row-type cell."""
    fig.clear()
    cols = result_colors(result, colors)
    d = result.tables["count_within"]
    radii = sorted(d["radius"].unique())
    r = radius if radius in radii else radii[-1]

    def mat(rg):
        x = d[(d["region"] == rg) & (d["radius"] == r)]
        x = x.assign(mean_all=x["from_with"] * x["within_mean"] / x["from_count"].where(x["from_count"] > 0))
        return _select(_wide(x, "mean_all", "from", "to"), types)

    ax = fig.add_subplot(111)
    a = mat(region)
    unit = "µm" if (result.params or {}).get("pixel_size_um", 1) is not None else "px"
    if compare and compare != region:
        b = mat(compare).reindex(index=a.index, columns=a.columns)
        _heat(fig, ax, a - b, label=f"mean within {r:g} {unit}: {region} − {compare}", diverging=True, th=theme,
              colors=cols, title=f"{region} − {compare}: cells within {r:g} {unit}, difference (no interval)")
        return
    _heat(fig, ax, a, label=f"mean column-type cells within {r:g} {unit}", diverging=False, th=theme, colors=cols,
          title=f"{region}: cells within {r:g} {unit} of a row-type cell (phenoptr count_within)")


def plot_nearest(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                 colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None, **_) -> None:
    """phenoptr's nearest distances summarised: median distance from row-type cells to the nearest column-type cell."""
    fig.clear()
    cols = result_colors(result, colors)
    d = result.tables["nearest"]
    dist_cols = [c for c in d.columns if str(c).startswith("Distance to ")]

    def mat(rg):
        x = d[d["region"] == rg]
        m = x.groupby("cell_type", sort=False)[dist_cols].median()
        m.columns = [c[len("Distance to "):] for c in m.columns]
        return _select(m.reindex(columns=list(m.columns)), types)

    ax = fig.add_subplot(111)
    a = mat(region)
    unit = "µm" if (result.params or {}).get("pixel_size_um", 1) is not None else "px"
    if compare and compare != region:
        b = mat(compare).reindex(index=a.index, columns=a.columns)
        _heat(fig, ax, a - b, label=f"median distance ({unit}): {region} − {compare}", diverging=True, th=theme,
              colors=cols, title=f"{region} − {compare}: nearest distance, difference (no interval)")
        return
    _heat(fig, ax, a, label=f"median distance to the nearest ({unit})", diverging=False, th=theme, colors=cols,
          title=f"{region}: median distance from a row-type cell to the nearest column-type cell")


# --------------------------------------------------------------------------- ligand-receptor
def ligrec_table(result, region: str, test: str = "spatial") -> pd.DataFrame:
    """The tested rows of a ligand-receptor result for one region (``spatial`` or ``cluster``)."""
    t = result.tables.get(test)
    if t is None:
        return pd.DataFrame()
    return t[t["region"] == region]


#: the views of a ligand-receptor result
LIGREC_VIEWS = {"pair": "One pair: sender × receiver", "dots": "All pairs (dot plot)"}


def plot_ligrec_result(fig, result, region: str, *, theme=DARK, compare: str | None = None,
                       colors: Mapping[str, str] | None = None, test: str | None = None, view: str | None = None,
                       pair: tuple[str, str] | None = None, types: Sequence[str] | None = None, **_) -> None:
    """A region's ligand-receptor test.

    ``view="pair"`` (default with one pair in the panel, e.g. PD-L1 / PD-1 on a protein panel):
    sender × receiver matrix of one pair (``pair=(ligand, receptor)``, default the most
    significant), coloured by the effect: log2 of the neighbour score over its null mean (the
    mean expression for the cluster test), never by z (z grows with the cells and with a narrow
    null, so a tiny shift looks strong), * where the FDR is below 0.05, grey where it could not
    be tested, types in their legend colours.
    ``view="dots"``: :func:`~napari_carspatial.analysis.ligrec.plot_ligrec`'s dot plot of every
    pair, as many sender → receiver columns as the figure's width holds, each column's sender and
    receiver colour under it.
    """
    from .ligrec import plot_ligrec

    cols = result_colors(result, colors)
    fig.clear()
    test = test or ("spatial" if "spatial" in result.tables else "cluster")
    t = ligrec_table(result, region, test)
    if test == "cluster" and len(t):
        t = t.rename(columns={"cluster_1": "sender", "cluster_2": "receiver", "mean": "effect"})
    elif len(t):
        # the effect, not the z-score: z grows with the cells and shrinks with the spread of the null, so a
        # 5% shift of a background-level intensity (spill-over from a neighbour) can reach z = 10
        t = t.assign(effect=t["log2_enrichment"])
    what = "log2 score / null mean" if test == "spatial" else "mean expression"
    tested = t[t["pvalue"].notna()] if len(t) else t
    if not len(tested):
        ax = fig.add_subplot(111)
        why = "no pair could be tested here" if not len(t) else \
            "no pair could be tested: " + ", ".join(sorted(set(t["reason"].dropna().astype(str)) - {""}))[:120]
        ax.text(0.5, 0.5, why, ha="center", va="center", color=theme["text"], transform=ax.transAxes, wrap=True,
                fontsize=8)
        ax.set_axis_off()
        return
    pairs = list(dict.fromkeys(zip(tested.sort_values("pvalue", kind="stable")["ligand"].astype(str),
                                   tested.sort_values("pvalue", kind="stable")["receptor"].astype(str), strict=True)))
    view = view or ("pair" if len(pairs) <= 2 else "dots")
    if view == "pair":
        lig, rec = tuple(pair) if pair is not None and tuple(pair) in pairs else pairs[0]
        d = t[(t["ligand"].astype(str) == lig) & (t["receptor"].astype(str) == rec)]
        senders = list(dict.fromkeys(d["sender"].astype(str)))
        receivers = list(dict.fromkeys(d["receiver"].astype(str)))
        order = [c for c in cols if c in set(senders) | set(receivers)] or sorted(set(senders) | set(receivers))
        if types:
            order = [c for c in order if c in set(map(str, types))] or order
        z = d.assign(value=d["effect"].where(d["pvalue"].notna())).pivot_table(
            index="sender", columns="receiver", values="value", aggfunc="first", dropna=False)
        z = z.reindex(index=[o for o in order if o in senders], columns=[o for o in order if o in receivers])
        padj = "pvalue_adj" if "pvalue_adj" in d else "pvalue"
        q = d.pivot_table(index="sender", columns="receiver", values=padj, aggfunc="first", dropna=False)
        q = q.reindex(index=z.index, columns=z.columns)
        ax = fig.add_subplot(111)
        _heat(fig, ax, z, label=what, diverging=test == "spatial", th=theme, colors=cols,
              marks=(q < 0.05).to_numpy(),
              title=f"{region}: {lig} → {rec}, sender (rows) → receiver (columns)\n(* FDR < 0.05; grey: not tested)")
        return
    w_in, h_in = fig.get_size_inches()
    plot_ligrec(tested.assign(z=tested["effect"]), fig=fig, theme=theme, max_columns=max(4, int(w_in * 2.4)),
                max_pairs=max(4, int(h_in * 2.2)), title=" ")
    if len(fig.axes) > 1:   # the colour bar: say what the colour is
        fig.axes[1].set_ylabel(what, color=theme["text"], fontsize=7)
    fig.suptitle(f"{region}: ligand → receptor, the most significant sender → receiver columns\n"
                 f"colour: {what}",
                 fontsize=8, color=theme["text"], x=0.01, ha="left")
    ax = fig.axes[0]
    labels = [tl.get_text() for tl in ax.get_xticklabels()]
    n = len(ax.get_yticks())
    cats = list(dict.fromkeys(list(t["sender"].astype(str)) + list(t["receiver"].astype(str))))
    cidx = {c: k for k, c in enumerate(cats)}
    from matplotlib.patches import Rectangle

    for x, lab in enumerate(labels):
        if " → " not in lab:
            continue
        snd, rcv = lab.split(" → ", 1)
        ax.add_patch(Rectangle((x - 0.4, n - 0.45), 0.38, 0.42, color=type_color(cols, snd, cidx.get(snd, 0)), lw=0))
        ax.add_patch(Rectangle((x + 0.02, n - 0.45), 0.38, 0.42, color=type_color(cols, rcv, cidx.get(rcv, 0)), lw=0))
    ax.set_ylim(n + 0.1, -0.7)


# --------------------------------------------------------------------------- dispatch
#: statistic -> function drawing its default figure
PLOTS = {
    "cooccurrence": plot_cooccurrence,
    "ripley": plot_ripley,
    "cart": plot_cart,
    "centrality": plot_centrality,
    "touching": plot_touching,
    "count_within": plot_count_within,
    "nearest": plot_nearest,
    "ligrec": plot_ligrec_result,
}


def plot_result(fig, result, region: str, *, compare: str | None = None, theme=DARK, focus: str | None = None,
                colors: Mapping[str, str] | None = None, types: Sequence[str] | None = None, **options) -> None:
    """The default figure of a result (dispatch on the statistic).

    Parameters
    ----------
    fig
        A matplotlib Figure (cleared).
    result
        An :class:`~napari_carspatial.analysis.results.AnalysisResult`.
    region, compare
        The region shown and, optionally, the one it is compared with.
    theme
        :data:`DARK` or :data:`LIGHT`.
    focus
        The type per-type figures centre on (co-occurrence "around", Ripley's first panel).
    colors
        ``{type: colour}`` over the colours stored with the result (the legend's).
    types
        Only these types (small multiples, heatmaps); ``None``: all (the most informative first).
    options
        Passed to the statistic's figure (``view=`` of :func:`plot_cart`, ``test=`` of
        :func:`plot_ligrec_result`, ``radius=`` of :func:`plot_count_within`).
    """
    st = result.statistic
    if st in MATRIX_VIEW:
        if st == "niches":
            region = result.regions[0]
            compare = None
        plot_matrix(fig, result, region, theme=theme, compare=compare, colors=colors, types=types)
    elif st in ("cooccurrence", "ripley"):
        PLOTS[st](fig, result, region, theme=theme, compare=compare, focus=focus, colors=colors, types=types)
    elif st in PLOTS:
        PLOTS[st](fig, result, region, theme=theme, compare=compare, colors=colors, types=types, **options)
    else:  # pragma: no cover
        raise ValueError(f"no plot for {st!r}")
    fig.patch.set_facecolor(theme["bg"])


def save_figure(result, region: str, path, *, compare: str | None = None, size=(8, 5), dpi=130,
                colors: Mapping[str, str] | None = None) -> None:
    """Write the result's figure to ``path`` (PNG / SVG by suffix), light theme, headless."""
    from matplotlib.figure import Figure

    if result.statistic == "cart":
        size = (max(size[0], 7.5), max(size[1], 7.5))
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    plot_result(fig, result, region, compare=compare, theme=LIGHT, colors=colors)
    path = Path(path)
    if not path.suffix:  # as savefig: no suffix -> the default format, its suffix appended
        from matplotlib import rcParams

        path = path.with_name(f"{path.name}.{rcParams['savefig.format']}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor=LIGHT["bg"]))


# --------------------------------------------------------------------------- tables for people
def _fmt_num(v) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "n/a"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def display_table(result, region: str, compare: str | None = None, *, focus: str | None = None,
                  test: str | None = None, max_rows: int = 500, compact: bool = False) -> pd.DataFrame:
    """The result as a person reads it: plain headers with units, formatted values with their
    intervals and counts, "n/a" with the reason where a value could not be computed.

    ``cart``: one row per measure (``Measure``, region, compare, ``A − B`` and ``Note``);
    ``nhood``: log2 obs / exp with its interval (or the difference between the regions);
    ``ligrec``: the tested pairs, most significant first; other statistics: the region's rows
    with plain headers. All cells are text; ``compact`` puts the interval and the counts of a
    value on lines of their own (a narrow dock).
    """
    out = _display_table(result, region, compare, focus=focus, test=test, max_rows=max_rows)
    if compact:
        for c in out.columns:
            if c != "Note" and out[c].dtype == object:
                out[c] = out[c].astype(str).str.replace(" [", "\n[", regex=False).str.replace(" · ", "\n",
                                                                                                regex=False)
    return out


def _display_table(result, region: str, compare: str | None, *, focus, test, max_rows) -> pd.DataFrame:
    st = result.statistic
    cmp = compare if compare and compare != region else None
    if st == "cart":
        rows = cart_rows(result, region, cmp)
        out = {"Measure": rows["label"]}
        out[region] = [fmt_value(r.metric, r.a, r.a_lo, r.a_hi, r.a_count, r.a_nobs, r.unit)
                       for r in rows.itertuples(index=False)]
        notes = list(rows["a_note"])
        if cmp:
            out[cmp] = [fmt_value(r.metric, r.b, r.b_lo, r.b_hi, r.b_count, r.b_nobs, r.unit)
                        for r in rows.itertuples(index=False)]
            out[f"{region} − {cmp}"] = [fmt_value(r.metric, r.difference, r.lo, r.hi, unit=r.unit, diff=True)
                                        if r.unit not in ("z",) else "not compared (z grows with n)"
                                        for r in rows.itertuples(index=False)]
            notes = ["; ".join(x for x in (f"{region}: {a}" if a else "", f"{cmp}: {b}" if b else "", c) if x)
                     for a, b, c in zip(rows["a_note"], rows["b_note"], rows["note"], strict=True)]
        out["Note"] = notes
        return pd.DataFrame(out)
    if st == "nhood" and "log2_oe" in result.tables:
        if cmp and "comparisons" in result.tables:
            c = result.tables["comparisons"]
            c = c[(c["region_a"] == region) & (c["region_b"] == cmp) & np.isfinite(c["difference"])]
            return pd.DataFrame({
                "From": c["row"], "To": c["col"],
                f"log2 obs/exp {region}": [fmt_value("x", v, lo, hi) for v, lo, hi in zip(c["a"], c["a_lo"], c["a_hi"],
                                                                                          strict=True)],
                f"log2 obs/exp {cmp}": [fmt_value("x", v, lo, hi) for v, lo, hi in zip(c["b"], c["b_lo"], c["b_hi"],
                                                                                     strict=True)],
                f"{region} − {cmp} [95%]": [fmt_value("x", v, lo, hi, diff=True)
                                            for v, lo, hi in zip(c["difference"], c["lo"], c["hi"], strict=True)],
                "Note": c["note"]}).head(max_rows)
        d = result.tables["log2_oe"]
        d = d[(d["region"] == region) & np.isfinite(d["log2_oe"])]
        return pd.DataFrame({
            "From": d["row"], "To": d["col"],
            "log2 obs/exp [95%]": [fmt_value("x", v, lo, hi) for v, lo, hi in zip(d["log2_oe"], d["lo"], d["hi"],
                                                                                 strict=True)],
            "Observed neighbours (n)": d["observed"].map(lambda v: f"{v:,.0f}"),
            "Expected (n)": d["expected"].map(lambda v: f"{v:,.1f}"),
            "z (grows with n)": d["zscore"].map(_fmt_num) if "zscore" in d else "",
            "Interval": d["method"]}).head(max_rows)
    if st == "ligrec":
        test = test or ("spatial" if "spatial" in result.tables else "cluster")
        t = ligrec_table(result, region, test)
        if not len(t):
            return pd.DataFrame({"Note": [f"no {test} result in {region}"]})
        t = t.sort_values("pvalue", kind="stable", na_position="last")
        send, recv = ("sender", "receiver") if "sender" in t else ("cluster_1", "cluster_2")
        out = pd.DataFrame({"Ligand → receptor": t["ligand"].astype(str) + " → " + t["receptor"].astype(str),
                            "Sender → receiver": t[send].astype(str) + " → " + t[recv].astype(str)})
        for c in ("n_edges", "score", "mean", "z", "pvalue", "pvalue_adj", "reason"):
            if c in t:
                out[column_label(c)] = t[c].map(_fmt_num).replace({"nan": ""}).to_numpy()
        return out.head(max_rows)
    name = next(iter(result.tables))
    if st == "cooccurrence":
        df = result.tables["cooccurrence"]
        df = df[(df["region"] == region) & (df["cell_type"] == (focus or default_focus(result) or df["cell_type"].iloc[0]))]
    else:
        df = result.tables[name]
        if "region" in df and region in set(df["region"]):
            df = df[df["region"] == region]
    df = df.head(max_rows)
    out = pd.DataFrame({column_label(c): [_fmt_num(v) for v in df[c]] for c in df.columns if c != "region"})
    return out
