"""One self-contained HTML report of a batch run (images embedded as base64 PNG, no external files).

Sections: overview, a thumbnail per sample, key metrics per sample, paired pre -> post plots per
patient, group comparisons (box plots with every sample as a point), the statistics table
(p, BH q, effect size with CI, small-n warnings) and failures.

Headless: matplotlib with the Agg backend; no napari, no Qt.

One module (583 lines) because it is one HTML document: its sections share the same formatting, PNG
embedding, small-n banner and figure helpers, and :func:`write_report` assembles them in order.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..model.atomic import atomic_write, atomic_write_text
from .batch import sample_dir
from .manifest import read_manifest
from .stats import add_phase, cohort_statistics, post_phase_label

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

#: (region, metric) shown in tables, plots and the cohort widget; absent ones are skipped
KEY_METRICS = (
    ("tumor_core", "car_t_density_per_mm2"),
    ("margin", "car_t_density_per_mm2"),
    ("whole", "antigen_neg_fraction"),
    ("whole", "frac_car_t_contact_tumor"),
    ("margin", "frac_car_t_contact_myeloid"),
    ("margin", "myeloid_density_per_mm2"),
    ("whole", "log2_oe_car_t_tumor"),
    ("whole", "frac_car_t_pd1_pos"),
)
R_COLOR, NR_COLOR, NA_COLOR = "#0072b2", "#d55e00", "#7f7f7f"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;
     padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h3{font-size:15px;margin:18px 0 2px}
summary{cursor:pointer;color:#0b5cad;font-size:13px} h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px} table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right} th{background:#f4f4f4;position:sticky;top:0}
td.l,th.l{text-align:left;white-space:nowrap} .scroll{overflow-x:auto;max-width:100%} tr.sig td{background:#e8f4ea} tr.small td.w{color:#a15c00}
.grid{display:flex;flex-wrap:wrap;gap:10px} .card{border:1px solid #ddd;border-radius:4px;padding:4px;font-size:11px}
.card img{display:block;max-width:100%} .R{color:#0072b2;font-weight:600} .NR{color:#d55e00;font-weight:600}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;font-size:13px}
.fail{background:#fdecea;border-left:4px solid #d32f2f;padding:6px 10px;font-size:13px}
img.fig{max-width:100%;border:1px solid #eee}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img_tag(b64: str, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5):
        return f"{f:.2e}"
    return f"{f:.{digits}g}" if abs(f) < 1 else f"{f:,.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")


def _small_banner(small: pd.DataFrame) -> str:
    """The small-sample note with the sizes of the rows it flags and the smallest p they can reach."""
    from .stats import min_p_mann_whitney, min_p_wilcoxon

    items = []
    for comp, g in small.groupby("comparison", sort=False):
        if "paired" in comp:
            sizes = sorted({(int(a), int(e)) for a, e in zip(g["n_a"], g["n_eff"], strict=False)}, reverse=True)
            txt = ", ".join(f"{e} of {a} pairs changed (smallest possible p {min_p_wilcoxon(e):.2g})" if e != a
                            else f"{a} pairs (smallest possible p {min_p_wilcoxon(a):.2g})" for a, e in sizes)
        else:
            sizes = sorted({(int(a), int(b)) for a, b in zip(g["n_a"], g["n_b"], strict=False)}, reverse=True)
            txt = ", ".join(f"{a} vs {b} (smallest possible p {min_p_mann_whitney(a, b):.2g})" for a, b in sizes)
        items.append(f"<b>{html.escape(comp)}</b>: {len(g)} test(s) with {txt}")
    return ("Small groups (fewer than 5 per group, or fewer than 5 non-zero pair differences). These rows are "
            "marked; their tests have little power and cannot reach a small p however large the effect: "
            + "; ".join(items) + ".")


def key_metrics(metrics: pd.DataFrame, keys: Sequence[tuple[str, str]] = KEY_METRICS) -> list[tuple[str, str]]:
    """The ``(region, metric)`` pairs of ``keys`` the cohort's metrics hold.

    Parameters
    ----------
    metrics
        The cohort's tidy metrics.
    keys
        Candidate ``(region, metric)`` pairs, in display order.

    Returns
    -------
    list of tuple
    """
    have = set(zip(metrics["region"], metrics["metric"], strict=False))
    return [k for k in keys if k in have]


def wide_key_table(metrics: pd.DataFrame, keys: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One row per sample: clinical columns, cells, then the key metrics (columns ``metric [region]``).

    Parameters
    ----------
    metrics
        The cohort's tidy metrics.
    keys
        ``(region, metric)`` pairs (default :data:`KEY_METRICS`).

    Returns
    -------
    pandas.DataFrame
        Indexed by sample, in the metrics' order.
    """
    keys = key_metrics(metrics, keys or KEY_METRICS)
    m = metrics.copy()
    m["value"] = pd.to_numeric(m["value"], errors="coerce")
    m["col"] = m["metric"] + " [" + m["region"] + "]"
    w = m[m[["region", "metric"]].apply(tuple, axis=1).isin(keys)].pivot_table(
        index="sample", columns="col", values="value", aggfunc="first")
    cols = [f"{mt} [{rg}]" for rg, mt in keys if f"{mt} [{rg}]" in w.columns]
    clin_cols = [c for c in ("patient", "timepoint", "response", "crs_grade", "icans_grade") if c in m.columns]
    clin = m.drop_duplicates("sample").set_index("sample")[clin_cols]
    ncell = m[(m["metric"] == "n_cells") & (m["region"] == "whole")].set_index("sample")["value"].rename("cells")
    out = clin.join(ncell).join(w[cols])
    order = list(dict.fromkeys(metrics["sample"]))
    return out.loc[[s for s in order if s in out.index]]


