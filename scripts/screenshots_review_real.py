"""Screenshots of the review workspace on real IMC data (cytomapper's pancreas crops: 3 images,
5 channels H3 / CD99 / PIN / CD8a / CDH, the published CellType calls: celltype_A = beta cells,
celltype_B = alpha cells, celltype_C = other).

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/screenshots_review_real.py docs/images [--work /tmp/review-real]

A blinded project of the three images (readers alice and bob, adjudicator carol). The reads follow
the markers, as two pathologists might: alice calls "other" cells with clear proinsulin (PIN, the
top fifth of the "other" cells' PIN counts) beta cells; bob calls beta cells with the lowest
proinsulin (the bottom fifth) "other" and excludes cells cut by the crop border. Writes
``review_real_reader.png`` (alice's read 1 through the Project and Curation docks, blinded, calls
on the PIN channel) and ``review_real_adjudication.png`` (carol's disagreement layer, stepping to
a disagreeing cell; Legend dock with the pairs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from screenshots_review import _docks, _wait  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "cytomapper_pancreas_imc"
IMAGES = ("E34", "G01", "J02")


def _counts(rd, marker: str) -> np.ndarray:
    t = rd.table
    return np.asarray(t[:, marker].X, float).ravel()


def read_like(rd, reviewer: str, *, finish: bool = True) -> None:
    """A marker-driven read (see the module docstring) on an open ReadSession."""
    t = rd.table
    types = t.obs[rd.start_key].astype(str).to_numpy()
    pin = _counts(rd, "PIN")
    cur = rd.curation
    if reviewer == "alice":
        other = np.flatnonzero(types == "celltype_C")
        if other.size:
            cut = np.quantile(pin[other], 0.8)
            cur.assign(other[pin[other] > cut], "celltype_A", note="proinsulin clear: beta")
    else:
        beta = np.flatnonzero(types == "celltype_A")
        if beta.size:
            cut = np.quantile(pin[beta], 0.2)
            cur.assign(beta[pin[beta] < cut], "celltype_C", note="no proinsulin")
        if "touches_crop_border" in t.obs:
            edge = np.flatnonzero(t.obs["touches_crop_border"].astype(str).str.lower().to_numpy() == "true")
            cur.exclude(edge[: max(1, edge.size // 4)], "edge", note="cut by the crop border")
    cur.confirm(np.arange(t.n_obs))
    if finish:
        rd.finish()
    else:
        rd.save()


def build(work: Path):
    from napari_carspatial.cohort import write_manifest
    from napari_carspatial.review import init_project

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    real = REAL.resolve()
    rows = [{"sample": n, "patient": f"donor{i + 1}", "timepoint": "pre",
             "image": str(real / "images" / f"{n}_imc.tiff"), "mask": str(real / "masks" / f"{n}_mask.tiff"),
             "table": str(real / "cells.csv")} for i, n in enumerate(IMAGES)]
    man = write_manifest(rows, work / "manifest.csv")
    proj = init_project(work / "review", man, reviewers=[("alice", "Dr A. Example"), ("bob", "Dr B. Sample"),
                                                        ("carol", "Dr C. Adjudicator")], due="2026-12-20")
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    for r in ("alice", "bob"):
        with proj.start_read("G01", r) as rd:
            read_like(rd, r)
    return proj


def _only_channels(viewer, keep) -> None:
    for lyr in viewer.layers:
        md = getattr(lyr, "metadata", {}) or {}
        if md.get("carspatial_role") == "image":
            lyr.visible = md.get("carspatial_channel") in keep


def shoot_reader(out: Path, proj) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari")
    app = QApplication.instance()
    viewer.window.resize(1600, 1000)
    d = _docks(viewer, "project", "curation")
    dock = d["project"]
    dock.open_project(proj.folder)
    dock.set_reviewer("alice")
    label = proj.label("E34")
    dock.open_label(label, in_worker=False)
    core = dock.workspace.core(label)
    rd_types = core.table.obs["CellType"].astype(str).to_numpy()
    pin = np.asarray(core.table[:, "PIN"].X, float).ravel()
    other = np.flatnonzero(rd_types == "celltype_C")
    pick = other[pin[other] > np.quantile(pin[other], 0.8)]
    core.select(pick)
    core.assign("celltype_A", note="proinsulin clear: beta")
    core.select(np.flatnonzero(rd_types == "celltype_B")[:6])
    core.confirm(note="alpha")
    dock.workspace.save(label)
    core.select(pick)
    _only_channels(viewer, ("PIN", "CDH", "H3"))
    from napari_carspatial._napari import session_for

    session_for(viewer).coloring(dock.current.sid).set_mode("outline")   # the markers stay readable
    dock.refresh()
    _wait(app, 2)
    viewer.reset_view()   # the whole crop
    _wait(app, 1)
    viewer.screenshot(str(out / "review_real_reader.png"), canvas_only=False, flash=False)
    print("reader:", dock.current.describe(), "| title:", viewer.title, "| layers:", [lyr.name for lyr in viewer.layers])
    viewer.close()


def shoot_adjudication(out: Path, proj) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari")
    app = QApplication.instance()
    viewer.window.resize(1600, 1000)
    d = _docks(viewer, "project", "legend")
    dock = d["project"]
    dock.open_project(proj.folder)
    dock.set_reviewer("carol")
    label = proj.label("G01")
    dock.open_label(label, in_worker=False)
    it = dock.current
    legend = d["legend"]
    idx = legend.sample_box.findData(it.sid)
    if idx >= 0:
        legend.sample_box.setCurrentIndex(idx)
    _only_channels(viewer, ("PIN", "CDH"))
    panel = dock.disagreements
    panel.step(1)
    panel.step(1)
    panel.accept(0)                      # alice's call for that cell
    panel.step(1)
    from napari_carspatial._napari import session_for

    session_for(viewer).coloring(it.sid).set_mode("outline")
    viewer.reset_view()
    _wait(app, 2)
    viewer.screenshot(str(out / "review_real_adjudication.png"), canvas_only=False, flash=False)
    print("adjudication:", it.disagreements.summary(), "|", it.disagreements.current().describe())
    viewer.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--work", default="/tmp/review-real")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    os.environ.setdefault("CARSPATIAL_CACHE_DIR", str(work / "cache"))
    proj = build(work)
    shoot_reader(out, proj)
    shoot_adjudication(out, proj)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
