"""Screenshots of the Analyse and Cohort workflows at 1600 x 1000 (issue 14, layout), under Xvfb:

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/layouta_screenshots.py OUT_DIR [--only analyse,cosmx,steinbock,cohort,segment] \\
        [--cohort RESULTS]

``layouta_analyse_setup`` / ``layouta_analyse_results`` (the demo, CAR T measures then
co-occurrence), ``layouta_cosmx`` (the real CosMx crop typed from its genes into
``cell_type_rna``), ``layouta_steinbock_gated`` (the real steinbock folder gated under a column
named by the user), ``layouta_cohort`` (``carspatial cohort-demo OUT --run``'s results, a sample
open), ``layouta_segment``. Uses ``scripts/_shots.py`` and the window helpers of ``scripts/ux_screenshots.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ux_screenshots as ux  # noqa: E402
from _shots import REAL, pump  # noqa: E402

log = logging.getLogger("layouta_screenshots")


def _shoot(viewer, out: Path, name: str) -> None:
    from napari_carspatial.widgets import workflows

    pump(1.0)
    path = out / f"layouta_{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    legend = workflows.find_widget(viewer, workflows.CLASS_LIST)
    tree = legend.categories.tree
    mw = workflows.main_window(workflows.find_dock(viewer, workflows.CLASS_LIST))
    log.warning("wrote %s: window %dx%d, canvas %s, legend rows in view %.1f of %d", path, mw.width(), mw.height(),
                tuple(viewer.canvas.size), tree.viewport().height() / max(tree.sizeHintForRow(0), 1),
                tree.topLevelItemCount())


def _wait_result(w, stat, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        pump(0.3)
        if w._worker is None and w.current is not None and w.current.statistic == stat:
            return
    raise TimeoutError(stat)


def analyse(out: Path, size: int) -> None:
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets import workflows

    viewer = ux._viewer([demo_sample(size=size)], workflow="Analyse")
    _shoot(viewer, out, "analyse_setup")
    w = workflows.find_widget(viewer, "Analysis")
    w.run("cart")
    _wait_result(w, "cart")
    w.tabs.setCurrentWidget(w.results)
    _shoot(viewer, out, "analyse_results")
    w.run("cooccurrence")
    _wait_result(w, "cooccurrence")
    _shoot(viewer, out, "analyse_cooccurrence")
    for wf in ("Segment",):
        workflows.apply_workflow(viewer, wf)
        pump(1.0)
        _shoot(viewer, out, wf.lower())
    viewer.close()


def cosmx(out: Path) -> None:
    """The real CosMx crop: cells typed from their genes (Leiden, as the Transcripts dock does)
    into ``cell_type_rna``; the Legend and the Analysis dock take that column, not ``fov``."""
    from napari_carspatial.analysis.genes import leiden_cell_types, store_cell_types
    from napari_carspatial.io import read_sample
    from napari_carspatial.widgets import workflows

    res = read_sample(REAL / "cosmx_crop", pixel_size_um=0.18)
    s = res[0] if isinstance(res, list) else res
    store_cell_types(s.table, leiden_cell_types(s.table, resolution=1.0, seed=0), key="cell_type_rna", overwrite=True)
    viewer = ux._viewer([s], workflow="Analyse")
    legend = workflows.find_widget(viewer, workflows.CLASS_LIST)
    w = workflows.find_widget(viewer, "Analysis")
    log.warning("cosmx: legend colours by %r, analysis cell types %r", legend.coloring.key, w.cell_type_key)
    lyr = next(iter(w.session.layers_of(w.sample_id, "labels")), None)
    if lyr is not None:   # the FOV is a corner of a large frame: centre on its cells
        import numpy as np

        yx = np.asarray(s.table.obsm["spatial"], float)[:, ::-1]
        ux._zoom(viewer, tuple(np.median(yx, axis=0) * np.asarray(lyr.scale[-2:])), viewer.camera.zoom * 4)
    _shoot(viewer, out, "cosmx")
    viewer.close()


def steinbock(out: Path) -> None:
    """The real steinbock folder (no cell-type column) gated under the user's own column name."""
    import numpy as np

    from napari_carspatial.io import read_sample
    from napari_carspatial.widgets import workflows

    res = read_sample(REAL / "steinbock_imc_testdata")
    viewer = ux._viewer(res if isinstance(res, list) else [res], workflow="Analyse")
    g = ux._raise(viewer, "Gating")
    g.set_marker("YBX1")
    g.set_threshold(float(np.median(g.values("YBX1"))))
    g.add_gate()
    g.add_rule("YBX1 high", "YBX1+")
    g.rules_view.key_edit.setText("YBX1 gate")   # the user's own column name (not one the rule knows)
    g.apply_rules()
    legend = workflows.find_widget(viewer, workflows.CLASS_LIST)
    log.warning("steinbock: legend colours by %r", legend.coloring.key)
    _shoot(viewer, out, "steinbock_gated")
    viewer.close()


def cohort(out: Path, results: Path | None) -> None:
    from napari_carspatial.widgets import workflows

    if results is None:
        from napari_carspatial.cohort import run_batch, write_demo_cohort

        tmp = Path(tempfile.mkdtemp(prefix="layouta_cohort_"))
        paths = write_demo_cohort(tmp, n_patients=4, size=500, image=True)
        results = run_batch(paths["manifest"], paths["config"], tmp / "results", scheduler="sequential",
                            progress=False).out
    viewer = ux._viewer([], workflow="Cohort")
    w = workflows.find_widget(viewer, "Cohort")
    w.load(results)
    sid = w.sample_at(3)
    w.open_sample(sid)
    t0 = time.time()
    while time.time() - t0 < 120 and not any(s.name == sid for s in w.session.samples().values()):
        pump(0.5)
    pump(3.0)
    viewer.reset_view()
    log.warning("cohort: %d samples, %d rows in view", w.table.rowCount(), w.visible_rows())
    _shoot(viewer, out, "cohort")
    viewer.close()


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="layouta_shots_"))
    os.environ["CARSPATIAL_CACHE_DIR"] = str(scratch / "cache")
    os.environ["CARSPATIAL_CONFIG_DIR"] = str(scratch / "config")
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--only", default="analyse,cosmx,steinbock,cohort")
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--cohort", default=None, help="a batch results folder (default: a small demo cohort)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(a.only.split(","))
    if "analyse" in only:
        analyse(out, a.size)
    if "cosmx" in only:
        cosmx(out)
    if "steinbock" in only:
        steinbock(out)
    if "cohort" in only:
        cohort(out, Path(a.cohort) if a.cohort else None)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
