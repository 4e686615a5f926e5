"""The reader-agreement section of the cohort HTML report (an HTML fragment) and a standalone page.

:func:`agreement_section` returns one ``<section>``: a summary line (pooled and mean kappa with
their intervals), a figure (per-sample kappa with intervals, per-class kappa per sample, the
pooled confusion matrix) embedded as a base64 PNG, and tables (per sample, per class, regions,
pooled confusion). Every text is HTML-escaped; there are no scripts and no external links. It
uses the class names of the cohort report's stylesheet (``sub``, ``note``, ``scroll``, ``l``,
``fig``); :func:`agreement_page` wraps it in a page with that style.

Headless: matplotlib's Agg canvas (no pyplot state, no GUI).
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .agreement import TrialAgreement
    from .project import ReviewProject

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px} h3{font-size:15px;margin:18px 0 2px}
.sub{color:#666;font-size:13px} table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right} th{background:#f4f4f4}
td.l,th.l{text-align:left;white-space:nowrap} .scroll{overflow-x:auto;max-width:100%}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;font-size:13px}
img.fig{max-width:100%;border:1px solid #eee}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(v, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e(v) if v is not None else "–"
    if not np.isfinite(f):
        return "–"
    if f == int(f) and abs(f) >= 1 and digits == 0:
        return f"{int(f):,}"
    return f"{f:.{digits}f}"


def _ci(lo, hi, digits: int = 3) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return f"{float(lo):.{digits}f} – {float(hi):.{digits}f}"


def _table(df: pd.DataFrame, *, left=()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = "".join(f'<td class="{"l" if c in left else ""}">{_e(r[c])}</td>' for c in df.columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _figure(trial) -> str:
    """Per-sample kappa with intervals | per-class kappa per sample | pooled confusion (row %)."""
    from matplotlib.figure import Figure

    ps = trial.per_sample
    pc = trial.per_class
    classes = list(trial.pooled_per_class.index)
    fig = Figure(figsize=(13, 4.8), dpi=90, layout="constrained")
    axs = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.4, 1.1]})
    ax = axs[0]
    y = np.arange(len(ps))
    k = ps["kappa"].to_numpy(float)
    lo, hi = ps["kappa_ci_low"].to_numpy(float), ps["kappa_ci_high"].to_numpy(float)
    err = np.vstack([np.where(np.isfinite(lo), k - lo, 0), np.where(np.isfinite(hi), hi - k, 0)])
    ax.errorbar(k, y, xerr=err, fmt="o", color="#0072b2", ecolor="#7fb2d8", capsize=3)
    p = trial.pooled
    if np.isfinite(p["kappa"]):
        ax.axvline(p["kappa"], color="#d55e00", lw=1.2, label=f"pooled {p['kappa']:.2f}")
        if np.isfinite(p["kappa_ci_low"]):
            ax.axvspan(p["kappa_ci_low"], p["kappa_ci_high"], color="#d55e00", alpha=0.12, lw=0)
        ax.legend(fontsize=7, loc="lower left")
    ax.set_yticks(y, [str(s) for s in ps["sample"]], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min(-0.05, np.nanmin(lo) - 0.05 if np.isfinite(lo).any() else 0), 1.02)
    ax.set_xlabel("Cohen's kappa (95% interval over cells)", fontsize=8)
    ax.set_title("Kappa per sample", fontsize=9)
    ax = axs[1]
    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        v = pc.loc[pc["class"] == c, "kappa"].to_numpy(float)
        v = v[np.isfinite(v)]
        ax.scatter(np.full(len(v), i) + rng.uniform(-0.15, 0.15, len(v)), v, s=14, color="#0072b2", alpha=0.8, zorder=3)
        pk = trial.pooled_per_class.loc[c, "kappa"]
        if np.isfinite(pk):
            ax.plot([i - 0.3, i + 0.3], [pk, pk], color="#d55e00", lw=2, zorder=4)
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right", fontsize=7)
    ax.set_ylim(-0.05 if not len(pc) or not np.isfinite(pc["kappa"]).any() else min(-0.05, np.nanmin(pc["kappa"]) - 0.05), 1.05)
    ax.set_ylabel("kappa, class vs rest", fontsize=8)
    ax.set_title("Per class (dots: samples, bar: pooled)", fontsize=9)
    ax = axs[2]
    C = trial.confusion.to_numpy(float)
    with np.errstate(all="ignore"):
        R = np.where(C.sum(axis=1, keepdims=True) > 0, C / C.sum(axis=1, keepdims=True), np.nan)
    ax.imshow(R, cmap="Blues", vmin=0, vmax=1)
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            if C[i, j]:
                ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if R[i, j] > 0.6 else "#222")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=6)
    ax.set_yticks(range(len(classes)), classes, fontsize=6)
    ax.set_xlabel("read 2", fontsize=8)
    ax.set_ylabel("read 1", fontsize=8)
    ax.set_title("Pooled confusion (cells; colour: row share)", fontsize=9)
    for a in axs:
        a.tick_params(labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def agreement_section(source: TrialAgreement | ReviewProject | str | os.PathLike, *, title: str = "Reader agreement", n_boot: int | None = None, seed: int = 0) -> str:
    """The agreement section of the cohort report as an HTML fragment (one ``<section>``).

    Parameters
    ----------
    source
        A :class:`~napari_carspatial.review.agreement.TrialAgreement`, a
        :class:`~napari_carspatial.review.project.ReviewProject`, or a project folder (its samples
        with both reads done are used).
    title
        Heading of the section.
    n_boot
        Bootstrap replicates of the intervals when computed here.
    seed
        Seed of that bootstrap.

    Returns
    -------
    str
        Self-contained HTML: escaped text, the figure as a base64 PNG, no scripts, no external links.
    """
    from .agreement import TrialAgreement

    trial = source
    if not isinstance(source, TrialAgreement):
        from .project import ReviewProject, load_project

        proj = source if isinstance(source, ReviewProject) else load_project(os.fspath(source))
        trial = proj.trial_agreement(n_boot=n_boot, seed=seed)
    parts = [f'<section class="agreement" id="reader-agreement"><h2>{_e(title)}</h2>']
    ps = trial.per_sample
    if ps.empty:
        parts.append('<p class="note">No sample has two finished reads yet: no agreement to show.</p></section>')
        return "".join(parts)
    p = trial.pooled
    ivl = f"{int(round(trial.ci * 100))}% interval"
    parts.append(
        '<p class="sub">Two independent reads per sample (cell-type calls; an excluded cell is the class '
        "&ldquo;(excluded)&rdquo;). Cohen's kappa = (p<sub>o</sub> &minus; p<sub>e</sub>) / (1 &minus; p<sub>e</sub>); "
        "per class: that class against all others. Intervals: per sample, "
        f"{_e(trial.cell_ci_method)}; across the trial, {_e(trial.trial_ci_method)} "
        f"({trial.n_boot} resamples, {int(round(trial.ci * 100))}%). Pooled = summed confusion matrices "
        "(each cell weighs the same); mean = mean of the per-sample kappas (each sample weighs the same).</p>")
    parts.append(
        f"<p><b>Trial</b>: {p['n_samples']} samples, {p['n_cells']:,} cells, "
        f"{_num(p['percent_agreement'], 1)}% agreement; pooled kappa <b>{_num(p['kappa'])}</b> "
        f"({_ci(p['kappa_ci_low'], p['kappa_ci_high'])}); mean per-sample kappa {_num(p['mean_kappa'])} "
        f"({_ci(p['mean_kappa_ci_low'], p['mean_kappa_ci_high'])}).</p>")
    for n in trial.notes:
        parts.append(f'<p class="note">{_e(n)}</p>')
    parts.append(f'<div><img class="fig" alt="{_e(title)}: kappa per sample and class" '
                 f'src="data:image/png;base64,{_figure(trial)}"></div>')
    t = pd.DataFrame({
        "sample": ps["sample"], "read 1": ps["reader_a"], "read 2": ps["reader_b"],
        "cells": [f"{int(v):,}" for v in ps["n_cells"]], "disagreements": [f"{int(v):,}" for v in ps["n_disagreements"]],
        "agreement %": [_num(v, 1) for v in ps["percent_agreement"]], "kappa": [_num(v) for v in ps["kappa"]],
        ivl: [_ci(a, b) for a, b in zip(ps["kappa_ci_low"], ps["kappa_ci_high"], strict=True)]})
    parts.append("<h3>Per sample</h3>" + _table(t, left=("sample", "read 1", "read 2")))
    pc = trial.per_class
    wide = pc.pivot_table(index="class", columns="sample", values="kappa", aggfunc="first", dropna=False)
    wide = wide.reindex(index=list(trial.pooled_per_class.index), columns=list(ps["sample"]))
    ct = pd.DataFrame({"class": wide.index})
    for s in wide.columns:
        ct[str(s)] = [_num(v) for v in wide[s]]
    ppc = trial.pooled_per_class
    ct["pooled"] = [_num(v) for v in ppc["kappa"]]
    ct[f"pooled {ivl}"] = [_ci(a, b) for a, b in zip(ppc["kappa_ci_low"], ppc["kappa_ci_high"], strict=True)]
    ct["mean"] = [_num(v) for v in ppc["mean_kappa"]]
    parts.append("<h3>Kappa per class (that class against all others; – : class absent or kappa undefined)</h3>"
                 + _table(ct, left=("class",)))
    rg = trial.regions
    if len(rg):
        rp = trial.regions_pooled
        wide = rg.pivot_table(index="class", columns="sample", values="dice", aggfunc="first", dropna=False)
        wide = wide.reindex(index=list(rp.index), columns=[s for s in ps["sample"] if s in set(rg["sample"])])
        rt = pd.DataFrame({"ROI class": wide.index})
        for s in wide.columns:
            rt[str(s)] = [_num(v) for v in wide[s]]
        rt["pooled Dice"] = [_num(v) for v in rp["dice"]]
        rt[ivl] = [_ci(a, b) for a, b in zip(rp["dice_ci_low"], rp["dice_ci_high"], strict=True)]
        rt["pooled IoU"] = [_num(v) for v in rp["iou"]]
        parts.append("<h3>Regions: Dice per ROI class (polygon overlap; pooled over summed areas)</h3>"
                     + _table(rt, left=("ROI class",)))
    C = trial.confusion
    cdf = pd.DataFrame({"read 1 \\ read 2": [str(i) for i in C.index]})
    for c in C.columns:
        cdf[str(c)] = [f"{int(v):,}" for v in C[c]]
    parts.append("<details><summary>Pooled confusion matrix (cells)</summary>"
                 + _table(cdf, left=("read 1 \\ read 2",)) + "</details>")
    parts.append("</section>")
    return "".join(parts)


def agreement_page(source: TrialAgreement | ReviewProject | str | os.PathLike, *, title: str = "Reader agreement", **kw) -> str:
    """:func:`agreement_section` as a whole HTML page (same style as the cohort report).

    Parameters
    ----------
    source
        As for :func:`agreement_section`.
    title
        Page title and heading.
    **kw
        Passed to :func:`agreement_section` (``n_boot``, ``seed``).

    Returns
    -------
    str
        A self-contained HTML page.
    """
    body = agreement_section(source, title=title, **kw)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
            f"</head><body>{body}</body></html>")