def sample_pixel_sizes(results: str | os.PathLike, samples: Iterable[str]) -> pd.DataFrame:
    """Each finished sample's pixel size and its source, from its ``summary.json``.

    Parameters
    ----------
    results
        Folder written by :func:`~napari_carspatial.cohort.batch.run_batch`.
    samples
        Sample ids.

    Returns
    -------
    pandas.DataFrame
        Indexed by sample: ``pixel size (µm)`` (NaN when the summary is missing) and ``pixel size
        source`` (``"–"`` when missing).
    """
    rows = {}
    for sid in samples:
        f = sample_dir(results, sid) / "summary.json"
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            d = {}
        v = d.get("pixel_size_um")
        rows[sid] = {"pixel size (µm)": float(v) if v is not None else np.nan,
                     "pixel size source": str(d.get("pixel_size_source") or "–")}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["pixel size (µm)", "pixel size source"])


def ligrec_section(metrics: pd.DataFrame, *, top: int = 5) -> str:
    """The report's ligand-receptor section (empty when the batch ran without ``ligrec:``).

    Parameters
    ----------
    metrics
        The cohort's tidy ``metrics.csv``.
    top
        Strongest sender -> receiver pairs listed per sample and region (by z).

    Returns
    -------
    str
        HTML: pairs tested and significant per sample and region (with the reason where none
        could be tested), and each sample's strongest pairs (z and log2 enrichment).
    """
    name = metrics["metric"].astype(str)
    m = metrics[name.str.startswith("lr_")].copy()
    if m.empty:
        return ""
    m["value"] = pd.to_numeric(m["value"], errors="coerce")
    note = m.get("note", pd.Series("", index=m.index)).fillna("").astype(str)
    cnt = m[m["metric"].isin(["lr_n_tested", "lr_n_significant"])].assign(note=note)
    wide = cnt.pivot_table(index=["sample", "region"], columns="metric", values="value", aggfunc="first",
                           dropna=False)
    why = cnt[cnt["metric"] == "lr_n_tested"].set_index(["sample", "region"])["note"]
    tab = pd.DataFrame({"pairs tested": wide.get("lr_n_tested"), "FDR < 0.05": wide.get("lr_n_significant")},
                       index=wide.index)
    tab["note"] = why.reindex(tab.index).fillna("")
    order = {s: i for i, s in enumerate(dict.fromkeys(metrics["sample"]))}
    tab = tab.reset_index().sort_values(["sample", "region"], key=lambda c: c.map(order) if c.name == "sample" else c,
                                        kind="stable")
    parts = [("<h2>Ligand-receptor signals between neighbouring cells</h2><p class='sub'>Per sample and region: "
             "sender → receiver type combinations × ligand-receptor pairs tested (enough contacts, both genes "
             "expressed) and those with FDR &lt; 0.05 (exact type-matched permutation null; "
             "napari_carspatial.analysis.spatial_ligrec). z grows with the number of contacts, so it ranks pairs "
             "within a sample; log2 enrichment (contacts vs the type-matched expectation) is the number compared "
             "across samples (tested in the statistics).</p>"),
             _table_html(tab, left=("sample", "region", "note"))]
    z = m[m["metric"].str.startswith("lr_z:")].copy()
    if len(z):
        z["tag"] = z["metric"].str[len("lr_z:"):]
        enr = m[m["metric"].str.startswith("lr_log2_enrichment:")].copy()
        enr["tag"] = enr["metric"].str[len("lr_log2_enrichment:"):]
        z = z.merge(enr[["sample", "region", "tag", "value"]].rename(columns={"value": "log2 enrichment"}),
                    on=["sample", "region", "tag"], how="left")
        parts_ = z["tag"].str.split(":", n=1, expand=True)
        z["ligand-receptor"] = parts_[0]  # as the metric names it: a symbol may hold '-' itself (PD-L1, HLA-A)
        z["sender → receiver"] = parts_[1].str.replace("->", " → ", regex=False)
        z = z.rename(columns={"value": "z"}).sort_values("z", ascending=False, kind="stable")
        best = z.groupby(["sample", "region"], sort=False).head(top)
        best = best.sort_values(["sample", "region"], key=lambda c: c.map(order) if c.name == "sample" else c,
                                kind="stable")
        parts.append(f"<details><summary>the {top} strongest pairs of each sample and region</summary>"
                     + _table_html(best[["sample", "region", "ligand-receptor", "sender → receiver", "z",
                                         "log2 enrichment"]],
                                   left=("sample", "region", "ligand-receptor", "sender → receiver"))
                     + "</details>")
    return "\n".join(parts)


