"""GUI latency at 1,000,000 cells: what a reviewer waits for, in the real docks, under Xvfb.

Input (generated once, cached in ``benchmarks/_data/``): the synthetic demo at
``n_cells=1_000_000`` without its image (``demo_sample(n_cells=1_000_000, image=False)``:
1,001,421 cells, 21836 x 21836 px, uint32 non-consecutive ids, 14 markers, ground-truth ROIs),
exported with :func:`napari_carspatial.io.export_spatialdata` as a SpatialData zarr store
(multiscale labels + table), the store napari-spatialdata opens too. ``quick``: 100,000 cells.

One ``napari.Viewer(show=True)`` at 1600 x 1000 with the plugin's Curation, Legend, Cell
inspector and Segmentation docks open (added through the npe2 manifest, as a user would). Every
clock stops after ``viewer.screenshot(canvas_only=True)``, i.e. after a frame with the result
was rendered (the same in every row; ``frame_s`` is that floor: a frame with nothing changed).

Rows (target: < 0.2 s per interaction, first frame < 5 s):

* ``open_first_frame``: ``viewer.open(store, plugin="napari-carspatial")`` until the first
  frame shows the cells (mask + table; the docks react to the new sample, the cells are
  coloured by the curated type). Measured twice: the first open of the file in this user cache
  and the second (file checks cached by file identity);
* ``select_lasso_10k``: a lasso of ~10,000 cells drawn on the Curation dock's drawing layer,
  until the selection outlines are drawn;
* ``assign``: "Assign" of those cells to another type (the colouring follows);
* ``undo``; ``clear_selection``;
* ``legend_in_view_after_pan``: the camera pans, the Legend recomputes its in-view counts;
* ``inspector_pin``: the Cell inspector pins a cell (details, marker bars, the ring);
* ``outline_toggle``: the Legend's filled -> outline switch (and back, the median of both);
* ``save_h5ad`` / ``save_zarr``: the Curation dock's "Save as": ``gui_blocked_s`` is how long
  the GUI thread is busy (the row's time), ``total_s`` until the file is written;
* ``segmentation_open_region`` / ``segmentation_split`` / ``segmentation_close_region``: the
  Segmentation dock: load an edit region of the view (the first region of a sample makes the
  working copy of the mask in a worker: ``gui_blocked_s`` is the GUI thread's share, the row's
  time runs until the region is shown), split one cell by a line (operation + commit in its
  worker + redraw), close the region.

Every run (``benchmarks/run.py --only gui_latency``, quick or full) also runs the same child on
``git archive 87a3652 src`` (``main`` before issue 14's latency work; ``--baseline REF`` picks
another ref) so before / after come from the same run on the same machine: ``reference_s`` is
the baseline, ``ratio`` = before / after.

The other reference is napari's own per-cell colouring where we have no like-for-like
operation in another tool: a ``DirectLabelColormap`` with one entry per cell id set on a Labels
layer of the same pyramid (what an edit would cost if it rebuilt napari's colour dictionary):
row ``assign_vs_napari_direct_colormap`` (ours: the whole "Assign"; ratio > 1: an edit costs
less than napari rebuilding its per-cell colours once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, peak_rss_mb, result, run_child, write_child_result  # noqa: E402

log = logging.getLogger("benchmarks.gui_latency")

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.2
TARGET_OPEN_S = 5.0
#: main before the latency work of issue 14 (the "before" of the full run)
BASELINE_REF = "87a3652"


# --------------------------------------------------------------------------- data
def store_path(n_cells: int) -> Path:
    return DATA_DIR / f"gui_latency_{n_cells // 1000}k.sdata.zarr"


def make_store(n_cells: int) -> Path:
    """The demo at ``n_cells`` as a SpatialData store (cached; a sidecar records what it holds)."""
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.io import export_spatialdata

    out = store_path(n_cells)
    side = out.with_suffix(".json")
    want = {"n_cells": n_cells, "seed": 0, "version": 1}
    if out.is_dir() and side.is_file():
        try:
            if json.loads(side.read_text()).get("params") == want:
                return out
        except (OSError, json.JSONDecodeError):
            pass
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    s = demo_sample(n_cells=n_cells, image=False, seed=0)
    export_spatialdata(s, out, overwrite=True)
    side.write_text(json.dumps({"params": want, "n_obs": int(s.table.n_obs), "shape": list(s.labels[0].shape),
                                "seconds": time.perf_counter() - t}))
    return out


# --------------------------------------------------------------------------- GUI child
class _Clock:
    def __init__(self, viewer, app):
        self.viewer, self.app = viewer, app
        self.rows: dict[str, dict] = {}

    def frame(self):
        self.app.processEvents()
        return self.viewer.screenshot(canvas_only=True, flash=False)

    def wait(self, cond, timeout=600.0):
        t0 = time.perf_counter()
        while not cond():
            self.app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("condition not met")

    @contextlib.contextmanager
    def time(self, name: str, **extra):
        prof_dir = os.environ.get("CARSPATIAL_BENCH_PROFILE")
        prof = None
        if prof_dir:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        box: dict = {}
        yield box
        self.frame()
        dt = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
            n = len(self.rows.get(name, {}).get("runs", []))
            prof.dump_stats(os.path.join(prof_dir, f"{name}.{n}.prof"))
        row = self.rows.setdefault(name, {"runs": []})
        row["runs"].append(dt)
        row.update(extra)
        row.update(box)
        log.info("%s: %.3f s", name, dt)


def _dock(viewer, name):
    _dw, w = viewer.window.add_plugin_dock_widget("napari-carspatial", name)
    return w


def _child(store: str, out: str, *, label: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    cache = tempfile.mkdtemp(prefix="carspatial-bench-cache-")
    os.environ["CARSPATIAL_CACHE_DIR"] = cache
    os.environ.setdefault("CARSPATIAL_REVIEWER", "bench")
    import napari_carspatial
    from napari_carspatial._napari import session_for

    info = {"label": label, "package": os.path.dirname(napari_carspatial.__file__)}
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    app = QApplication.instance()
    clock = _Clock(viewer, app)
    cur = _dock(viewer, "Curation")
    legend = _dock(viewer, "Legend")
    insp = _dock(viewer, "Cell inspector")
    seg = _dock(viewer, "Segmentation")
    with contextlib.suppress(Exception):
        cur.set_reviewer("bench")
    for _ in range(10):
        app.processEvents()
    t = time.perf_counter()
    clock.frame()
    info["frame_s"] = time.perf_counter() - t
    sess = session_for(viewer)

    def opened():
        return bool(sess.samples(where=lambda s: s.table is not None))

    # ---- open twice: first open of this file, then again (caches keyed by file identity)
    for k in range(2):
        name = "open_first_frame" if k == 0 else "open_first_frame_again"
        with clock.time(name):
            viewer.open(store, plugin="napari-carspatial")
            clock.wait(opened)
            clock.wait(lambda: cur.view is not None)
        if k == 0:
            sid = next(iter(sess.samples()))
            sample = sess.sample(sid)
            info["n_cells"] = int(sample.table.n_obs)
            info["shape"] = list(sample.labels[0].shape)
            viewer.layers.clear()
            clock.wait(lambda: not sess.samples())
    sid = next(iter(sess.samples()))
    sample = sess.sample(sid)
    view = cur.view
    col = sess.coloring(sid)
    info["coloring_key"] = col.key
    info["rss_after_open_mb"] = _rss()

    # ---- select ~10k cells by a lasso near the centre
    xy = np.asarray(sample.table.obsm["spatial"], float)
    H, W = sample.labels[0].shape
    side = float(np.sqrt(10_000 / sample.table.n_obs * H * W))
    cy, cx = H * 0.45, W * 0.55
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = side / np.sqrt(np.pi)
    poly = np.stack([cy + r * np.sin(t), cx + r * np.cos(t)], 1)
    # zoom so the region fills the view, like a reviewer who is looking at those cells
    lab = sess.labels_layer(sid)
    center_world = lab.data_to_world((cy, cx))[-2:]
    viewer.camera.center = tuple(center_world)
    viewer.camera.zoom = min(viewer.canvas.size) / (3.0 * r * float(lab.scale[-1]))
    clock.frame()
    layer = cur.cells.start_drawing("add_polygon_lasso")
    with clock.time("select_lasso_10k") as box:
        layer.add([poly], shape_type="polygon")
        clock.wait(lambda: view.n_selected > 0)
        box["n_selected"] = int(view.n_selected)
    curated = view.core.curated_key
    before = sample.table.obs[curated].astype(str).to_numpy()
    new_type = "B cell" if "B cell" in set(before) else str(before[0])
    with clock.time("assign") as box:
        cur.assign(new_type)
    box_ok = bool((sample.table.obs[curated].astype(str).to_numpy()[view.selected] == new_type).all())
    clock.rows["assign"]["assigned_ok"] = box_ok
    with clock.time("undo"):
        cur.undo()
    clock.rows["undo"]["restored_ok"] = bool((sample.table.obs[curated].astype(str).to_numpy() == before).all())
    with clock.time("clear_selection"):
        cur.cells.clear_selection()
    # ---- pan, legend in-view counts
    for k in range(3):
        with clock.time("legend_in_view_after_pan") as box:
            c = viewer.camera.center
            viewer.camera.center = (c[-2] + 30.0 * (k + 1), c[-1] + 40.0 * (k + 1))
            legend.update_counts()
            box["summary"] = legend.summary.text()
    # ---- inspector pin
    ids = sample.table.obs[sample.instance_key].to_numpy()
    near = np.flatnonzero((np.abs(xy[:, 1] - cy) < side / 4) & (np.abs(xy[:, 0] - cx) < side / 4))
    for k in range(3):
        cid = int(ids[near[k * 7 % len(near)]])
        with clock.time("inspector_pin"):
            insp.show_cell(cid)
    # ---- outline toggle (legend's mode switch)
    for mode in ("outline", "filled", "outline", "filled"):
        with clock.time("outline_toggle"):
            col.set_mode(mode)
    # ---- save (Curation dock) as .h5ad and .zarr
    tmpdir = Path(tempfile.mkdtemp(prefix="carspatial-bench-save-"))
    for ext in ("h5ad", "zarr"):
        target = tmpdir / f"saved.{ext}"
        prof_dir = os.environ.get("CARSPATIAL_BENCH_PROFILE")
        prof = None
        if prof_dir:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        cur.saving.save(target)
        blocked = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(prof_dir, f"save_{ext}.prof"))
        clock.frame()
        clock.wait(lambda target=target: target.exists() and not sess.busy(sid))
        total = time.perf_counter() - t0
        clock.rows[f"save_{ext}"] = {"runs": [blocked], "total_s": total, "gui_blocked_s": blocked}
        log.info("save %s: GUI blocked %.3f s, total %.3f s", ext, blocked, total)
    # ---- segmentation: one split and closing the region (CARSPATIAL_BENCH_NO_SEG=1 skips it: profiling)
    if os.environ.get("CARSPATIAL_BENCH_NO_SEG"):
        info["peak_rss_mb"] = peak_rss_mb()
        write_child_result(out, {"info": info, "rows": clock.rows})
        viewer.close()
        return
    seg.sample_box.setCurrentIndex(max(0, seg.sample_box.findData(sid)))
    viewer.camera.zoom = viewer.camera.zoom * 2
    clock.frame()
    with clock.time("segmentation_open_region") as box:
        t0 = time.perf_counter()
        seg.region_view.edit_view()   # the first region of a sample makes the mask's working copy in a worker
        box["gui_blocked_s"] = time.perf_counter() - t0
        clock.wait(lambda: seg.region is not None and not seg.is_busy)
        box["region_px"] = list(seg.region.data.shape) if seg.region is not None else None
    reg = seg.region
    if reg is not None:
        data = reg.data
        h, w = data.shape
        cell = int(data[h // 2, w // 2]) or int(np.max(data[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5]))
        ys, xs = np.nonzero(data == cell)
        line = np.array([[ys.min() - 2, (xs.min() + xs.max()) / 2], [ys.max() + 2, (xs.min() + xs.max()) / 2]])
        n0 = sample.table.n_obs
        with clock.time("segmentation_split") as box:
            seg.ops.split_by_line(line, cell)
            clock.wait(lambda: not seg.is_busy)
            box["cells_added"] = int(sess.sample(sid).table.n_obs - n0)
        with clock.time("segmentation_close_region"):
            seg.region_view.close_region()
            clock.wait(lambda: not seg.is_busy)
    info["peak_rss_mb"] = peak_rss_mb()
    write_child_result(out, {"info": info, "rows": clock.rows})
    viewer.close()


def _rss() -> float:
    from _common import current_rss_mb

    return current_rss_mb()


def _child_reference(store: str, out: str) -> None:
    """napari's per-cell DirectLabelColormap on the same pyramid (what an edit would cost if it rebuilt it)."""
    import napari
    from napari.utils.colormaps import DirectLabelColormap
    from qtpy.QtWidgets import QApplication

    from napari_carspatial.io import read_sample

    s = read_sample(store)
    s = s[0] if isinstance(s, list) else s   # a SpatialData store reads as a list of samples
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    app = QApplication.instance()
    clock = _Clock(viewer, app)
    lab = viewer.add_labels(s.labels, multiscale=True, name="cells")
    tiny = viewer.add_labels(np.array([[1, 2], [3, 0]], np.uint32), name="warm-up")
    tiny.colormap = DirectLabelColormap(color_dict={None: "transparent", 1: "red", 2: "blue", 3: "green"})
    clock.frame()
    viewer.layers.remove(tiny)
    ids = s.table.obs[s.instance_key].to_numpy()
    codes = s.table.obs["cell_type"].cat.codes.to_numpy()
    rng = np.random.default_rng(0)
    palette = rng.random((codes.max() + 1, 4))
    palette[:, 3] = 1
    with clock.time("reference.napari_direct_colormap"):
        lab.colormap = DirectLabelColormap(color_dict={None: "transparent",
                                                       **dict(zip(ids.tolist(), palette[codes].tolist(), strict=True))})
    write_child_result(out, {"info": {"n_cells": int(s.table.n_obs), "peak_rss_mb": peak_rss_mb()}, "rows": clock.rows})
    viewer.close()


