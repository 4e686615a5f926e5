"""The Cohort dock in the Cohort workflow at 1600 x 1000 (issue 14): the sample table shows its
rows (it showed ~1.5), and the strip plots are readable: axis values at the ends, the sample's
value, and no text over another."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers

TYPES = ("CAR T", "Tumor", "Macrophage", "Stroma", "CD4 T", "CD8 T", "B cell", "Endothelial", "Other",
         "Tumor (antigen-neg)")


def _results(folder, n_patients: int, seed: int = 0):
    """A batch results folder as ``carspatial batch`` writes it (run.json, metrics.csv; the manifest
    in the demo cohort's columns), with made-up values: the dock only reads these files."""
    from napari_carspatial.cohort.report import KEY_METRICS

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, metrics = [], []
    responses = ["CR", "PR", "SD", "PD"]
    for p in range(1, n_patients + 1):
        resp = responses[p % 4]
        for tp in ("pre", "post"):
            sid = f"P{p:02d}-{tp}"
            rows.append({"sample": sid, "patient": f"P{p:02d}", "trial": "T", "indication": "PDAC", "timepoint": tp,
                         "response": resp, "crs_grade": 1, "icans_grade": 0, "image": "", "mask": f"{sid}_mask.tif",
                         "table": f"{sid}.h5ad", "regions": "", "profile": ""})
            metrics.append({"sample": sid, "region": "whole", "metric": "n_cells", "value": float(rng.integers(900, 1500))})
            for region, metric in KEY_METRICS:
                v = rng.uniform(0, 1) * (2000 if "density" in metric else 1) - (8 if "log2" in metric else 0)
                metrics.append({"sample": sid, "region": region, "metric": metric, "value": v})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    res = folder / "results"
    res.mkdir()
    pd.DataFrame(metrics).to_csv(res / "metrics.csv", index=False)
    (res / "run.json").write_text(json.dumps({"manifest": str(folder / "manifest.csv")}), encoding="utf-8")
    return res


@pytest.fixture(scope="module")
def cohort_viewer():
    from plain_viewer import plain_viewer

    with plain_viewer() as viewer:
        add_sample_layers(viewer, grid_sample(types=TYPES))
        yield viewer


def _cohort(viewer, qtbot):
    from napari_carspatial.widgets import workflows

    docks = workflows.apply_workflow(viewer, "Cohort")
    mw = workflows.main_window(docks[workflows.CLASS_LIST])
    mw.resize(1600, 1000)
    qtbot.waitUntil(lambda: (mw.width(), mw.height()) == (1600, 1000), timeout=20_000)
    return workflows.find_widget(viewer, "Cohort")


def _no_overlap(boxes):
    for i, (_t, a, _r) in enumerate(boxes):
        for _u, b, _s in boxes[i + 1:]:
            if a.intersects(b):
                return False
    return True


@pytest.mark.parametrize("n_patients", [3, 4, 10])
def test_cohort_table_rows_and_readable_strips(cohort_viewer, qtbot, tmp_path, n_patients):
    from napari_carspatial.widgets.cohort import TABLE_ROWS

    w = _cohort(cohort_viewer, qtbot)
    w.load(_results(tmp_path / "cohort", n_patients))
    qtbot.wait(50)
    n = 2 * n_patients
    assert w.table.rowCount() == n
    want = n if n <= 8 else TABLE_ROWS           # a small cohort whole, else at least six rows
    qtbot.wait(100)
    assert w.visible_rows() >= want, (w.visible_rows(), w.splitter.sizes(), w.table_height(n), w.height())
    assert not w.table.horizontalScrollBar().isVisible()                  # every column in view
    assert w.table.horizontalHeader().length() <= w.table.viewport().width() + 1
    # the strips: at least two in view, their texts inside the plot and never over each other
    assert w.strip_scroll.viewport().height() >= 2 * w.strip.row_height()
    w.select_sample(w.sample_at(1))
    width = w.strip.width()
    for k in range(len(w.strip.rows)):
        boxes = w.strip.text_boxes(k)
        roles = [r for _t, _b, r in boxes]
        assert roles.count("min") == roles.count("max") == 1 and "value" in roles and "name" in roles
        assert _no_overlap(boxes), [(t, b.getRect()) for t, b, _r in boxes]
        assert all(b.left() >= 0 and b.right() <= width for _t, b, _r in boxes)
        lo, hi, cur = w.strip.axis_texts(k)
        assert {lo, hi} <= {t for t, _b, _r in boxes} and any(cur in t for t, _b, r in boxes if r == "value")
        name = next(t for t, _b, r in boxes if r == "name")
        assert name == w.strip.rows[k][0]        # the whole name fits beside the value at this width
        # the ring of the current sample (7 px) stays clear of the name line and of the range line
        y = w.strip.axis_y(k)
        assert all(not (b.top() < y + 7 and b.bottom() > y - 7) for _t, b, _r in boxes)
