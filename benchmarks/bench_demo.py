"""Demo generation at whole-slide scale, and ``carspatial demo`` to its first frame.

Row ``demo.1M_cells``: ``demo_sample(n_cells=1_000_000, image=False)`` [quick: 100,000] in a
fresh process: wall and CPU time, peak RSS of that process (``VmHWM``). Target < 30 s and
< 2 GB. No reference implementation; agreement: the cell count hits its target within 5 %, the
table's ids are exactly the mask's ids on a sample of tiles, and the labels pyramid levels are
the strided sub-samplings of level 0 there. The load average is recorded (the machine is shared).

Rows ``demo.first_frame_first_run`` / ``demo.first_frame_second_run`` (issue 14: "the demo cached
after the first generation, first frame in seconds on the second run"): the README's
``carspatial demo`` (``cli.main(["demo"])``, the full window: stain, outlines, Legend and the
Review docks) at 1600 x 1000 under Xvfb, in a fresh process, twice with one fresh user cache
(``CARSPATIAL_CACHE_DIR`` in a temporary folder: the first run generates, the second reads the
cache). The clock runs from the child's process start (``/proc/self/stat``) to the end of the
first draw of the canvas after ``napari.run`` (vispy's draw event, after the scene drew); the
breakdown (imports, ``demo_sample``, viewer and layers, docks) comes from timers around the CLI's
own steps. The reference of the second run is the first run (same code, same run); the same two
runs of ``main`` before this work (``--baseline REF``, default :data:`BASELINE_REF`, from
``git archive``) are measured in the same run. Target: second run < 5 s. ``--shots DIR`` saves
the window at the first frame and :data:`LATER_S` later.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import baseline_src, peak_rss_mb, result, run_child, write_child_result  # noqa: E402


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


#: main before the demo cache of round 5 (its second run still generated the mask: ~15 s)
BASELINE_REF = "f8c895d"
#: the second screenshot, seconds after the first frame
LATER_S = 4.0
TARGET_SECOND_S = 5.0
ROOT = Path(__file__).resolve().parent.parent


def _process_start_wall() -> float:
    """Wall-clock time this process started (``/proc/self/stat``), to ~10 ms."""
    with open("/proc/self/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def child_first_frame(shots: str | None) -> dict:
    t_start = _process_start_wall()
    marks: dict = {}

    def mark(k):
        marks.setdefault(k, round(time.time() - t_start, 3))

    mark("python_up")
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_carspatial import cli, datasets

    mark("imports")
    gen = datasets.demo_sample

    def demo_sample(*a, **k):
        t = time.time()
        try:
            return gen(*a, **k)
        finally:
            marks["demo_sample_s"] = round(time.time() - t, 3)

    datasets.demo_sample = demo_sample
    open_viewer = cli._open_viewer

    def _open_viewer(*a, **k):
        mark("samples_ready")
        v = open_viewer(*a, **k)
        v.window.resize(1600, 1000)
        mark("window_built")
        return v

    cli._open_viewer = _open_viewer

    def run():
        app = QApplication.instance()
        v = napari.current_viewer()
        mark("event_loop")
        canvas = v.window._qt_viewer.canvas._scene_canvas   # the first draw: benchmark only
        win = v.window._qt_window

        def later():
            if shots:
                win.grab().save(os.path.join(shots, "later.png"))
            mark("later")
            app.quit()

        def on_draw(event):
            if "first_frame" in marks:
                return
            mark("first_frame")
            if shots:
                QTimer.singleShot(0, lambda: win.grab().save(os.path.join(shots, "first.png")))
            QTimer.singleShot(int(LATER_S * 1000), later)

        canvas.events.draw.connect(on_draw, position="last")
        QTimer.singleShot(120_000, app.quit)
        app.exec()
        canvas.events.draw.disconnect(on_draw)

    napari.run = run
    code = cli.main(["demo"])
    marks["exit_code"] = code
    marks["loadavg_1min"] = os.getloadavg()[0]
    return marks


def _first_frame_runs(src: Path | None, shots: str | None) -> list[dict]:
    """Two ``carspatial demo`` runs with one fresh user cache (generate, then read back)."""
    env = {k: os.environ.get(k) for k in ("CARSPATIAL_CACHE_DIR", "PYTHONPATH", "QT_API")}
    out = []
    with tempfile.TemporaryDirectory(prefix="carspatial-demo-cache-") as cache:
        os.environ["CARSPATIAL_CACHE_DIR"] = cache
        os.environ["PYTHONPATH"] = os.pathsep.join([str(src or ROOT / "src"), *([env["PYTHONPATH"]] if env["PYTHONPATH"] else [])])
        os.environ.setdefault("QT_API", "pyqt6")
        try:
            for k in (1, 2):
                d = None
                if shots and k == 2:
                    d = os.path.join(shots, "second")
                    os.makedirs(d, exist_ok=True)
                out.append(run_child(__file__, "first_frame", ["--shots", d] if d else [], gui=True, timeout=900))
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return out


def _breakdown(r: dict) -> str:
    keys = ("imports", "demo_sample_s", "samples_ready", "window_built", "first_frame")
    return ", ".join(f"{k} {r[k]:.2f} s" for k in keys if isinstance(r.get(k), (int, float)))


def run_first_frame(baseline: str | None = BASELINE_REF, shots: str | None = None) -> list[dict]:
    ours = _first_frame_runs(None, shots)
    base = _first_frame_runs(baseline_src(baseline), None) if baseline else [{"error": "no baseline"}] * 2
    rows = []
    for k, (name, target) in enumerate((("first_run", "report"), ("second_run", f"< {TARGET_SECOND_S:.0f} s"))):
        r, b = ours[k], base[k]
        ok = "error" not in r and r.get("exit_code") == 0 and "first_frame" in r
        ref_s = ours[0].get("first_frame") if k == 1 and "error" not in ours[0] else None
        ref = "first run, same code, same run" if k == 1 else None
        b_s = b.get("first_frame") if "error" not in b else None
        rows.append(result(
            f"demo.first_frame_{name}", ours_s=r.get("first_frame") if ok else None, reference=ref, reference_s=ref_s,
            agreement=(f"carspatial demo at 1600 x 1000 under Xvfb, process start to first drawn frame; ours: "
                       f"{_breakdown(r)}; main {baseline} {name.replace('_', ' ')}: "
                       + (f"{b_s:.2f} s ({_breakdown(b)})" if b_s else str(b.get("error", "n/a"))[:200])
                       + f"; load {r.get('loadavg_1min', float('nan')):.1f}"),
            target=target, met=bool(ok and (k == 0 or r["first_frame"] < TARGET_SECOND_S)),
            baseline_s=b_s, baseline_ref=baseline, details={"ours": r, "baseline": b},
            **({} if ok else {"error": str(r.get("error", "no first frame"))[:400]})))
    return rows


def run(quick: bool = False) -> list[dict]:
    return run_generation(quick) + run_first_frame()


def run_generation(quick: bool = False) -> list[dict]:
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
    p.add_argument("--first-frame", action="store_true", help="only the carspatial demo first-frame rows")
    p.add_argument("--baseline", default=BASELINE_REF, help="git ref measured beside ours ('' for none)")
    p.add_argument("--shots", help="folder for the second run's screenshots (first frame, later)")
    p.add_argument("--child")
    p.add_argument("--out")
    args, rest = p.parse_known_args()
    if args.child == "first_frame":
        write_child_result(args.out, child_first_frame(args.shots))
    elif args.child:
        write_child_result(args.out, child(int(rest[0])))
    elif args.first_frame:
        json.dump(run_first_frame(args.baseline or None, args.shots), sys.stdout, indent=1, default=str)
    else:
        json.dump(run(args.quick), sys.stdout, indent=1, default=str)