# --------------------------------------------------------------------------- baseline source
def baseline_src(ref: str) -> Path | None:
    """``git archive ref src`` unpacked in ``benchmarks/_data`` (None when git cannot)."""
    dest = DATA_DIR / f"baseline-{ref}"
    if (dest / "src" / "napari_carspatial" / "__init__.py").is_file():
        return dest / "src"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        arch = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("no baseline source for %s: %s", ref, err)
        return None
    return dest / "src"


def _gui_run(store: Path, *, src: Path | None, label: str, mode: str = "gui") -> dict:
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src or ROOT / "src"), *([env_before] if env_before else [])])
    os.environ.setdefault("NAPARI_ASYNC", "0")
    os.environ.setdefault("QT_API", "pyqt6")
    try:
        return run_child(__file__, mode, ["--store", str(store), "--label", label], gui=True, timeout=3600)
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before


# --------------------------------------------------------------------------- runner entry
TARGETS = {
    "open_first_frame": TARGET_OPEN_S, "open_first_frame_again": TARGET_OPEN_S,
}


def run(quick: bool, *, baseline: str | None = BASELINE_REF) -> list[dict]:
    n = 100_000 if quick else 1_000_000
    store = make_store(n)
    after = _gui_run(store, src=None, label="after")
    before = None
    if baseline:
        src = baseline_src(baseline)
        before = _gui_run(store, src=src, label=f"before ({baseline})") if src is not None else {"error": "no git"}
    rows = []
    if "error" in after:
        return [result("gui_latency (crashed)", ours_s=None, reference=None, reference_s=None, agreement="n/a",
                       target="runs", met=False, error=after["error"])]
    ai = after["info"]
    for name, r in after["rows"].items():
        ours = statistics.median(r["runs"])
        target = TARGETS.get(name, TARGET_S)
        ref_s = None
        extra = {k: v for k, v in r.items() if k != "runs"}
        if before and "rows" in before and name in before["rows"]:
            ref_s = statistics.median(before["rows"][name]["runs"])
            extra["before"] = dict(before["rows"][name])
        rows.append(result(
            f"gui_latency.{name}", ours_s=ours, reference=f"main {baseline}" if ref_s is not None else None,
            reference_s=ref_s, agreement="same docks, same cells, frame rendered after each" if ref_s is not None
            else f"no baseline row ({(before or {}).get('error') or 'not measured'})",
            target=f"< {target:g} s", met=ours < target, runs_s=r["runs"], details=extra,
            data=f"{ai.get('n_cells', 0):,} cells, {ai.get('shape')}",
        ))
    rows.append(result("gui_latency.peak_rss", ours_s=None, reference=None, reference_s=None,
                       agreement="n/a", target="report", met=True, peak_mb=ai.get("peak_rss_mb"),
                       reference_peak_mb=(before or {}).get("info", {}).get("peak_rss_mb"),
                       details={"after": ai, "before": (before or {}).get("info")}))
    ref = _gui_run(store, src=None, label="reference", mode="reference")
    if "rows" in ref:
        r = ref["rows"]["reference.napari_direct_colormap"]
        ref_s = statistics.median(r["runs"])
        ours = statistics.median(after["rows"]["assign"]["runs"]) if "assign" in after["rows"] else None
        # ours: the whole "Assign" (table, undo log, colouring, frame); the reference only
        # recolours the same cells by napari's per-cell DirectLabelColormap (and draws a frame)
        rows.append(result("gui_latency.assign_vs_napari_direct_colormap", ours_s=ours,
                           reference="napari DirectLabelColormap, one entry per cell", reference_s=ref_s,
                           agreement="same store, same cells, frame rendered after each",
                           target="ratio > 1 (an edit is cheaper than rebuilding napari's per-cell colours)",
                           met=bool(ours is not None and ours < ref_s), peak_mb=ref["info"].get("peak_rss_mb"),
                           data=f"{ref['info'].get('n_cells', 0):,} cells"))
    else:
        rows.append(result("gui_latency.assign_vs_napari_direct_colormap (crashed)", ours_s=None, reference=None,
                           reference_s=None, agreement="n/a", target="runs", met=False, error=ref.get("error")))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--baseline", default=BASELINE_REF, help="git ref measured in the same run as the 'before' "
                   f"(default {BASELINE_REF}: main before issue 14's latency work; '' for none)")
    p.add_argument("--child")
    p.add_argument("--out")
    p.add_argument("--store")
    p.add_argument("--label", default="")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.child in ("gui", "reference"):
        if not os.environ.get("DISPLAY"):
            write_child_result(a.out, {"error": "no DISPLAY for the GUI measurement (run under xvfb-run)"})
            return 1
        if a.child == "gui":
            _child(a.store, a.out, label=a.label)
        else:
            _child_reference(a.store, a.out)
        return 0
    rows = run(a.quick, baseline=a.baseline or None)
    sys.stdout.write(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
