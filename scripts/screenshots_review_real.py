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

import shutil
from pathlib import Path

import numpy as np
from _shots import (
    REAL,
    new_project,
    only_channels,
    open_in_project,
    pump,
    review_command_line,
    shoot,
    show_in_legend,
)

PANCREAS = REAL / "cytomapper_pancreas_imc"
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
    (rd.finish if finish else rd.save)()


def build(work: Path):
    from napari_carspatial.cohort import write_manifest

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    real = PANCREAS.resolve()
    rows = [{"sample": n, "patient": f"donor{i + 1}", "timepoint": "pre",
             "image": str(real / "images" / f"{n}_imc.tiff"), "mask": str(real / "masks" / f"{n}_mask.tiff"),
             "table": str(real / "cells.csv")} for i, n in enumerate(IMAGES)]
    man = write_manifest(rows, work / "manifest.csv")
    proj = new_project(work, man)
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    for r in ("alice", "bob"):
        with proj.start_read("G01", r) as rd:
            read_like(rd, r)
    return proj


def shoot_reader(out: Path, proj) -> None:
    from napari_carspatial._napari import session_for

    viewer, d, label = open_in_project(proj, "alice", "E34", "curation")
    dock = d["project"]
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
    only_channels(viewer, ("PIN", "CDH", "H3"))
    session_for(viewer).coloring(dock.current.sid).set_mode("outline")   # the markers stay readable
    dock.refresh()
    pump(2)
    viewer.reset_view()   # the whole crop
    shoot(viewer, out / "review_real_reader.png", settle=1)
    print("reader:", dock.current.describe(), "| title:", viewer.title, "| layers:", [lyr.name for lyr in viewer.layers])
    viewer.close()


def shoot_adjudication(out: Path, proj) -> None:
    from napari_carspatial._napari import session_for

    viewer, d, _label = open_in_project(proj, "carol", "G01", "legend")
    dock = d["project"]
    it = dock.current
    show_in_legend(d["legend"], it.sid)
    only_channels(viewer, ("PIN", "CDH"))
    panel = dock.disagreements
    panel.step(1)
    panel.step(1)
    panel.accept(0)                      # alice's call for that cell
    panel.step(1)
    session_for(viewer).coloring(it.sid).set_mode("outline")
    viewer.reset_view()
    shoot(viewer, out / "review_real_adjudication.png", settle=2)
    print("adjudication:", it.disagreements.summary(), "|", it.disagreements.current().describe())
    viewer.close()


def main() -> int:
    out, work, _ = review_command_line("/tmp/review-real")
    proj = build(work)
    shoot_reader(out, proj)
    shoot_adjudication(out, proj)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