def _group_of(df: pd.DataFrame) -> pd.Series:
    r = df["responder"] if "responder" in df else pd.Series(np.nan, index=df.index)
    return r.map(lambda v: "R" if v is True or v == "True" or v == 1 else ("NR" if v is False or v == "False" or v == 0
                                                                            else "NA"))


def _no_contacts(m: pd.DataFrame, rows: pd.DataFrame, metric: str) -> pd.Series:
    """For ``log2_oe_<pair>`` rows: True where the sample's region had no observed <pair> contacts
    (``n_contacts_<pair>`` == 0), so the ratio is only its pseudo-count floor (log2(0.5 / (E + 0.5)))."""
    if not metric.startswith("log2_oe_"):
        return pd.Series(False, index=rows.index)
    cm = m[m["metric"] == "n_contacts_" + metric[len("log2_oe_"):]]
    if cm.empty:
        return pd.Series(False, index=rows.index)
    n = cm.set_index(["sample", "region"])["value"]
    key = pd.MultiIndex.from_frame(rows[["sample", "region"]])
    return pd.Series(np.asarray(n.reindex(key).to_numpy() == 0), index=rows.index)


def _band(ax, values: np.ndarray) -> float:
    """Where "no contacts" points go: a labelled band below the axis range of the other values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
    span = max(hi - lo, 0.5)
    y = lo - 0.45 * span
    ax.axhline(lo - 0.22 * span, color="#999", lw=0.8, ls=(0, (4, 3)))
    ax.text(0.02, y, "no contacts", transform=ax.get_yaxis_transform(), fontsize=6.5, color="#555", va="center",
            ha="left", bbox={"fc": "white", "ec": "none", "pad": 0.5})
    ax.set_ylim(y - 0.15 * span, hi + 0.1 * span)
    ticks = [t for t in ax.get_yticks() if lo - 0.05 * span <= t <= hi + 0.1 * span]
    ax.set_yticks(ticks)
    return y


def _no_values(ax) -> None:
    """Say it in an empty panel: every value of the metric is NaN (undefined, the note says why)."""
    ax.text(0.5, 0.5, "no values: undefined in every sample\n(the reason is in metrics.csv, column note)",
            transform=ax.transAxes, ha="center", va="center", fontsize=6.5, color="#777")
    ax.set_yticks([])


def _paired_figure(metrics: pd.DataFrame, keys) -> str | None:
    from matplotlib.figure import Figure

    if not keys:   # no key metric among the results (another metric function): no figure
        return None

    m = add_phase(metrics)
    post_label = post_phase_label(m)
    m = m[m["phase"].isin(["pre", "post"])].copy()
    if m.empty or not {"pre", "post"} <= set(m["phase"]):
        return None
    m["value"] = pd.to_numeric(m["value"], errors="coerce")
    m["grp"] = _group_of(m)
    ncol = 4
    nrow = int(np.ceil(len(keys) / ncol))
    fig = Figure(figsize=(3.1 * ncol, 2.6 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, (rg, mt) in zip(axes, keys, strict=False):
        g = m[(m["region"] == rg) & (m["metric"] == mt)].copy()
        g["_none"] = _no_contacts(m, g, mt).astype(float)
        w = g.pivot_table(index="patient", columns="phase", values="value", aggfunc="mean")
        none = g.pivot_table(index="patient", columns="phase", values="_none", aggfunc="max") > 0
        g["_none"] = g["_none"] > 0
        grp = g.drop_duplicates("patient").set_index("patient")["grp"]
        band = _band(ax, g.loc[~g["_none"], "value"].to_numpy()) if g["_none"].any() else None
        for pat, row in w.iterrows():
            col = {"R": R_COLOR, "NR": NR_COLOR}.get(grp.get(pat), NA_COLOR)
            ys = [row.get("pre", np.nan), row.get("post", np.nan)]
            if band is not None:
                flags = [bool(none.loc[pat].get(t, False)) if pat in none.index and t in none.columns else False
                         for t in ("pre", "post")]
                ys = [band if f else y for y, f in zip(ys, flags, strict=False)]
                ls = "--" if any(flags) else "-"
            else:
                ls = "-"
            ax.plot([0, 1], ys, ls, marker="o", color=col, alpha=0.8, lw=1.4, ms=4)
        if ("pre" not in w or w["pre"].isna().all()) and "post" in w and w["post"].notna().any():
            ax.text(0, 0.5, "undefined\nbefore infusion", transform=ax.get_xaxis_transform(), ha="center",
                    va="center", fontsize=6.5, color="#777")
        ax.set_xticks([0, 1], ["pre", post_label.replace(" / ", "\n")])
        ax.set_xlim(-0.3, 1.3)
        if not np.isfinite(g["value"].to_numpy(float)).any():
            _no_values(ax)
        ax.set_title(f"{mt}\n[{rg}]", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    fig.legend([Line2D([], [], color=R_COLOR, marker="o"), Line2D([], [], color=NR_COLOR, marker="o")],
               ["responder (CR/PR)", "non-responder (SD/PD)"], loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _png(fig)


def _group_figure(metrics: pd.DataFrame, keys, seed: int = 0) -> str | None:
    from matplotlib.figure import Figure

    if not keys:   # no key metric among the results (another metric function): no figure
        return None

    m = add_phase(metrics)
    m["value"] = pd.to_numeric(m["value"], errors="coerce")
    metrics_num = m
    m["grp"] = _group_of(m)
    m = m[m["grp"] != "NA"]
    if m.empty:
        return None
    post_label = post_phase_label(m)
    if m["phase"].isin(["pre", "post"]).any():   # pre, and each patient's post sample (post, else day N)
        m = m.assign(timepoint=m["phase"].replace({"post": post_label}))
    tps = [t for t in ("pre", post_label) if t in set(m["timepoint"])] or sorted(m["timepoint"].unique())[:2]
    boxes = [(t, g) for t in tps for g in ("R", "NR")]
    ncol = 4
    nrow = int(np.ceil(len(keys) / ncol))
    fig = Figure(figsize=(3.1 * ncol, 2.8 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    rng = np.random.default_rng(seed)
    for ax, (rg, mt) in zip(axes, keys, strict=False):
        g = m[(m["region"] == rg) & (m["metric"] == mt)].copy()
        g["_none"] = _no_contacts(metrics_num, g, mt)
        band = _band(ax, g.loc[~g["_none"], "value"].to_numpy()) if g["_none"].any() else None
        sel = [(g["timepoint"] == t) & (g["grp"] == gr) for t, gr in boxes]
        data = [g[s_ & ~g["_none"]]["value"].dropna().to_numpy() for s_ in sel]
        flat = [int((s_ & g["_none"]).sum()) for s_ in sel]
        pos = np.arange(len(boxes))
        nonempty = [i for i, d in enumerate(data) if d.size]
        if nonempty:
            bp = ax.boxplot([data[i] for i in nonempty], positions=pos[nonempty], widths=0.6, showfliers=False,
                            patch_artist=True)
            for patch, i in zip(bp["boxes"], nonempty, strict=False):
                patch.set_facecolor((R_COLOR if boxes[i][1] == "R" else NR_COLOR) + "33")
                patch.set_edgecolor(R_COLOR if boxes[i][1] == "R" else NR_COLOR)
            for med in bp["medians"]:
                med.set_color("#222")
        for i, d in enumerate(data):
            color = R_COLOR if boxes[i][1] == "R" else NR_COLOR
            ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=12, zorder=3, color=color, edgecolors="white",
                       linewidths=0.4)
            if band is not None and flat[i]:
                ax.scatter(i + rng.uniform(-0.15, 0.15, flat[i]), np.full(flat[i], band), s=12, zorder=3,
                           color=color, edgecolors="white", linewidths=0.4, marker="v")
        ax.set_xticks(pos, [f"{t}\n{gr}" for t, gr in boxes], fontsize=7)
        if not np.isfinite(g["value"].to_numpy(float)).any():
            _no_values(ax)
        ax.set_title(f"{mt}\n[{rg}]", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _table_html(df: pd.DataFrame, *, left=(), row_class=None, digits: int = 3) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    rows = []
    for _i, (_, r) in enumerate(df.iterrows()):
        cls = row_class(r) if row_class else ""
        cells = "".join(
            f'<td class="{"l" if c in left else ""}{" w" if c == "warning" else ""}">{_fmt(r[c], digits)}</td>'
            for c in df.columns)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def write_report(results: str | os.PathLike, *, out: str | os.PathLike | None = None, stats: pd.DataFrame | None = None,
                 seed: int = 0, n_boot: int = 2000, keys: Sequence[tuple[str, str]] = KEY_METRICS,
                 title: str | None = None, review: Any = None) -> Path:
    """Write ``RESULTS/report.html`` (and ``RESULTS/statistics.csv``) from a batch results folder.

    Parameters
    ----------
    results
        Folder written by :func:`~napari_carspatial.cohort.batch.run_batch`.
    out
        Report path (default ``RESULTS/report.html``).
    stats
        Precomputed :func:`~napari_carspatial.cohort.stats.cohort_statistics` (else computed).
    seed, n_boot
        Bootstrap of the confidence intervals.
    keys
        ``(region, metric)`` pairs shown in the tables and plots.
    title
        Report title (default: the trial names of the manifest).
    review
        A review project (folder or :class:`~napari_carspatial.review.ReviewProject`) whose
        double reads add a reader-agreement section (kappa per sample and class, the trial's
        distribution; see :func:`napari_carspatial.review.agreement_section`).

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    results = Path(results)
    run = json.loads((results / "run.json").read_text(encoding="utf-8"))
    man = read_manifest(run["manifest"], check_files=False)
    metrics = pd.read_csv(results / "metrics.csv", dtype={"sample": str, "patient": str})
    failures = pd.read_csv(results / "failures.csv") if (results / "failures.csv").is_file() else pd.DataFrame()
    if stats is None:
        stats = cohort_statistics(metrics, n_boot=n_boot, seed=seed)
    atomic_write(results / "statistics.csv", lambda tmp: stats.to_csv(tmp, index=False))
    keys = key_metrics(metrics, keys)
    trials = sorted({t for t in man.table["trial"] if t})
    title = title or ("Cohort report: " + (", ".join(trials) if trials else man.path.name))
    n_pat = man.table["patient"].nunique()
    resp = man.table.drop_duplicates("patient")["response"].value_counts().to_dict()
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<div class="sub">manifest {html.escape(str(man.path))} · config {html.escape(str(run.get("config_file")))}'
             f' · {len(man.samples)} samples of {n_pat} patients · responses '
             + ", ".join(f"{k}: {v}" for k, v in sorted(resp.items())) +
             f' · finished {html.escape(str(run.get("finished")))} on {html.escape(str(run.get("scheduler")))}</div>']
    done = set(metrics["sample"])
    missing = [s for s in man.samples if s not in done]
    if len(failures) or missing:
        parts.append(f'<p class="fail">{len(missing)} sample(s) without results: {html.escape(", ".join(missing))}. '
                     "See failures below and batch.log.</p>")
    small = stats[stats["small_n"].astype(bool)] if len(stats) else stats
    if len(small):
        parts.append('<p class="note">' + _small_banner(small) + "</p>")

    # thumbnails
    parts.append("<h2>Samples</h2>")
    contrast = results / "thumbnail_contrast.json"
    if contrast.is_file():
        lim = json.loads(contrast.read_text(encoding="utf-8")).get("limits", {})
        parts.append("<p class='sub'>Thumbnail colours: one display range per marker for every sample (black – "
                     "white, raw intensity): " + html.escape(", ".join(f"{k} {_fmt(a)} – {_fmt(b)}"
                                                                       for k, (a, b) in lim.items()))
                     + ". So a marker that looks dark is dim, in any sample.</p>")
    parts.append("<div class='grid'>")
    for sid in man.samples:
        row = man.table.loc[sid]
        p = sample_dir(results, sid) / "thumbnail.png"
        grp = "R" if row["responder"] is True else ("NR" if row["responder"] is False else "")
        cap = (f"<b>{html.escape(sid)}</b> · {html.escape(str(row['timepoint']))} · "
               f"<span class='{grp}'>{html.escape(str(row['response'] or '–'))}</span>")
        img = _img_tag(base64.b64encode(p.read_bytes()).decode("ascii"), sid, "thumb") if p.is_file() else \
            "<div style='width:200px;height:100px;background:#eee'>no thumbnail</div>"
        parts.append(f"<div class='card' style='width:{'340' if p.is_file() else '200'}px'>{img}{cap}</div>")
    parts.append("</div>")

    # key metric table
    parts.append("<h2>Key metrics per sample</h2>")
    wide = wide_key_table(metrics, keys)
    px = sample_pixel_sizes(results, wide.index)
    at = list(wide.columns).index("cells") + 1 if "cells" in wide.columns else len(wide.columns)
    for i, c in enumerate(px.columns):
        wide.insert(at + i, c, px[c].reindex(wide.index))
    wide = wide.reset_index()
    parts.append(_table_html(wide, left=("sample", "patient", "timepoint", "response", "pixel size source")))
    parts.append("<p class='sub'>Every metric of every region is in metrics.csv (tidy: sample, region, metric, "
                 "value, unit + clinical columns). Definitions: docs/cohorts.md and docs/metrics.md. Densities and "
                 "distances use each sample's pixel size; its source is where it came from (the image's metadata, "
                 "the manifest's pixel_size_um column, the config, ...), also in samples/&lt;sample&gt;/summary.json."
                 "</p>")
    lr = ligrec_section(metrics)
    if lr:
        parts.append(lr)

    # paired and group figures
    b64 = _paired_figure(metrics, keys)
    if b64:
        parts.append("<h2>Before → after infusion, per patient</h2>" + _img_tag(b64, "paired plots"))
    b64 = _group_figure(metrics, keys, seed=seed)
    if b64:
        parts.append("<h2>Responders (CR/PR) vs non-responders (SD/PD)</h2>" + _img_tag(b64, "group comparisons"))

    # statistics
    parts.append("<h2>Statistics</h2><p class='sub'>Paired: Wilcoxon signed-rank on post − pre (a patient's post "
                 "sample is the one marked post, else its earliest day N); pairs with no "
                 "change are dropped by the test, so <i>n</i> shows the pairs and the non-zero differences the p "
                 "rests on; effect = Hodges-Lehmann median difference, 95 % CI a seeded percentile bootstrap over "
                 "patients. Groups: Mann-Whitney U, effect = rank-biserial r (+1: every value of the first group "
                 "higher, −1: every value lower); its 95 % CI is a score interval for P(a &gt; b) with the "
                 "Hanley-McNeil variance, which stays informative when the groups are perfectly separated (r = ±1: "
                 "the interval is one-sided, e.g. [0.14, 1] for 5 vs 3; a bootstrap would only ever give [1, 1]). "
                 "q: Benjamini-Hochberg within each comparison across regions × metrics. Counts, areas and z-scores "
                 "are not tested (not comparable across samples). Green rows: q &lt; 0.05.</p>")
    if len(stats):
        st = stats.copy()   # not-testable rows (p NaN) stay, counted and listed with their reason
        paired = st["comparison"].str.contains("paired")
        n_eff = st["n_eff"] if "n_eff" in st else st["n_a"]
        st["n"] = np.where(paired, st["n_a"].astype(int).astype(str) + " pairs"
                           + np.where(n_eff.astype(int) != st["n_a"].astype(int),
                                      " (" + n_eff.astype(int).astype(str) + " changed)", ""),
                           st["n_a"].astype(int).astype(str) + " vs " + st["n_b"].astype(int).astype(str))
        st["warning"] = st["warning"].where(~st["small_n"].astype(bool), "small n")
        keyset = set(keys)
        cols = ["region", "metric", "n", "median_a", "median_b", "effect_name", "effect", "ci_low",
                "ci_high", "p", "q", "warning"]

        def rc(r):
            return ("sig " if r["q"] < 0.05 else "") + ("small" if r["warning"] else "")

        for comp in dict.fromkeys(stats["comparison"]):
            g = st[st["comparison"] == comp].sort_values(["q", "p"], kind="stable")
            if g.empty:
                continue
            a, b = g["group_a"].iloc[0], g["group_b"].iloc[0]
            top = g[g[["region", "metric"]].apply(tuple, axis=1).isin(keyset) | (g["q"] < 0.05)]
            untestable = int(g["p"].astype(float).isna().sum())
            parts.append(f"<h3>{html.escape(comp)}</h3><p class='sub'>a = {html.escape(str(a))}, b = "
                         f"{html.escape(str(b))}; {int((g['q'] < 0.05).sum())} of {len(g) - untestable} tests with "
                         f"q &lt; 0.05"
                         + (f"; {untestable} metric(s) not testable (p –, the warning says why)" if untestable else "")
                         + ". Shown: key metrics and every test with q &lt; 0.05.</p>")
            parts.append(_table_html(top[cols], left=("region", "metric", "n", "effect_name", "warning"),
                                     row_class=rc))
            parts.append(f"<details><summary>all {len(g)} tests of this comparison</summary>"
                         + _table_html(g[cols], left=("region", "metric", "n", "effect_name", "warning"), row_class=rc)
                         + "</details>")
    if "note" in metrics:
        notes = metrics[metrics["note"].fillna("").astype(str) != ""].drop_duplicates(["sample", "region"])
        if len(notes):
            parts.append("<h2>Regions without cells or area</h2><p class='sub'>Their densities, fractions and "
                         "ratios are NaN (shown as –), never 0.</p>"
                         + _table_html(notes[["sample", "region", "note"]], left=("sample", "region", "note")))
    if review is not None:
        from ..review import agreement_section

        parts.append(agreement_section(review, seed=seed))   # the review's own interval size (N_BOOT)
    if len(failures):
        parts.append("<h2>Failures</h2>" + _table_html(failures, left=tuple(failures.columns)))
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + html.escape(title) +
           f"</title><style>{_CSS}</style></head><body>" + "\n".join(parts) +
           "<p class='sub'>Generated by napari-carspatial (carspatial batch).</p></body></html>")
    out = Path(out) if out else results / "report.html"
    atomic_write_text(out, doc)
    log.info("report written to %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
