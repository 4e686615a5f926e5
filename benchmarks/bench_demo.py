"""Demo generation at whole-slide scale.

Row ``demo.1M_cells``: ``demo_sample(n_cells=1_000_000, image=False)`` [quick: 100,000] in a
fresh process: wall and CPU time, peak RSS of that process (``VmHWM``). Target < 30 s and
< 2 GB. No reference implementation; agreement: the cell count hits its target within 5 %, the
table's ids are exactly the mask's ids on a sample of tiles, and the labels pyramid levels are
the strided sub-samplings of level 0 there. The load average is recorded (the machine is shared).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, result, run_child, write_child_result  # noqa: E402


def child(n_cells: int) -> dict:
    from napari_carspatial.datasets import demo_sample

    base = peak_rss_mb()
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    s = demo_sample(n_cells=n_cells, image=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_mb()
    lab0 = s.labels[0]
    H, W = lab0.shape
    ids_table = set(s.table.obs["cell_id"].to_numpy().tolist())
    rng = np.random.default_rng(0)
    ok_ids, ok_levels = True, True
    for _ in range(4):  # a few 1024 px windows: every mask id is in the table
        y, x = int(rng.integers(0, max(1, H - 1024))), int(rng.integers(0, max(1, W - 1024)))
        win = np.asarray(lab0[y:y + 1024, x:x + 1024])
        u = np.unique(win)
        ok_ids &= set(u[u > 0].tolist()) <= ids_table
        y2, x2 = (y // 4) * 4, (x // 4) * 4
        ok_levels &= bool(np.array_equal(np.asarray(s.labels[2][y2 // 4: y2 // 4 + 128, x2 // 4: x2 // 4 + 128]),
                                         np.asarray(lab0[y2: y2 + 512: 4, x2: x2 + 512: 4])))
    return {"seconds": wall, "cpu_s": cpu, "peak_mb": peak, "baseline_mb": base, "n_cells": int(s.table.n_obs),
            "size": [int(H), int(W)], "levels": len(s.labels), "ids_in_table": bool(ok_ids),
            "levels_strided": bool(ok_levels), "loadavg_1min": [load0, os.getloadavg()[0]]}


def run(quick: bool = False) -> list[dict]:
    n = 100_000 if quick else 1_000_000
    r = run_child(__file__, "demo", [str(n)], timeout=1200)
    name = f"demo.{'100k' if quick else '1M'}_cells (image=False)"
    if "error" in r:
        return [result(name, ours_s=None, reference=None, reference_s=None, agreement="n/a",
                       target="< 30 s, peak RSS < 2 GB", met=False, error=r["error"])]
    hit = abs(r["n_cells"] - n) <= 0.05 * n
    agree = (f"{r['n_cells']:,} cells (target {n:,}, within 5 %: {hit}); mask ids in the table: {r['ids_in_table']}; "
             f"pyramid levels strided: {r['levels_strided']}; cpu {r['cpu_s']:.1f} s; load {r['loadavg_1min'][0]:.1f}")
    met = bool(hit and r["ids_in_table"] and r["levels_strided"] and r["peak_mb"] < 2048 and (quick or r["seconds"] < 30))
    return [result(name, ours_s=r["seconds"], reference=None, reference_s=None, agreement=agree,
                   target="< 30 s, peak RSS < 2 GB" if not quick else "(quick) peak RSS < 2 GB", met=met,
                   peak_mb=r["peak_mb"], data=f"{r['size'][0]} x {r['size'][1]} px, {r['levels']} label levels",
                   details=r)]


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child")
    p.add_argument("--out")
    args, rest = p.parse_known_args()
    if args.child:
        write_child_result(args.out, child(int(rest[0])))
    else:
        json.dump(run(args.quick), sys.stdout, indent=1, default=str)
