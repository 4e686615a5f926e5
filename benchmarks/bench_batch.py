"""Cohort batch on a local Dask cluster vs a sequential run in the same process.

Rows:

* ``batch_dask_local``: :func:`napari_carspatial.cohort.run_batch` over 20 synthetic slides
  [quick: 4] (demo cohort, 1 µm/px, 1500 x 1500 px [quick: 600 x 600], mask + table + uint16
  OME-TIFF, auto regions, every region metric, thumbnails) on
  ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` (cluster start-up
  included), against the same batch with ``scheduler="sequential"`` in this process. Target:
  the cluster is faster than sequential on 20 slides (ratio > 1.2); quick: runs (no target).
  Agreement: the two tidy metric tables are equal (max |difference|).

Run on its own: ``python benchmarks/bench_batch.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("benchmarks.batch")
DATA = Path(__file__).resolve().parent / "_data" / "cohort"


def _cohort(n_patients: int, size: int) -> dict:
    from napari_carspatial.cohort import write_demo_cohort

    folder = DATA / f"p{n_patients}_s{size}"
    marker = folder / "complete.json"
    if marker.is_file():
        return {"manifest": folder / "manifest.csv", "config": folder / "analysis.yaml"}
    shutil.rmtree(folder, ignore_errors=True)
    paths = write_demo_cohort(folder, n_patients=n_patients, size=size, image=True)
    marker.write_text(json.dumps({"n_patients": n_patients, "size": size}))
    return paths


def run(quick: bool) -> list[dict]:
    from napari_carspatial.cohort import run_batch

    n_pat, size = (2, 600) if quick else (10, 1500)
    paths = _cohort(n_pat, size)
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        t0 = time.perf_counter()
        seq = run_batch(paths["manifest"], paths["config"], tmp / "seq", scheduler="sequential", progress=False)
        t_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = run_batch(paths["manifest"], paths["config"], tmp / "dask", workers=2, progress=False)
        t_par = time.perf_counter() - t0
        key = ["sample", "region", "metric"]
        a = seq.metrics.sort_values(key).reset_index(drop=True)
        b = par.metrics.sort_values(key).reset_index(drop=True)
        same_rows = a[key].equals(b[key])
        va, vb = pd.to_numeric(a["value"]), pd.to_numeric(b["value"])
        both_nan = va.isna() & vb.isna()
        diff = float(np.nanmax(np.abs(va - vb).where(~both_nan, 0.0))) if same_rows else float("nan")
        n = len(seq.done)
        n_cells = int(seq.metrics.query("region == 'whole' and metric == 'n_cells'")["value"].sum())
        ratio = t_seq / t_par if t_par else None
        met = bool(same_rows and diff == 0 and len(par.failed) == 0 and (quick or (ratio or 0) > 1.2))
        return [{
            "name": f"batch_dask_local ({n} slides)", "ours_s": t_par, "reference": "sequential, same process",
            "reference_s": t_seq, "ratio": ratio,
            "agreement": f"tables equal: {same_rows}, max |diff| {diff:.3g}",
            "target": "runs" if quick else "LocalCluster(2 x 1 thread) > 1.2x sequential", "met": met,
            "slides": n, "cells": n_cells, "slide_px": size, "per_slide_seq_s": t_seq / max(n, 1),
            "per_slide_dask_s": t_par / max(n, 1), "failed": len(par.failed) + len(seq.failed),
        }]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    logging.basicConfig(level=logging.WARNING)
    rows = run(quick=ap.parse_args().quick)
    json.dump(rows, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
