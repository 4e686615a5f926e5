"""Cohort statistics on the tidy metric table (sample x region x metric + clinical columns).

* Paired before/after per patient: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact for
  small n without ties) on ``post - pre``; zero differences are dropped by the test (Wilcoxon's
  convention), so the table gives both the pairs (``n_a`` = ``n_b``) and the effective n
  (``n_eff``, non-zero differences) the p-value rests on. One non-zero difference gives p = 1
  (exact); no change at all gives p = 1 too (scipy's value), with a warning saying so. Effect = Hodges-Lehmann estimate of the
  median paired difference (median of the Walsh averages) with a seeded percentile bootstrap CI
  over patients.
* Two groups (responders CR/PR vs non-responders SD/PD; CRS grade >= 2 vs < 2): Mann-Whitney U
  (two-sided; ``n_eff`` = ``n_a + n_b``, every value the test ranks); effect = rank-biserial correlation ``r = 2 U_a / (n_a n_b) - 1`` (+1: every value
  of group a above every value of group b), plus the difference of the medians. Its 95 % CI is a
  score interval for ``P(a > b) = (r + 1) / 2`` with the Hanley-McNeil (1982) variance evaluated at
  the candidate value (:func:`rank_biserial_ci`): unlike a bootstrap it stays informative when the
  groups are perfectly separated (a bootstrap of r = 1 only ever resamples r = 1 and gives [1, 1]).
* Benjamini-Hochberg FDR within each comparison, across every region x metric tested
  (``scipy.stats.false_discovery_control``).
* Counts, areas and z-scores (:data:`NOT_COMPARABLE`) grow with the size of a sample and are not
  tested; densities per mm², fractions and log2 observed/expected ratios are.
* Small groups (n < ``min_n``, default 5, per group or pairs) are flagged in the table
  (``small_n``, ``warning``) and logged: with 3 vs 3 samples the smallest two-sided Mann-Whitney
  p is 0.1, so nothing can reach 0.05 however large the effect.

Metrics that are undefined for a sample (NaN, e.g. CAR T fractions before infusion when there
are no CAR T cells) are left out of that metric's test (pairs need both timepoints).

Headless: no napari, no Qt.

One module (546 lines) because the tests, their effect sizes and intervals, the small-n flags and
the BH correction build one table with one column schema; the low-level helpers
(:func:`rank_biserial_ci`, :func:`hodges_lehmann`, the small-n warning) are shared by the paired and
the group tests and by :func:`cohort_statistics`.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

#: metrics that are not comparable across samples (they grow with the sample / region size) and
#: are therefore not tested: counts, areas and permutation-free z-scores (squidpy issue #483)
NOT_COMPARABLE = ("n_cells", "n_car_t", "n_tumor", "n_myeloid", "area_mm2", "antigen_neg_clustering_z")
#: any metric starting with this is a count and is not tested either (``n_contacts_car_t_tumor``, ...)
COUNT_PREFIX = "n_"
#: ligand-receptor metrics not tested across samples: z-scores grow with the number of contacts,
#: the tested / significant counts with the sample (``lr_log2_enrichment`` and ``lr_score`` are tested)
NOT_COMPARABLE_PREFIXES = ("lr_z:", "lr_n_")

COLUMNS = ["comparison", "region", "metric", "test", "group_a", "group_b", "n_a", "n_b", "n_eff", "median_a",
           "median_b", "effect_name", "effect", "ci_low", "ci_high", "ci_method", "p", "q", "small_n", "warning"]


def bh_fdr(p: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q), :func:`scipy.stats.false_discovery_control`.

    Parameters
    ----------
    p
        p-values; NaN stays NaN and is not counted.

    Returns
    -------
    numpy.ndarray
        q-values, same shape.
    """
    from scipy import stats

    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def min_p_mann_whitney(n_a: int, n_b: int) -> float:
    """Smallest two-sided exact Mann-Whitney p-value: 2 / C(n_a + n_b, n_a).

    Parameters
    ----------
    n_a, n_b
        Group sizes.

    Returns
    -------
    float
    """
    from math import comb

    if n_a < 1 or n_b < 1:
        return float("nan")
    return min(1.0, 2.0 / comb(n_a + n_b, n_a))


