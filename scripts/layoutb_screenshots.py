"""Screenshots of the round-4 layout fixes (issue 14) at 1600 x 1000, under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/layoutb_screenshots.py OUT_DIR [--only NAME,...]

Shots (``layoutb_<name>.png``): ``curation`` (Curate, a selection, the Cells tab), ``inspector``
(Review, a CAR T cell pinned), ``measurements`` (Review, the Measurements tab), ``gating`` (Analyse,
the Gating tab after Apply, with the notifications it raised), ``busy`` (a sample busy: the banner),
and the same on the real steinbock folder (``steinbock_*``). Helpers come from ``ux_screenshots.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ux_screenshots as ux  # noqa: E402

log = logging.getLogger("layoutb_screenshots")


def _shoot(viewer, out: Path, name: str) -> Path:
    ux.pump(1.0)
    path = out / f"layoutb_{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    qt = viewer.window._qt_window
    log.warning("wrote %s (window %dx%d, canvas %s)", path, qt.width(), qt.height(), tuple(viewer.canvas.size))
    return path


def _first_cell_of(sample, name):
    t = sample.table
    from napari_carspatial.model.cell_types import find_cell_type_key

    key = find_cell_type_key(t)
    rows = list(range(t.n_obs)) if key is None else \
        [i for i, v in enumerate(t.obs[key].astype(str)) if v == name] or list(range(t.n_obs))
    row = rows[len(rows) // 2]
    from napari_carspatial.model.conventions import instance_ids

    return row, int(instance_ids(t)[row])


def shots(samples, out: Path, only: set[str], prefix: str, *, car_type="CAR T", gate=None) -> None:
    import numpy as np

    from napari_carspatial._napari import notify, session_for
    from napari_carspatial.widgets import workflows

    viewer = ux._viewer(samples)
    sample = samples[0]
    t = sample.table
    px = sample.pixel_size_um or 1.0
    row, cid = _first_cell_of(sample, car_type)
    x, y = np.asarray(t.obsm["spatial"])[row]
    if "inspector" in only:
        insp = ux._raise(viewer, "Cell inspector")
        insp.show_cell(cid, center=True)
        _shoot(viewer, out, f"{prefix}inspector")
    if "measurements" in only:
        m = ux._raise(viewer, "Measurements")
        m.refresh()
        if m.class_box.findData(car_type) >= 0:
            m.class_box.setCurrentIndex(m.class_box.findData(car_type))
        m.table.selectRow(0)
        m.center_on_row(0)
        _shoot(viewer, out, f"{prefix}measurements")
    if "busy" in only:
        session = session_for(viewer)
        sid = session.sid_of(sample)
        ux._raise(viewer, "Cell inspector")
        session.set_busy(sid, "measuring cells (test)")
        _shoot(viewer, out, f"{prefix}busy")
        session.set_busy(sid, None)
    if "curation" in only:
        workflows.apply_workflow(viewer, "Curate")
        ux.pump(1.5)
        if workflows.find_widget(viewer, "Curation").view is None:   # no cell-type column (steinbock)
            _shoot(viewer, out, f"{prefix}curation")
            only = only - {"curation"}
    if "curation" in only:
        cur = workflows.find_widget(viewer, "Curation")
        yx = np.asarray(t.obsm["spatial"])[:, ::-1]
        near = np.flatnonzero(np.hypot(yx[:, 0] - y, yx[:, 1] - x) < 40 / px)
        from napari_carspatial.model.conventions import instance_ids

        ids = instance_ids(t)
        cur.view.core.select_ids(ids[near])
        ux._zoom(viewer, (y * px, x * px), 6.0 if px < 1 else 3.0)
        cats = cur.core.categories
        if cats:
            cur.assign(car_type if car_type in cats else cats[0])
        cur.view.core.select_ids(ids[near[:5]])
        cur.exclude("fold")
        cur.view.core.select_ids(ids[near[5:12]])
        _shoot(viewer, out, f"{prefix}curation")
    if "gating" in only:
        workflows.apply_workflow(viewer, "Analyse")
        ux.pump(1.0)
        g = ux._raise(viewer, "Gating")
        markers, rules = gate
        for marker, q in markers:
            g.set_marker(marker)
            g.set_threshold(float(np.quantile(g.values(marker), q)))
            g.add_gate()
        for name, cond in rules:
            g.add_rule(name, cond)
        g.set_marker(markers[0][0])
        g.apply_rules()
        notify("A second message right after the first (e.g. a warning from another dock).", "warning")
        ux.pump(0.3)
        notify("And a third one.")
        viewer.reset_view()
        _shoot(viewer, out, f"{prefix}gating")
    viewer.close()


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="layoutb_shots_"))
    os.environ["CARSPATIAL_CACHE_DIR"] = str(scratch / "cache")
    os.environ["CARSPATIAL_CONFIG_DIR"] = str(scratch / "config")
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--only", default="")
    p.add_argument("--size", type=int, default=1600)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = {"inspector", "measurements", "busy", "curation", "gating"}
    only = set(filter(None, a.only.split(","))) or (names | {f"steinbock_{n}" for n in names}
                                                     | {"cytomapper_curation", "cytomapper_inspector"})
    demo = only & names
    if demo:
        from napari_carspatial.datasets import demo_sample

        shots([demo_sample(size=a.size)], out, demo, "",
              gate=([("CD3", 0.7), ("CAR", 0.85), ("PanCK", 0.6)],
                    [("CAR T", "CD3+ CAR+"), ("T cell", "CD3+"), ("Tumor", "PanCK+")]))
    if "cytomapper_curation" in only or "cytomapper_inspector" in only:
        from napari_carspatial.io import read_sample

        root = ux.REAL / "cytomapper_pancreas_imc"
        s = read_sample(root / "images" / "E34_imc.tiff", mask=root / "masks" / "E34_mask.tiff",
                        table=root / "cells.csv", panel=root / "panel.csv", pixel_size_um=1.0)
        kinds = {n[len("cytomapper_"):] for n in only if n.startswith("cytomapper_")}
        shots([s], out, kinds, "cytomapper_", car_type=str(s.table.obs["CellType"].astype(str).mode()[0]))
    real = {n[len("steinbock_"):] for n in only if n.startswith("steinbock_")}
    folder = ux.REAL / "steinbock_imc_testdata"
    if real and folder.exists():
        from napari_carspatial.io import read_sample

        res = read_sample(folder)
        samples = res if isinstance(res, list) else [res]
        markers = [str(m) for m in samples[0].table.var_names]
        shots(samples, out, real, "steinbock_", car_type="",
              gate=([(markers[0], 0.7), (markers[1], 0.8)],
                    [("double+", f'"{markers[0]}"+ "{markers[1]}"+'), (f"{markers[0]}+", f'"{markers[0]}"+')]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
