"""Screenshots of the look-and-layout work (issue 14) at 1600 x 1000, under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/ux_screenshots.py OUT_DIR [--only NAME,...]

Shots (``ux_<name>.png``): ``first_view`` (the demo as ``carspatial demo`` opens it),
``margin_zoom`` (cell zoom on the invasive margin: outlines, thin region borders),
``panel`` (the "CAR T" marker panel applied), ``curation`` (Curate: a selection re-annotated),
``audit`` (the audit trail tab), ``regions`` (the Regions tab), ``inspector`` (a CAR T cell
pinned), ``measurements`` (the Measurements dock filtered to CAR T, sorted by CD8),
``measurement_regions``, ``segment``, ``analyse`` (the other workflows), ``steinbock`` (the real
steinbock test folder), ``cytomapper`` (the real cytomapper IMC crop E34), ``cohort`` (the Cohort dock on a small batch run).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from _shots import REAL, SIZE, pump, shoot

log = logging.getLogger("ux_screenshots")


def _shoot(viewer, out: Path, name: str) -> Path:
    path = shoot(viewer, out / f"ux_{name}.png", settle=1.0)
    log.warning("wrote %s (canvas %s)", path, tuple(viewer.canvas.size))
    return path


def _viewer(samples, *, workflow="Review"):
    from napari_carspatial import cli

    viewer = cli._open_viewer(samples, title="napari-carspatial", workflow=workflow)
    viewer.window.show()
    pump(1.0)
    # after show: napari may restore a window size saved by another session on this machine
    viewer.window.resize(*SIZE)
    pump(3.0)
    viewer.reset_view()
    return viewer


def _raise(viewer, name):
    from napari_carspatial.widgets import workflows

    d = workflows.find_dock(viewer, name)
    d.show()
    d.raise_()
    pump(0.5)
    return workflows.find_widget(viewer, name)


def _zoom(viewer, center, zoom):
    from napari_carspatial._napari import camera

    cam = camera(viewer)
    cam.center = center
    cam.zoom = zoom


def demo_shots(out: Path, only: set[str], size: int) -> None:
    import numpy as np

    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets import workflows

    sample = demo_sample(size=size)
    viewer = _viewer([sample])
    t = sample.table
    px = sample.pixel_size_um
    if "first_view" in only:
        _shoot(viewer, out, "first_view")
    # a CAR T cell at the invasive margin
    margin = t.obs.index[(t.obs["cell_type"] == "CAR T").to_numpy()
                         & (t.obs.get("compartment", t.obs["cell_type"]) == "Invasive margin").to_numpy()]
    row = t.obs_names.get_loc(margin[len(margin) // 2]) if len(margin) else 0
    x, y = t.obsm["spatial"][row]
    if "margin_zoom" in only:
        _zoom(viewer, (y * px, x * px), 6.0)
        _shoot(viewer, out, "margin_zoom")
    if "panel" in only:
        ch = _raise(viewer, "Channels")
        ch.panel_combo.setCurrentText("CAR T")
        ch.apply_named_panel("CAR T")
        _zoom(viewer, (y * px, x * px), 3.0)
        _shoot(viewer, out, "panel")
    if "inspector" in only:
        insp = _raise(viewer, "Cell inspector")
        insp.show_cell(int(t.obs["cell_id"].iloc[row]) if "cell_id" in t.obs else row + 1, center=True)
        _shoot(viewer, out, "inspector")
    if {"curation", "audit", "regions"} & only:
        workflows.apply_workflow(viewer, "Curate")
        pump(1.5)
        cur = workflows.find_widget(viewer, "Curation")
        view = cur.view
        yx = np.asarray(t.obsm["spatial"])[:, ::-1]
        near = np.flatnonzero(np.hypot(yx[:, 0] - y, yx[:, 1] - x) < 40 / px)
        view.core.select_ids(np.asarray(t.obs["cell_id"])[near])
        _zoom(viewer, (y * px, x * px), 6.0)
        cur.assign("CAR T")
        view.core.select_ids(np.asarray(t.obs["cell_id"])[near[:5]])
        cur.exclude("fold")
        view.core.select_ids(np.asarray(t.obs["cell_id"])[near[5:12]])
        pump(0.5)
        if "curation" in only:
            _shoot(viewer, out, "curation")
        if "audit" in only:
            cur.tabs.setCurrentIndex(2)
            _shoot(viewer, out, "audit")
        if "regions" in only:
            cur.tabs.setCurrentIndex(1)
            if cur.regions.roi_table.rowCount():
                cur.regions.roi_table.selectRow(0)
            _shoot(viewer, out, "regions")
    if {"measurements", "measurement_regions"} & only:
        workflows.apply_workflow(viewer, "Analyse")
        pump(1.0)
        m = _raise(viewer, "Measurements")
        m.refresh()
        m.class_box.setCurrentIndex(max(m.class_box.findData("CAR T"), 0))
        from qtpy.QtCore import Qt

        j = m.model.meas.index_of("marker:CD8") if "CD8" in sample.channel_names else 0
        m.table.sortByColumn(j, Qt.DescendingOrder)
        m.table.selectRow(0)
        m.center_on_row(0)
        if "measurements" in only:
            _shoot(viewer, out, "measurements")
        if "measurement_regions" in only:
            m.tabs.setCurrentIndex(1)
            _shoot(viewer, out, "measurement_regions")
    for wf in ("Segment", "Analyse"):
        if wf.lower() in only:
            workflows.apply_workflow(viewer, wf)
            pump(1.5)
            viewer.reset_view()
            _shoot(viewer, out, wf.lower())
    viewer.close()


def steinbock_shot(out: Path) -> None:
    from napari_carspatial.io import read_sample

    folder = REAL / "steinbock_imc_testdata"
    if not folder.exists():
        log.warning("no %s: steinbock shot skipped", folder)
        return
    res = read_sample(folder)
    viewer = _viewer(res if isinstance(res, list) else [res])
    _shoot(viewer, out, "steinbock")
    viewer.close()


def cytomapper_shot(out: Path) -> None:
    """The real cytomapper IMC crop (E34: 113 cells, 'CellType', 1 µm pixels), Review layout."""
    from napari_carspatial.io import read_sample

    root = REAL / "cytomapper_pancreas_imc"
    if not root.exists():
        log.warning("no %s: cytomapper shot skipped", root)
        return
    s = read_sample(root / "images" / "E34_imc.tiff", mask=root / "masks" / "E34_mask.tiff",
                    table=root / "cells.csv", panel=root / "panel.csv", pixel_size_um=1.0)
    viewer = _viewer([s])
    _shoot(viewer, out, "cytomapper")
    viewer.close()


def cohort_shot(out: Path) -> None:
    from napari_carspatial.cohort import run_batch, write_demo_cohort
    from napari_carspatial.widgets import workflows

    tmp = Path(tempfile.mkdtemp(prefix="ux_cohort_"))
    paths = write_demo_cohort(tmp, n_patients=4, size=500, image=True)
    res = run_batch(paths["manifest"], paths["config"], tmp / "results", scheduler="sequential", progress=False)
    viewer = _viewer([], workflow="Cohort")
    w = workflows.find_widget(viewer, "Cohort")
    w.load(res.out)
    worker = w.open_sample("P02-post")
    t0 = time.time()
    while time.time() - t0 < 60 and not any(s.name == "P02-post" for s in w.session.samples().values()):
        pump(0.5)
    del worker
    pump(3.0)
    viewer.reset_view()
    _shoot(viewer, out, "cohort")
    viewer.close()


def main() -> None:
    import os

    # autosaves, recovery files and remembered settings of these shots stay out of the user's folders
    scratch = Path(tempfile.mkdtemp(prefix="ux_shots_"))
    os.environ["CARSPATIAL_CACHE_DIR"] = str(scratch / "cache")
    os.environ["CARSPATIAL_CONFIG_DIR"] = str(scratch / "config")
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--only", default="")
    p.add_argument("--size", type=int, default=2400)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = {"first_view", "margin_zoom", "panel", "inspector", "curation", "audit", "regions", "measurements",
            "measurement_regions", "segment", "analyse"}
    only = set(filter(None, a.only.split(","))) or demo | {"steinbock", "cytomapper", "cohort"}
    if only & demo:
        demo_shots(out, only & demo, a.size)
    if "steinbock" in only:
        steinbock_shot(out)
    if "cytomapper" in only:
        cytomapper_shot(out)
    if "cohort" in only:
        cohort_shot(out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