def min_p_wilcoxon(n: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p-value with n non-zero differences: 2 / 2^n.

    Parameters
    ----------
    n
        Non-zero pair differences.

    Returns
    -------
    float
    """
    return float("nan") if n < 1 else min(1.0, 2.0 ** (1 - n))


def rank_biserial_ci(r: float, n_a: int, n_b: int, level: float = 0.95) -> tuple[float, float]:
    """Score interval for the rank-biserial r via ``theta = P(a > b) = (r + 1) / 2``.

    The interval is every theta with ``(theta_hat - theta)^2 <= z^2 V(theta)``, ``V`` the
    Hanley-McNeil (1982) variance of the Mann-Whitney AUC evaluated at theta:
    ``theta (1 - theta) / (n_a n_b) * [1 + (n_a - 1)(1 - theta)/(2 - theta) + (n_b - 1) theta/(1 + theta)]``.
    At complete separation (r = +-1) it is one-sided and non-degenerate, e.g. r = 1 with 5 vs 3: [0.14, 1].

    Parameters
    ----------
    r
        Rank-biserial correlation.
    n_a, n_b
        Group sizes.
    level
        Confidence level.

    Returns
    -------
    tuple of float
        ``(low, high)`` on the r scale.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    if not np.isfinite(r) or n_a < 1 or n_b < 1:
        return float("nan"), float("nan")
    th = (float(r) + 1.0) / 2.0
    z = float(norm.ppf(0.5 + level / 2.0))

    def f(t):
        v = t * (1 - t) / (n_a * n_b) * (1 + (n_a - 1) * (1 - t) / (2 - t) + (n_b - 1) * t / (1 + t))
        return (th - t) ** 2 - z * z * v

    eps = 1e-12
    lo = 0.0 if th <= eps or f(0.0) <= 0 else brentq(f, 0.0, max(th - eps, eps / 2) if f(th - eps) < 0 else th)
    hi = 1.0 if th >= 1 - eps or f(1.0) <= 0 else brentq(f, min(th + eps, 1 - eps / 2) if f(th + eps) < 0 else th,
                                                             1.0)
    return 2 * lo - 1, 2 * hi - 1


def hodges_lehmann(d: ArrayLike) -> float:
    """One-sample Hodges-Lehmann estimate: median of the Walsh averages ``(d_i + d_j) / 2``, i <= j.

    Parameters
    ----------
    d
        Differences (NaN dropped).

    Returns
    -------
    float
    """
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


def rank_biserial(a: ArrayLike, b: ArrayLike) -> float:
    """Rank-biserial correlation of groups a and b: P(a > b) - P(a < b) (ties count half).

    Parameters
    ----------
    a, b
        The two groups' values.

    Returns
    -------
    float
        In [-1, 1].
    """
    a = np.asarray(a, float)[:, None]
    b = np.asarray(b, float)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.mean(np.sign(a - b)))


def _small_warning(n_a: int, n_b: int | None, min_n: int, n_eff: int | None = None, names=("a", "b")) -> str:
    undefined = "the metric is NaN there; metrics.csv's note says why"
    if n_b is None and n_a == 0:
        return f"not testable: no patient has a value at both timepoints ({undefined})"
    if n_b is not None and (n_a == 0 or n_b == 0):
        empty = " and ".join(str(nm) for nm, n in zip(names, (n_a, n_b), strict=True) if n == 0)
        return f"not testable: no values for {empty} ({undefined})"
    if n_b is None:
        k = n_a if n_eff is None else n_eff
        if k >= min_n:
            return ""
        if k == 0:
            return (f"no pair changed (all {n_a} pair difference{'s are' if n_a != 1 else ' is'} 0): p = 1, as "
                    "scipy's Wilcoxon gives; there is nothing to detect")
        dropped = "" if n_eff is None or n_eff == n_a else f" ({n_a} pairs, {n_a - n_eff} with no change dropped)"
        return (f"only {k} non-zero pair difference{'s' if k != 1 else ''}{dropped} (< {min_n}): low power, "
                f"smallest possible p {min_p_wilcoxon(k):.2g}")
    if min(n_a, n_b) < min_n:
        return (f"small groups ({n_a} vs {n_b}; < {min_n} per group): low power, smallest possible p "
                f"{min_p_mann_whitney(n_a, n_b):.2g}")
    return ""


