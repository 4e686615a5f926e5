"""The measurement table at 1,000,000 cells: the headless column view behind the Measurements
dock's ``QAbstractTableModel`` (``model/measurements.py``), against pandas on the same table.

Input (generated in memory, a few seconds): 1,000,000 cells (``quick``: 100,000), 20 markers in a
dense float32 ``X``, a categorical cell type (10 types) and its curated copy, an ROI column
(5 ROIs, 60 % of cells in none), ``area`` and centroids.

Rows (each the median of 3 runs):

* **open** — ``CellMeasurements(sample)`` (what the dock builds when a sample is chosen) vs
  building the pandas ``DataFrame`` the naive table would hold (``to_frame()`` of every row);
* **sort by a marker** / **sort by the curated type** — ``order(j, rows)`` vs
  ``DataFrame.sort_values(kind="stable")`` on the materialised frame; agreement: the same values
  in the same order;
* **filter class + ROI** — ``mask(curated=..., roi=...)`` vs the pandas boolean expression;
  agreement: equal masks;
* **a screenful** — ``text(row, col)`` for 40 rows x every column (what Qt asks per repaint).

Targets: every interaction (sort, filter, a screenful) < 200 ms at 1,000,000 cells; open < 1 s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import result  # noqa: E402

N_FULL, N_QUICK = 1_000_000, 100_000
INTERACTION_S = 0.2
OPEN_S = 1.0


def _sample(n: int):
    import anndata as ad
    import pandas as pd

    from napari_carspatial.model import Sample

    rng = np.random.default_rng(0)
    types = np.array([f"type {k}" for k in range(10)])
    t = rng.integers(0, 10, n)
    cur = t.copy()
    cur[rng.random(n) < 0.05] = 0
    roi_codes = np.where(rng.random(n) < 0.6, -1, rng.integers(0, 5, n))
    obs = pd.DataFrame({
        "cell_id": np.arange(1, n + 1, dtype=np.int64) * 3,
        "cell_type": pd.Categorical.from_codes(t, categories=types),
        "cell_type_curated": pd.Categorical.from_codes(cur, categories=types),
        "roi": pd.Categorical.from_codes(roi_codes, categories=[f"roi {k}" for k in range(5)]),
        "area": rng.uniform(20, 200, n),
    })
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=rng.random((n, 20), dtype=np.float32), obs=obs)
    adata.var_names = [f"M{k}" for k in range(20)]
    adata.obsm["spatial"] = rng.uniform(0, 40000, (n, 2))
    return Sample("bench", pixel_size_um=0.5, table=adata)


def _median(fn, k: int = 3):
    times, out = [], None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(quick: bool = False) -> list[dict]:
    from napari_carspatial.model.measurements import CellMeasurements

    n = N_QUICK if quick else N_FULL
    sample = _sample(n)
    rows = []
    t_open, m = _median(lambda: CellMeasurements(sample))
    t_frame, frame = _median(lambda: m.to_frame(), k=1)
    rows.append(result(f"measurements: open ({n:,} cells)", ours_s=t_open, reference="pandas DataFrame of every row",
                       reference_s=t_frame, agreement=f"{len(m.columns)} columns, {frame.shape[0]:,} rows",
                       target=f"< {OPEN_S:g} s", met=t_open < OPEN_S))
    everything = np.arange(n)
    for key, col in (("marker:M7", "M7 mean"), ("curated", "curated type")):
        j = m.index_of(key)
        t_ours, order = _median(lambda j=j: m.order(j, everything))
        ref = frame[col].astype(str) if key == "curated" else frame[col]
        t_ref, ref_idx = _median(lambda ref=ref: ref.sort_values(kind="stable").index.to_numpy(), k=1)
        same = np.array_equal(np.asarray(ref.to_numpy())[order], np.asarray(ref.to_numpy())[ref_idx])
        rows.append(result(f"measurements: sort by {col} ({n:,} cells)", ours_s=t_ours,
                           reference="pandas sort_values (stable)", reference_s=t_ref,
                           agreement="same order of values" if same else "DIFFERENT order",
                           target=f"< {INTERACTION_S * 1000:.0f} ms", met=same and t_ours < INTERACTION_S))
    t_ours, mask = _median(lambda: m.mask(curated="type 3", roi="roi 2"))
    t_ref, ref_mask = _median(lambda: ((frame["curated type"] == "type 3") & (frame["ROI"] == "roi 2")).to_numpy(), k=1)
    same = np.array_equal(mask, ref_mask)
    rows.append(result(f"measurements: filter class + ROI ({n:,} cells)", ours_s=t_ours,
                       reference="pandas boolean mask", reference_s=t_ref,
                       agreement=f"equal masks ({int(mask.sum()):,} cells)" if same else "DIFFERENT masks",
                       target=f"< {INTERACTION_S * 1000:.0f} ms", met=same and t_ours < INTERACTION_S))
    view = m.order(m.index_of("marker:M7"), np.flatnonzero(mask))[:40]
    t_ours, _ = _median(lambda: [m.text(int(r), c) for r in view for c in range(len(m.columns))])
    rows.append(result(f"measurements: a screenful, 40 rows x {len(m.columns)} columns", ours_s=t_ours,
                       reference=None, reference_s=None, agreement="texts of the rows on screen",
                       target=f"< {INTERACTION_S * 1000:.0f} ms", met=t_ours < INTERACTION_S))
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1, default=str))
