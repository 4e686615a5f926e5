"""A small test trial and two simulated reviewers (helpers for the review tests; not collected).

Each simulated reader follows a fixed plan through the headless API: re-type a random set of
cells, exclude another set, try something and undo it, draw one region; the calls the plan should
produce are computed here from the source types alone (not through the review code), so the
tests can compare the measured agreement with counts made independently of it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from napari_carspatial.model import ROI

EXCLUDED = "(excluded)"

PLANS = {
    "alice": {"seed": 1, "assign": "Macrophage", "n_assign": 0.06, "reason": "fold", "n_exclude": 0.03,
              "roi": (0, 0, 100, 120)},
    "bob": {"seed": 2, "assign": "Tumor", "n_assign": 0.05, "reason": "necrosis", "n_exclude": 0.02,
            "roi": (0, 20, 100, 140)},
}
# the two regions (y0, x0, y1, x1): 100 x 120 and 100 x 120 px, overlap 100 x 100
ROI_DICE = 2 * 100 * 100 / (100 * 120 + 100 * 120)
ROI_IOU = 100 * 100 / (100 * 140)


def make_cohort(folder, *, n_patients: int = 2, size: int = 300):
    """Four small demo samples (2 patients x pre/post; masks + tables) and their manifest."""
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(folder, n_patients=n_patients, size=size, image=False)["manifest"]


def plan_rows(n: int, reviewer: str, sample_index: int):
    p = PLANS[reviewer]
    rng = np.random.default_rng([sample_index, p["seed"]])
    a = rng.choice(n, max(1, int(n * p["n_assign"])), replace=False)
    e = rng.choice(n, max(1, int(n * p["n_exclude"])), replace=False)
    undo = rng.choice(n, 5, replace=False)
    return a, e, undo


def expected_calls(types, reviewer: str, sample_index: int) -> np.ndarray:
    """The calls a reader's plan gives (exclusion wins over a type)."""
    calls = np.asarray(types, dtype=object).copy()
    a, e, _ = plan_rows(len(calls), reviewer, sample_index)
    calls[a] = PLANS[reviewer]["assign"]
    calls[e] = EXCLUDED
    return calls


def expected_confusion(types, sample_index: int) -> Counter:
    """(call of alice, call of bob) -> number of cells, by plain counting."""
    a = expected_calls(types, "alice", sample_index)
    b = expected_calls(types, "bob", sample_index)
    return Counter(zip(a.tolist(), b.tolist(), strict=True))


def simulate_read(session, sample_index: int, *, finish: bool = True):
    """Run a reader's plan in an open :class:`ReadSession`."""
    p = PLANS[session.reviewer]
    cur = session.curation
    a, e, undo = plan_rows(session.table.n_obs, session.reviewer, sample_index)
    cur.assign(a, p["assign"], note="simulated")
    cur.assign(undo, "B cell", note="mistake")
    cur.undo()
    cur.exclude(e, p["reason"])
    y0, x0, y1, x1 = p["roi"]
    cur.add_roi(ROI("core", np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float), cls="Tumor core"))
    if finish:
        session.finish()
    else:
        session.save()