def paired_test(pre: ArrayLike, post: ArrayLike, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Wilcoxon signed-rank on ``post - pre`` with a Hodges-Lehmann effect and bootstrap CI.

    Parameters
    ----------
    pre, post
        Paired values (same order, one per patient).
    n_boot, seed, level
        Bootstrap resamples over patients, its seed and the CI level.

    Returns
    -------
    dict
        ``p``, ``effect`` (HL median of post - pre), ``ci_low``, ``ci_high``, ``n_a``, ``n_eff``, ...
    """
    from scipy import stats

    pre, post = np.asarray(pre, float), np.asarray(post, float)
    ok = np.isfinite(pre) & np.isfinite(post)
    pre, post = pre[ok], post[ok]
    d = post - pre
    n = d.size
    res = {"n": n, "n_eff": int(np.count_nonzero(d)), "median_pre": float(np.median(pre)) if n else np.nan,
           "median_post": float(np.median(post)) if n else np.nan, "effect": hodges_lehmann(d),
           "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    if n == 0:
        return res
    if np.all(d == 0):
        res["p"] = 1.0   # scipy.stats.wilcoxon's value when every difference is 0
    else:                # one non-zero difference included: its exact p is 1 (2 / 2^1), as scipy gives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res["p"] = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    if n >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        res["ci_low"], res["ci_high"] = _ci(_hl_rows(d[idx]), level)
    return res


def group_test(a: ArrayLike, b: ArrayLike, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mann-Whitney U (two-sided) with the rank-biserial correlation and its score CI.

    Parameters
    ----------
    a, b
        The two groups' values.
    n_boot, seed
        Accepted for API symmetry with :func:`paired_test` (the CI is :func:`rank_biserial_ci`).
    level
        CI level.

    Returns
    -------
    dict
        ``p``, ``effect`` (rank-biserial r), ``ci_low``, ``ci_high``, ``n_a``, ``n_b``, ...
    """
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
    res["ci_low"], res["ci_high"] = rank_biserial_ci(res["effect"], a.size, b.size, level)
    return res


def _values(metrics: pd.DataFrame, exclude=NOT_COMPARABLE) -> pd.DataFrame:
    name = metrics["metric"].astype(str)
    df = metrics[~name.isin(list(exclude or ())) & ~name.str.startswith(COUNT_PREFIX)
                 & ~name.str.startswith(NOT_COMPARABLE_PREFIXES)].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df = df.replace([np.inf, -np.inf], np.nan)
    return df


def paired_tests(metrics: pd.DataFrame, *, pre: str = "pre", post: str = "post", n_boot: int = 2000,
                 seed: int = 0, min_n: int = 5, level: float = 0.95, exclude: Sequence[str] = NOT_COMPARABLE,
                 by: str = "timepoint") -> pd.DataFrame:
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
    by
        Column holding ``pre`` / ``post`` (``"phase"`` of :func:`add_phase`: a patient's earliest
        ``day N`` is its post sample when none is marked ``post``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``group_a`` = post, ``group_b`` = pre, ``effect`` = HL median of
        post - pre.
    """
    df = _values(metrics, exclude)
    df = df[df[by].isin([pre, post])]
    rows = []
    for (region, metric), g in df.groupby(["region", "metric"], sort=False):
        w = g.pivot_table(index="patient", columns=by, values="value", aggfunc="mean", dropna=False)
        if pre not in w or post not in w:
            continue
        r = paired_test(w[pre].to_numpy(), w[post].to_numpy(), n_boot=n_boot, seed=seed, level=level)
        rows.append({"comparison": f"{post} vs {pre} (paired)", "region": region, "metric": metric,
                     "test": "Wilcoxon signed-rank", "group_a": post, "group_b": pre, "n_a": r["n"], "n_b": r["n"],
                     "n_eff": r["n_eff"], "median_a": r["median_post"], "median_b": r["median_pre"],
                     "effect_name": "HL median difference (a - b)", "effect": r["effect"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "ci_method": "percentile bootstrap over patients", "p": r["p"],
                     "small_n": 0 < r["n_eff"] < min_n or (r["n"] > 0 and r["n_eff"] == 0 and r["n"] < min_n),
                     "warning": _small_warning(r["n"], None, min_n, r["n_eff"])})
    return _finish(rows)


def group_tests(metrics: pd.DataFrame, *, timepoint: str | None = "post", column: str = "responder",
                a: Any = True, b: Any = False, names: tuple[str, str] = ("responders", "non-responders"),
                n_boot: int = 2000, seed: int = 0, min_n: int = 5, level: float = 0.95,
                exclude: Sequence[str] = NOT_COMPARABLE, by: str = "timepoint") -> pd.DataFrame:
    """Group a vs group b (one value per sample) for every region x metric at one timepoint.

    Parameters
    ----------
    metrics
        Tidy table; ``column`` holds the grouping (default ``responder``: True / False).
    timepoint
        Only samples at this timepoint (``None``: all samples).
    column
        The grouping column.
    a, b
        Values of ``column`` for the two groups, or callables ``value -> bool``.
    names
        Labels of the groups.
    n_boot, seed, min_n, level, exclude, by
        As in :func:`paired_tests` (``timepoint`` is a value of column ``by``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``group_a`` / ``group_b`` = ``names``.
    """
    df = _values(metrics, exclude)
    if timepoint is not None:
        df = df[df[by] == timepoint]
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
                     "n_eff": r["n_a"] + r["n_b"],
                     "median_a": r["median_a"], "median_b": r["median_b"], "effect_name": "rank-biserial r",
                     "effect": r["effect"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "ci_method": "score interval (Hanley-McNeil variance)", "p": r["p"],
                     "small_n": 0 < min(r["n_a"], r["n_b"]) < min_n,
                     "warning": _small_warning(r["n_a"], r["n_b"], min_n, names=names)})
    return _finish(rows)


def _finish(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "q"] + ["q"])
    if len(out):
        out["q"] = bh_fdr(out["p"].to_numpy())
    return out[COLUMNS]


def add_phase(metrics: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``metrics`` with a ``phase`` column: ``pre``, ``post`` or ``""`` per sample.

    The rule of :func:`~napari_carspatial.cohort.manifest.sample_phases` (and
    :meth:`Manifest.pairs <napari_carspatial.cohort.manifest.Manifest.pairs>`): a patient's post
    sample is the one marked ``post``, else its earliest ``day N`` (N > 0). Without a ``day``
    column it is read from the timepoint text (``day 14`` -> 14).

    Parameters
    ----------
    metrics
        Tidy table with ``sample``, ``patient``, ``timepoint`` (and ``day``).

    Returns
    -------
    pandas.DataFrame
    """
    from .manifest import normalize_timepoint, sample_phases

    m = metrics.copy()
    if not len(m) or not {"sample", "patient", "timepoint"} <= set(m.columns):
        tp = m["timepoint"] if "timepoint" in m else pd.Series("", index=m.index)
        m["phase"] = tp.where(tp.isin(["pre", "post"]), "")
        return m
    per = m.drop_duplicates("sample").set_index("sample")[["patient", "timepoint"]].copy()
    norm = [normalize_timepoint(t) for t in per["timepoint"]]
    per["timepoint"] = [n[0] if n else str(t) for n, t in zip(norm, per["timepoint"], strict=True)]
    if "day" in m:
        per["day"] = pd.to_numeric(m.drop_duplicates("sample").set_index("sample")["day"], errors="coerce")
    else:
        per["day"] = [n[1] if n else np.nan for n in norm]
    per["day"] = per["day"].fillna(-1)
    m["phase"] = m["sample"].map(sample_phases(per)).fillna("")
    return m


def post_phase_label(m: pd.DataFrame) -> str:
    """How the post samples are called: ``post``, ``day 14``, or ``post / day 14`` when patients differ.

    Parameters
    ----------
    m
        Metrics with a ``phase`` column (:func:`add_phase`).

    Returns
    -------
    str
    """
    tps = m.loc[m["phase"] == "post"].drop_duplicates("sample")["timepoint"].astype(str)
    order = sorted(set(tps), key=lambda t: (t != "post", int(t.split()[-1]) if t.startswith("day ") else 0, t))
    return " / ".join(order) or "post"


def cohort_statistics(metrics: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, min_n: int = 5,
                      level: float = 0.95, toxicity: bool = True,
                      exclude: Sequence[str] = NOT_COMPARABLE) -> pd.DataFrame:
    """Every standard comparison of a cohort, FDR-corrected within each comparison.

    Comparisons: paired post vs pre; responders vs non-responders at post and at pre; with
    ``toxicity`` and both groups present, CRS grade >= 2 vs < 2 at post. A patient's post sample
    is the one marked ``post``, else its earliest ``day N`` (:func:`add_phase`); the comparison
    names the timepoints it holds (``day 14 vs pre (paired)``). When no patient has both a pre
    and a post sample, a warning says there is no paired test.

    Parameters
    ----------
    metrics
        The cohort's tidy metrics with clinical columns (``metrics.csv`` of a batch).
    n_boot, seed, level
        Bootstrap resamples, seed and CI level.
    min_n
        Groups (or pairs) smaller than this are flagged ``small_n``.
    toxicity
        Add the CRS comparison.
    exclude
        Metrics not tested (default :data:`NOT_COMPARABLE`); metrics starting with
        :data:`COUNT_PREFIX` or :data:`NOT_COMPARABLE_PREFIXES` are never tested.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per comparison x region x metric. Small-n rows are
        flagged and a summary warning is logged.
    """
    parts = []
    m = add_phase(metrics)
    phases = set(m["phase"]) if len(m) else set()
    post = post_phase_label(m) if len(m) else "post"
    kw = {"n_boot": n_boot, "seed": seed, "min_n": min_n, "level": level, "exclude": exclude, "by": "phase"}

    def named(df: pd.DataFrame) -> pd.DataFrame:  # "post" -> the timepoints the post samples have
        if post != "post" and len(df):
            df = df.assign(comparison=df["comparison"].str.replace(r"^post vs", f"{post} vs", regex=True)
                           .str.replace(r"\(post\)$", f"({post})", regex=True),
                           group_a=df["group_a"].replace({"post": post}))
        return df

    paired = m[m["phase"].isin(["pre", "post"])].groupby("patient")["phase"].nunique() if len(m) else pd.Series()
    if (paired == 2).any():
        parts.append(named(paired_tests(m, **kw)))
    elif len(m):
        log.warning("cohort statistics: no patient has both a pre and a post (or day N) sample, so there is no "
                    "paired test (timepoints: %s)", ", ".join(sorted(map(str, set(m["timepoint"].dropna())))))
    if "responder" in m:
        for tp in ("post", "pre"):
            if tp in phases:
                parts.append(named(group_tests(m, timepoint=tp, **kw)))
    if toxicity and "crs_grade" in m:
        g = pd.to_numeric(m["crs_grade"], errors="coerce")
        if (g >= 2).any() and (g < 2).any() and "post" in phases:
            m2 = m.assign(_crs=np.where(g.isna(), np.nan, (g >= 2).astype(float)))
            parts.append(named(group_tests(m2, timepoint="post", column="_crs", a=1.0, b=0.0,
                                           names=("CRS grade >= 2", "CRS grade < 2"), **kw)))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    for comp, g in out.groupby("comparison", sort=False):
        small = g[g["small_n"]]
        if len(small):
            log.warning("cohort statistics, %s: %d of %d tests have small groups (e.g. %s, %s: %s)", comp, len(small),
                        len(g), small["region"].iloc[0], small["metric"].iloc[0], small["warning"].iloc[0])
    return out
