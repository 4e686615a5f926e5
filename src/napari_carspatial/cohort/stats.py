"""Cohort statistics on the tidy metric table (sample x region x metric + clinical columns).

* Paired before/after per patient: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact for
  small n without ties) on ``post - pre``; effect = Hodges-Lehmann estimate of the median paired
  difference (median of the Walsh averages) with a seeded percentile bootstrap CI over patients.
* Two groups (responders CR/PR vs non-responders SD/PD; CRS grade >= 2 vs < 2): Mann-Whitney U
  (two-sided); effect = rank-biserial correlation ``r = 2 U_a / (n_a n_b) - 1`` (+1: every value
  of group a above every value of group b) with a seeded percentile bootstrap CI (resampling
  within groups), plus the difference of the medians.
* Benjamini-Hochberg FDR within each comparison, across every region x metric tested.
* Counts, areas and z-scores (:data:`NOT_COMPARABLE`) grow with the size of a sample and are not
  tested; densities per mm², fractions and log2 observed/expected ratios are.
* Small groups (n < ``min_n``, default 5, per group or pairs) are flagged in the table
  (``small_n``, ``warning``) and logged: with 3 vs 3 samples the smallest two-sided Mann-Whitney
  p is 0.1, so nothing can reach 0.05 however large the effect.

Metrics that are undefined for a sample (NaN, e.g. CAR T fractions before infusion when there
are no CAR T cells) are left out of that metric's test (pairs need both timepoints).

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: metrics that are not comparable across samples (they grow with the sample / region size) and
#: are therefore not tested: counts, areas and permutation-free z-scores (squidpy issue #483)
NOT_COMPARABLE = ("n_cells", "n_car_t", "n_tumor", "n_myeloid", "area_mm2", "antigen_neg_clustering_z")

COLUMNS = ["comparison", "region", "metric", "test", "group_a", "group_b", "n_a", "n_b", "median_a", "median_b",
           "effect_name", "effect", "ci_low", "ci_high", "p", "q", "small_n", "warning"]


def bh_fdr(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def hodges_lehmann(d) -> float:
    """One-sample Hodges-Lehmann estimate: median of the Walsh averages ``(d_i + d_j) / 2``, i <= j."""
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return float("nan")
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def _hl_rows(D: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(D.shape[1])
    return np.median((D[:, i] + D[:, j]) / 2, axis=1)


def _ci(boot: np.ndarray, level: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return float(lo), float(hi)


def rank_biserial(a, b) -> float:
    """Rank-biserial correlation of groups a and b: P(a > b) - P(a < b) (ties count half)."""
    a = np.asarray(a, float)[:, None]
    b = np.asarray(b, float)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.mean(np.sign(a - b)))


def _small_warning(n_a: int, n_b: int | None, min_n: int) -> str:
    if n_a == 0 or n_b == 0:
        return "not testable: no values (metric undefined, e.g. no CAR T cells)"
    if n_b is None:
        return f"only {n_a} pair{'s' if n_a != 1 else ''} (< {min_n}): low power, interpret with caution" \
            if n_a < min_n else ""
    if min(n_a, n_b) < min_n:
        return f"small groups ({n_a} vs {n_b}; < {min_n} per group): low power, interpret with caution"
    return ""


def paired_test(pre, post, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Wilcoxon signed-rank on ``post - pre`` with a Hodges-Lehmann effect and bootstrap CI."""
    from scipy import stats

    pre, post = np.asarray(pre, float), np.asarray(post, float)
    ok = np.isfinite(pre) & np.isfinite(post)
    pre, post = pre[ok], post[ok]
    d = post - pre
    n = d.size
    res = {"n": n, "median_pre": float(np.median(pre)) if n else np.nan,
           "median_post": float(np.median(post)) if n else np.nan, "effect": hodges_lehmann(d),
           "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    if n == 0:
        return res
    if np.all(d == 0):
        res["p"] = 1.0
    elif n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res["p"] = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    if n >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        res["ci_low"], res["ci_high"] = _ci(_hl_rows(d[idx]), level)
    return res


def group_test(a, b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mann-Whitney U (two-sided) with the rank-biserial correlation and a bootstrap CI."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    res = {"n_a": a.size, "n_b": b.size, "median_a": float(np.median(a)) if a.size else np.nan,
           "median_b": float(np.median(b)) if b.size else np.nan, "effect": rank_biserial(a, b),
           "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    if a.size == 0 or b.size == 0:
        return res
    allv = np.concatenate([a, b])
    if np.all(allv == allv[0]):
        res["p"] = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res["p"] = float(stats.mannwhitneyu(a, b, alternative="two-sided", method="auto").pvalue)
    rng = np.random.default_rng(seed)
    A = a[rng.integers(0, a.size, size=(n_boot, a.size))]
    B = b[rng.integers(0, b.size, size=(n_boot, b.size))]
    boot = np.mean(np.sign(A[:, :, None] - B[:, None, :]), axis=(1, 2))
    res["ci_low"], res["ci_high"] = _ci(boot, level)
    return res


def _values(metrics: pd.DataFrame, exclude=NOT_COMPARABLE) -> pd.DataFrame:
    df = metrics[~metrics["metric"].isin(list(exclude or ()))].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df = df.replace([np.inf, -np.inf], np.nan)
    return df


def paired_tests(metrics: pd.DataFrame, *, pre: str = "pre", post: str = "post", n_boot: int = 2000,
                 seed: int = 0, min_n: int = 5, level: float = 0.95, exclude=NOT_COMPARABLE) -> pd.DataFrame:
    """Pre -> post per patient for every region x metric (see the module docstring).

    Parameters
    ----------
    metrics
        Tidy table with ``patient``, ``timepoint``, ``region``, ``metric``, ``value``.
    pre, post
        The two timepoints.
    n_boot, seed, level
        Bootstrap resamples, seed and CI level.
    min_n
        Fewer pairs are flagged ``small_n``.
    exclude
        Metrics not tested (default :data:`NOT_COMPARABLE`: counts, areas, z-scores).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``group_a`` = post, ``group_b`` = pre, ``effect`` = HL median of
        post - pre.
    """
    df = _values(metrics, exclude)
    df = df[df["timepoint"].isin([pre, post])]
    rows = []
    for (region, metric), g in df.groupby(["region", "metric"], sort=False):
        w = g.pivot_table(index="patient", columns="timepoint", values="value", aggfunc="mean", dropna=False)
        if pre not in w or post not in w:
            continue
        r = paired_test(w[pre].to_numpy(), w[post].to_numpy(), n_boot=n_boot, seed=seed, level=level)
        rows.append({"comparison": f"{post} vs {pre} (paired)", "region": region, "metric": metric,
                     "test": "Wilcoxon signed-rank", "group_a": post, "group_b": pre, "n_a": r["n"], "n_b": r["n"],
                     "median_a": r["median_post"], "median_b": r["median_pre"],
                     "effect_name": "HL median difference (a - b)", "effect": r["effect"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "p": r["p"], "small_n": 0 < r["n"] < min_n,
                     "warning": _small_warning(r["n"], None, min_n)})
    return _finish(rows)


def group_tests(metrics: pd.DataFrame, *, timepoint: str | None = "post", column: str = "responder",
                a=True, b=False, names=("responders", "non-responders"), n_boot: int = 2000, seed: int = 0,
                min_n: int = 5, level: float = 0.95, exclude=NOT_COMPARABLE) -> pd.DataFrame:
    """Group a vs group b (one value per sample) for every region x metric at one timepoint.

    Parameters
    ----------
    metrics
        Tidy table; ``column`` holds the grouping (default ``responder``: True / False).
    timepoint
        Only samples at this timepoint (``None``: all samples).
    a, b
        Values of ``column`` for the two groups, or callables ``value -> bool``.
    names
        Labels of the groups.
    n_boot, seed, min_n, level, exclude
        As in :func:`paired_tests`.
    """
    df = _values(metrics, exclude)
    if timepoint is not None:
        df = df[df["timepoint"] == timepoint]
    sel_a = df[column].map(a) if callable(a) else df[column] == a
    sel_b = df[column].map(b) if callable(b) else df[column] == b
    df = df.assign(_grp=np.where(sel_a.fillna(False).astype(bool), "a",
                                 np.where(sel_b.fillna(False).astype(bool), "b", "")))
    df = df[df["_grp"] != ""]
    label = f"{names[0]} vs {names[1]}" + (f" ({timepoint})" if timepoint else "")
    rows = []
    for (region, metric), g in df.groupby(["region", "metric"], sort=False):
        r = group_test(g.loc[g["_grp"] == "a", "value"].to_numpy(), g.loc[g["_grp"] == "b", "value"].to_numpy(),
                       n_boot=n_boot, seed=seed, level=level)
        rows.append({"comparison": label, "region": region, "metric": metric, "test": "Mann-Whitney U",
                     "group_a": names[0], "group_b": names[1], "n_a": r["n_a"], "n_b": r["n_b"],
                     "median_a": r["median_a"], "median_b": r["median_b"], "effect_name": "rank-biserial r",
                     "effect": r["effect"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"],
                     "small_n": 0 < min(r["n_a"], r["n_b"]) < min_n,
                     "warning": _small_warning(r["n_a"], r["n_b"], min_n)})
    return _finish(rows)


def _finish(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "q"] + ["q"])
    if len(out):
        out["q"] = bh_fdr(out["p"].to_numpy())
    return out[COLUMNS]


def cohort_statistics(metrics: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, min_n: int = 5,
                      level: float = 0.95, toxicity: bool = True, exclude=NOT_COMPARABLE) -> pd.DataFrame:
    """Every standard comparison of a cohort, FDR-corrected within each comparison.

    Comparisons: paired post vs pre; responders vs non-responders at post and at pre; with
    ``toxicity`` and both groups present, CRS grade >= 2 vs < 2 at post.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per comparison x region x metric. Small-n rows are
        flagged and a summary warning is logged.
    """
    parts = []
    tps = set(metrics["timepoint"].dropna().unique()) if len(metrics) else set()
    if {"pre", "post"} <= tps:
        parts.append(paired_tests(metrics, n_boot=n_boot, seed=seed, min_n=min_n, level=level, exclude=exclude))
    kw = {"n_boot": n_boot, "seed": seed, "min_n": min_n, "level": level, "exclude": exclude}
    if "responder" in metrics:
        for tp in ("post", "pre"):
            if tp in tps:
                parts.append(group_tests(metrics, timepoint=tp, **kw))
    if toxicity and "crs_grade" in metrics:
        g = pd.to_numeric(metrics["crs_grade"], errors="coerce")
        if (g >= 2).any() and (g < 2).any() and "post" in tps:
            m2 = metrics.assign(_crs=np.where(g.isna(), np.nan, (g >= 2).astype(float)))
            parts.append(group_tests(m2, timepoint="post", column="_crs", a=1.0, b=0.0,
                                     names=("CRS grade >= 2", "CRS grade < 2"), **kw))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    for comp, g in out.groupby("comparison", sort=False):
        small = g[g["small_n"]]
        if len(small):
            log.warning("cohort statistics, %s: %d of %d tests have small groups (e.g. %s, %s: %s)", comp, len(small),
                        len(g), small["region"].iloc[0], small["metric"].iloc[0], small["warning"].iloc[0])
    return out
