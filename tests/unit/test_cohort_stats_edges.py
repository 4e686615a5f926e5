"""Cohort statistics at the edges (QA1 low items): what the warning says matches the p-value, an
empty group is named, and the report counts the tests it could not run instead of dropping them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from napari_carspatial.cohort.stats import group_tests, paired_tests


def _paired(pre, post, metric="x_density_per_mm2"):
    n = len(pre)
    return pd.DataFrame({"patient": [f"P{i}" for i in range(n)] * 2, "timepoint": ["pre"] * n + ["post"] * n,
                         "region": "whole", "metric": metric, "value": np.r_[pre, post]})


def test_one_changed_pair_has_its_exact_p_and_the_warning_agrees():
    """One non-zero pair: p was NaN while the warning said 'smallest possible p 1'."""
    r = paired_tests(_paired([1.0], [3.0]), n_boot=20).iloc[0]
    assert r["p"] == 1.0 == pytest.approx(wilcoxon([2.0]).pvalue)
    assert r["n_eff"] == 1 and "smallest possible p 1" in r["warning"]
    r = paired_tests(_paired([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]), n_boot=20).iloc[0]
    assert r["p"] == pytest.approx(wilcoxon([0.0, 0.0, 2.0]).pvalue) and r["n_eff"] == 1


def test_no_changed_pair_says_so():
    """Every difference 0: p = 1 with 'smallest possible p nan' in the warning."""
    r = paired_tests(_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), n_boot=20).iloc[0]
    assert r["p"] == 1.0 and r["n_eff"] == 0
    assert r["warning"].startswith("no pair changed (all 3 pair differences are 0): p = 1")
    assert "nan" not in r["warning"]


def test_an_empty_group_is_named():
    df = pd.DataFrame({"sample": list("abcd"), "timepoint": "post", "region": "whole", "metric": "frac_car_t_x",
                       "responder": [True, True, False, False], "value": [0.1, 0.2, np.nan, np.nan]})
    r = group_tests(df, n_boot=10).iloc[0]
    assert np.isnan(r["p"]) and (r["n_a"], r["n_b"]) == (2, 0)
    assert r["warning"].startswith("not testable: no values for non-responders")
    assert "CAR T" not in r["warning"]


def test_the_report_counts_the_tests_it_could_not_run(tmp_path):
    from test_batch_integrity import make_table, tiny

    from napari_carspatial.cohort import run_batch, write_manifest
    from napari_carspatial.cohort.report import write_report

    rows = []
    for i in range(3):
        for tp in ("pre", "post"):
            make_table(tmp_path / f"{i}{tp}.h5ad", n_side=8, seed=i * 2 + (tp == "post"))
            rows.append({"sample": f"P{i}-{tp}", "patient": f"P{i}", "timepoint": tp, "response": "CR",
                         "table": str(tmp_path / f"{i}{tp}.h5ad")})

    def metrics(adata, **kw):   # frac_car_t is NaN everywhere: not testable
        df = tiny(adata, **kw)
        df.loc[df["metric"] == "frac_car_t", "value"] = np.nan
        return df

    res = run_batch(write_manifest(rows, tmp_path / "m.csv"), {"metrics": metrics, "regions": "whole"},
                    tmp_path / "r", scheduler="sequential", progress=False)
    html = write_report(res.out, n_boot=20).read_text(encoding="utf-8")
    assert "0 of 1 tests with q &lt; 0.05; 1 metric(s) not testable" in html
    assert "not testable: no patient has a value at both timepoints" in html
