"""Cohort batch: scaling from 1 to 2 single-threaded Dask workers, and the sequential path.

Rows (20 synthetic slides [quick: 4]: demo cohort, 1 µm/px, 1500 x 1500 px [quick: 600 x 600],
mask + table + uint16 OME-TIFF, auto regions, every region metric, thumbnails):

* ``batch_scaling``: :func:`napari_carspatial.cohort.run_batch` on an already started
  ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` against the same batch on
  ``LocalCluster(n_workers=1, ...)`` (start-up excluded from both, reported separately). Every
  worker process is single-threaded for real: ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1, so numba's parallel kernels cannot use the
  second core behind the scheduler's back; each worker analyses one slide first (imports, numba
  caches; not timed). Target >= 1.7x. The workers' CPU time over each run is recorded: CPU
  seconds / wall seconds is the number of cores the run actually got (a shared machine under
  load does not give 2 workers 2 cores). Agreement: the tidy metric tables of
  the two runs are equal.
* ``batch_sequential``: the same batch with ``scheduler="sequential"`` in this process vs the
  2-worker cluster, with the CPU time of this process over the run: ``cpu/wall`` near 2 means
  the sequential path already keeps both cores busy (numba threads), which bounds what a
  cluster can add on this machine. Info only.

Run on its own: ``python benchmarks/bench_batch.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
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


SINGLE_THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1"}


def _cluster(n_workers: int):
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.WARNING, env=dict(SINGLE_THREAD_ENV))
    client = Client(cluster)
    client.wait_for_workers(n_workers)
    threads = client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    return client, cluster, time.perf_counter() - t0, sorted(set(threads.values()))


def _warm(client, paths, tmp: Path) -> None:
    """Every worker analyses the first slide once (imports, numba caches): not timed."""
    from napari_carspatial.cohort.batch import load_config, process_sample
    from napari_carspatial.cohort.manifest import read_manifest

    man = read_manifest(paths["manifest"])
    row = man.row_dict(list(man.samples)[0])
    cfg = load_config(paths["config"])
    out = os.fspath((tmp / f"warm-{uuid.uuid4().hex[:6]}").resolve())
    res = client.run(lambda dask_worker=None: process_sample(row, cfg, out + "-" + str(os.getpid()))["status"])
    assert set(res.values()) == {"done"}, res


def _compare(a_res, b_res) -> tuple[bool, float]:
    key = ["sample", "region", "metric"]
    a = a_res.metrics.sort_values(key).reset_index(drop=True)
    b = b_res.metrics.sort_values(key).reset_index(drop=True)
    same_rows = a[key].equals(b[key])
    if not same_rows:
        return False, float("nan")
    va, vb = pd.to_numeric(a["value"]), pd.to_numeric(b["value"])
    both_nan = va.isna() & vb.isna()
    return True, float(np.nanmax(np.abs(va - vb).where(~both_nan, 0.0)))


def run(quick: bool) -> list[dict]:
    from napari_carspatial.cohort import run_batch

    n_pat, size = (2, 600) if quick else (10, 1500)
    paths = _cohort(n_pat, size)
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    rows = []
    try:
        # warm-up (numba caches, imports) so that neither timed run pays for it
        run_batch(paths["manifest"], paths["config"], tmp / "warm", scheduler="sequential", progress=False)
        shutil.rmtree(tmp / "warm", ignore_errors=True)
        timings, results, startup, cores = {}, {}, {}, {}
        for n_workers in (1, 2):
            client, cluster, t_start, nthreads = _cluster(n_workers)
            try:
                _warm(client, paths, tmp)
                cpu0 = client.run(time.process_time)
                load_a = os.getloadavg()[0]
                t0 = time.perf_counter()
                results[n_workers] = run_batch(paths["manifest"], paths["config"], tmp / f"w{n_workers}",
                                               client=client, progress=False)
                timings[n_workers] = time.perf_counter() - t0
                cpu1 = client.run(time.process_time)
                worker_cpu = sum(cpu1[w] - cpu0[w] for w in cpu1)
                startup[n_workers] = (t_start, nthreads)
                cores[n_workers] = {"worker_cpu_s": worker_cpu, "cores_busy": worker_cpu / timings[n_workers],
                                    "loadavg_1min": [load_a, os.getloadavg()[0]]}
            finally:
                client.close()
                cluster.close()
        l1, l2 = os.getloadavg()[0], None
        c0, t0 = time.process_time(), time.perf_counter()
        seq = run_batch(paths["manifest"], paths["config"], tmp / "seq", scheduler="sequential", progress=False)
        t_seq = time.perf_counter() - t0
        cpu_seq = time.process_time() - c0
        l2 = os.getloadavg()[0]
        same, diff = _compare(results[1], results[2])
        same_s, diff_s = _compare(seq, results[2])
        n = len(results[2].done)
        n_cells = int(seq.metrics.query("region == 'whole' and metric == 'n_cells'")["value"].sum())
        ratio = timings[1] / timings[2]
        failed = sum(len(r.failed) for r in (results[1], results[2], seq))
        rows.append({
            "name": f"batch_scaling ({n} slides, 2 vs 1 worker)", "ours_s": timings[2],
            "reference": "LocalCluster 1 worker x 1 thread (processes, started before)", "reference_s": timings[1],
            "ratio": ratio,
            "agreement": f"tables equal: {same and diff == 0} (max |diff| {diff:.3g}); workers' NUMBA_NUM_THREADS "
                         f"{startup[2][1]}; cores kept busy: 1 worker {cores[1]['cores_busy']:.2f}, "
                         f"2 workers {cores[2]['cores_busy']:.2f} (load {cores[2]['loadavg_1min'][0]:.1f})",
            "target": "runs" if quick else ">= 1.7x (2 vs 1 single-threaded workers)",
            "met": bool(same and diff == 0 and failed == 0 and (quick or ratio >= 1.7)),
            "slides": n, "cells": n_cells, "slide_px": size, "per_slide_1w_s": timings[1] / max(n, 1),
            "per_slide_2w_s": timings[2] / max(n, 1), "cluster_startup_s": {k: v[0] for k, v in startup.items()},
            "workers_cpu": cores,
            "failed": failed,
        })
        rows.append({
            "name": f"batch_sequential ({n} slides, in-process vs 2 workers)", "ours_s": timings[2],
            "reference": "sequential, same process (numba threads free)", "reference_s": t_seq,
            "ratio": t_seq / timings[2],
            "agreement": f"tables equal: {same_s and diff_s == 0}; sequential cpu/wall {cpu_seq / t_seq:.2f} "
                         f"(2.0 = both cores busy)",
            "target": "(info)", "met": bool(same_s and diff_s == 0),
            "sequential_cpu_s": cpu_seq, "sequential_cpu_per_wall": cpu_seq / t_seq,
            "loadavg_1min": [l1, l2],
        })
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    logging.basicConfig(level=logging.WARNING)
    rows = run(quick=ap.parse_args().quick)
    json.dump(rows, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
