"""The cohort report cannot mislead: thumbnails share one display range per marker (a pre-infusion
CAR channel stays dark), the small-sample banner quotes the real sizes, 'no contacts' log2 O/E
values are told apart, and the trust boundaries hold (every user string escaped, outputs inside
the results folder, YAML read safely, no pickle)."""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cohort import run_batch, write_demo_cohort
from napari_carspatial.cohort.batch import sample_dir
from napari_carspatial.cohort.report import _no_contacts, _small_banner, write_report
from napari_carspatial.cohort.thumbnails import cohort_limits, display_range

SRC = Path(__file__).resolve().parents[2] / "src" / "napari_carspatial"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    c = write_demo_cohort(out / "cohort", n_patients=2, size=400, image=True)
    res = run_batch(c["manifest"], c["config"], out / "results", scheduler="sequential", progress=False)
    assert not len(res.failed), res.failed
    return res


def test_thumbnails_share_one_display_range_per_marker(small_run):
    out = small_run.out
    lim = json.loads((out / "thumbnail_contrast.json").read_text())["limits"]
    assert "CAR" in lim
    dirs = [sample_dir(out, s) for s in ("P01-pre", "P01-post")]
    assert cohort_limits(dirs + [sample_dir(out, s) for s in ("P02-pre", "P02-post")])["CAR"] == \
        pytest.approx(tuple(lim["CAR"]), rel=1e-3)

    def shown(d, limits):
        with np.load(d / "overview.npz") as z:
            ch = z["channels"][list(z["names"]).index("CAR")]
        lo, hi = limits if limits else display_range(ch)
        return np.clip((ch - lo) / (hi - lo), 0, 1)

    pre, post = dirs
    # per-sample contrast stretches the empty pre channel: it looks brighter than post on average
    assert shown(pre, None).mean() > shown(post, None).mean()
    # one range for the cohort: the pre channel stays dark, the CAR T cells of post are bright
    cohort = tuple(lim["CAR"])
    assert shown(pre, cohort).mean() < shown(post, cohort).mean()
    assert np.percentile(shown(pre, cohort), 99) < 0.3 * np.percentile(shown(post, cohort), 99)
    assert (pre / "thumbnail.png").stat().st_mtime >= (pre / "done.json").stat().st_mtime


def test_banner_quotes_the_real_sizes_and_smallest_p():
    small = pd.DataFrame({"comparison": ["responders vs non-responders (post)"] * 2 + ["post vs pre (paired)"],
                          "n_a": [5, 4, 10], "n_b": [3, 6, 10], "n_eff": [8, 10, 8]})
    text = _small_banner(small)
    assert "5 vs 3 (smallest possible p 0.036)" in text and "4 vs 6 (smallest possible p 0.0095)" in text
    assert "8 of 10 pairs changed (smallest possible p 0.0078)" in text and "3 vs 3" not in text


def test_no_contact_values_are_flagged_from_the_contact_counts():
    m = pd.DataFrame({"sample": ["a", "b", "a", "b"], "region": "whole",
                      "metric": ["log2_oe_car_t_tumor"] * 2 + ["n_contacts_car_t_tumor"] * 2,
                      "value": [-12.1, 0.3, 0.0, 14.0]})
    rows = m[m["metric"] == "log2_oe_car_t_tumor"]
    assert _no_contacts(m, rows, "log2_oe_car_t_tumor").tolist() == [True, False]


def test_report_escapes_every_user_string_and_stays_in_the_results_folder(small_run, tmp_path):
    out = small_run.out
    bad = '<img src=x onerror="alert(1)">'
    m = pd.read_csv(out / "metrics.csv", dtype={"sample": str, "patient": str})
    m.loc[m.index[:3], "region"] = bad
    m.to_csv(out / "metrics.csv", index=False)
    pd.DataFrame([{"sample": bad, "stage": "read", "error": bad}]).to_csv(out / "failures.csv", index=False)
    rep = write_report(out, n_boot=50)
    text = rep.read_text()
    assert bad not in text and html.escape(bad) in text and "<script" not in text
    assert rep.parent == out and (out / "statistics.csv").is_file()
    for p in out.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve())


def test_no_pickle_and_only_safe_yaml_in_the_product():
    for f in SRC.rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n and n.split(".")[0] in ("pickle", "cPickle", "dill") for n in names), f
            if isinstance(node, ast.Attribute) and node.attr in ("load", "load_all", "unsafe_load") and \
                    isinstance(node.value, ast.Name) and node.value.id == "yaml":
                raise AssertionError(f"{f}: yaml.{node.attr} (use yaml.safe_load)")
        assert not re.search(r"allow_pickle\s*=\s*True", f.read_text(encoding="utf-8")), f
