"""Cohort statistics that cannot mislead: BH-FDR from scipy (equal to the former implementation),
rank-biserial intervals that stay informative at complete separation (never [1, 1]), the paired
effective n (zero differences dropped) next to the pairs, and small-n warnings with the real sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort.stats import (
    bh_fdr,
    group_test,
    min_p_mann_whitney,
    min_p_wilcoxon,
    paired_tests,
    rank_biserial,
    rank_biserial_ci,
)


def _bh_reference(p):
    """The project's former Benjamini-Hochberg step-up (kept here as the reference)."""
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


def test_bh_fdr_is_scipys_and_equals_the_former_implementation():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 50, 400):
        p = rng.random(n) ** 3
        p[rng.random(n) < 0.1] = np.nan
        p[: max(1, n // 10)] = p[0]  # ties
        np.testing.assert_allclose(bh_fdr(p), _bh_reference(p), rtol=0, atol=1e-15, equal_nan=True)
    assert np.isnan(bh_fdr([np.nan, np.nan])).all()


def test_separated_groups_get_an_informative_interval_not_1_1():
    r = group_test([10, 11, 12, 13, 14], [1, 2, 3])
    assert r["effect"] == 1.0 and r["ci_high"] == 1.0
    assert 0 < r["ci_low"] < 0.5, r   # e.g. [0.14, 1]: well away from [1, 1]
    r = group_test([1, 2, 3], [10, 11, 12])
    assert r["effect"] == -1.0 and r["ci_low"] == -1.0 and -0.9 < r["ci_high"] < 0


def test_rank_biserial_interval_covers_the_truth():
    """Two normal groups of 8, shift 1 SD: r = 2 Phi(1/sqrt(2)) - 1 = 0.52; 95 % coverage ~0.95."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    truth = 2 * norm.cdf(1 / np.sqrt(2)) - 1
    hits = 0
    n_sim = 400
    for _ in range(n_sim):
        a, b = rng.normal(1, 1, 8), rng.normal(0, 1, 8)
        lo, hi = rank_biserial_ci(rank_biserial(a, b), 8, 8)
        hits += lo <= truth <= hi
    assert 0.91 <= hits / n_sim <= 0.99, hits / n_sim


def test_paired_effective_n_drops_zero_differences_and_is_shown_with_the_pairs():
    pre = np.arange(10.0)
    post = pre.copy()
    post[:8] += np.arange(1, 9)          # 8 changed, 2 unchanged
    df = pd.DataFrame({"patient": [f"P{i}" for i in range(10)] * 2, "timepoint": ["pre"] * 10 + ["post"] * 10,
                       "region": "whole", "metric": "car_t_density_per_mm2", "value": np.r_[pre, post]})
    r = paired_tests(df, n_boot=200).iloc[0]
    assert (r["n_a"], r["n_b"], r["n_eff"]) == (10, 10, 8)
    from scipy.stats import wilcoxon

    assert r["p"] == pytest.approx(wilcoxon(post - pre).pvalue)   # scipy drops the zeros too
    df.loc[df["patient"].isin([f"P{i}" for i in range(2, 8)]) & (df["timepoint"] == "post"), "value"] = \
        df.loc[df["patient"].isin([f"P{i}" for i in range(2, 8)]) & (df["timepoint"] == "pre"), "value"].to_numpy()
    r = paired_tests(df, n_boot=200).iloc[0]
    assert r["n_eff"] == 2 and r["small_n"]
    assert "only 2 non-zero pair differences (10 pairs, 8 with no change dropped)" in r["warning"]


def test_smallest_possible_p_values():
    from scipy.stats import mannwhitneyu, wilcoxon

    assert min_p_mann_whitney(3, 3) == pytest.approx(mannwhitneyu([4, 5, 6], [1, 2, 3]).pvalue) == pytest.approx(0.1)
    assert min_p_mann_whitney(5, 3) == pytest.approx(mannwhitneyu([4, 5, 6, 7, 8], [1, 2, 3]).pvalue)
    assert min_p_wilcoxon(8) == pytest.approx(wilcoxon(np.arange(1.0, 9.0)).pvalue)
