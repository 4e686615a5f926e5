"""Screenshots of the review workspace (issue 18): the Project dock (blinded), the disagreement
layer with its stepping controls, and the cohort report's reader-agreement section.

Run under a virtual display (napari's canvas needs one; the report is rendered by headless
Chromium):

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/screenshots_review.py docs/images [--work /tmp/review-shots]

A demo trial of 3 patients x (pre, post) is written, a blinded review project made from it
(readers alice and bob, adjudicator carol) and read through the headless API with two plausible,
spatially coherent reading styles: alice calls a share of the antigen-negative tumour cells
"Tumor" (faint MSLN read as positive) and draws a generous tumour core; bob calls macrophages
close to the tumour "MDSC", excludes a fold and draws a tighter core. Writes
``review_project_dock.png``, ``review_disagreements.png`` and ``review_report_agreement.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from _shots import (
    new_project,
    only_channels,
    open_in_project,
    review_command_line,
    shoot,
    show_in_legend,
)


def read_like(rd, reviewer: str, *, finish: bool = True, share: float = 1.0) -> None:
    """One reader's style on an open ReadSession (headless)."""
    from napari_carspatial.model import ROI

    t = rd.table
    obs = t.obs
    xy = np.asarray(t.obsm["spatial"], float)
    types = obs[rd.start_key].astype(str).to_numpy()
    rng = np.random.default_rng(abs(hash((rd.label, reviewer))) % 2**32)
    cur = rd.curation
    h, w = xy[:, 1].max(), xy[:, 0].max()
    cy, cx = np.median(xy[:, 1][types == "Tumor"]), np.median(xy[:, 0][types == "Tumor"])
    lim = int(len(t) * share)
    if reviewer == "alice":
        neg = np.flatnonzero(types == "Tumor (antigen-neg)")
        pick = neg[rng.random(neg.size) < 0.45]
        cur.assign(pick[pick < lim], "Tumor", note="faint MSLN, called positive")
        other = np.flatnonzero(rng.random(len(t)) < 0.01)
        cur.assign(other[other < lim], "Other", note="unclear")
        r = 0.30 * min(h, w)
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        poly = np.column_stack([cy + r * np.sin(ang), cx + 1.1 * r * np.cos(ang)])
        cur.add_roi(ROI("core", poly, cls="Tumor core"))
    else:
        dist = obs["tumor_distance_um"].to_numpy(float) if "tumor_distance_um" in obs else np.full(len(t), 0.0)
        mac = np.flatnonzero((types == "Macrophage") & (np.abs(dist) < 40))
        pick = mac[rng.random(mac.size) < 0.6]
        cur.assign(pick[pick < lim], "MDSC", note="CD11b+ near tumour")
        fold = np.flatnonzero((xy[:, 0] > 0.82 * w) & (xy[:, 1] < 0.18 * h))
        cur.exclude(fold[fold < lim], "fold")
        r = 0.27 * min(h, w)
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        poly = np.column_stack([cy + r * np.sin(ang), cx + r * np.cos(ang)])
        cur.add_roi(ROI("core", poly, cls="Tumor core"))
    if share >= 1.0:
        cur.confirm(np.arange(len(t)))
    (rd.finish if finish else rd.save)()


def build_trial(work: Path):
    from napari_carspatial.cohort import write_demo_cohort

    if work.exists():
        shutil.rmtree(work)
    paths = write_demo_cohort(work / "cohort", n_patients=3, size=700, image=True)
    proj = new_project(work, paths["manifest"])
    proj.assign_balanced(["alice", "bob"], adjudicator="carol")
    samples = list(proj.samples)
    with proj.updating():
        proj.entry(samples[5]).due = "2026-11-25"   # overdue
    # three samples read twice, one of them adjudicated; one read by alice only; one in progress
    for s in samples[:3]:
        for r in ("alice", "bob"):
            with proj.start_read(s, r) as rd:
                read_like(rd, r)
    with proj.start_read(samples[3], "alice") as rd:
        read_like(rd, "alice")
    with proj.start_adjudication(samples[0], "carol") as adj:
        for p in adj.pairs().itertuples(index=False):
            adj.decide_pair(p[0], p[1], p[1] if p[0] == "Other" else p[0], note="bulk")
        for cls in adj.region_disagreements()["class"]:
            adj.decide_region(cls, "intersection")
        adj.finish()
    return paths, proj, samples


def shoot_dock(out: Path, proj, samples) -> None:
    viewer, d, label = open_in_project(proj, "alice", samples[4], "curation")
    dock = d["project"]
    it = dock.current
    core = dock.workspace.core(label)
    t = core.table
    types = t.obs["cell_type"].astype(str).to_numpy()
    core.select(np.flatnonzero(types == "CAR T")[:40])
    core.confirm(note="CAR+ CD3+")
    core.select(np.flatnonzero(types == "Tumor (antigen-neg)")[:25])
    core.assign("Tumor", note="faint MSLN")
    dock.workspace.save(label)
    dock.refresh()
    shoot(viewer, out / "review_project_dock.png", settle=3)
    print("dock:", it.describe(), "| title:", viewer.title)
    print("layers:", [lyr.name for lyr in viewer.layers])
    viewer.close()


def shoot_disagreements(out: Path, proj, samples) -> None:
    from napari_carspatial._napari import session_for

    viewer, d, _label = open_in_project(proj, "carol", samples[1], "legend")
    dock = d["project"]
    it = dock.current
    dv = it.disagreements
    show_in_legend(d["legend"], it.sid)
    only_channels(viewer, ("PanCK", "CD68", "CD163"))   # the colours read over three channels
    panel = dock.disagreements
    # the pair where markers decide: macrophage (alice) or MDSC (bob)
    panel.pair_box.setCurrentIndex(max(panel.pair_box.findData("Macrophage → MDSC"), 1))
    for _ in range(3):
        panel.step(1)
    panel.accept(1)                      # bob's call for that cell
    panel.step(1)
    # zoomed on a cell the markers matter: the pair colours as outlines (the Legend's "style")
    session_for(viewer).coloring(it.sid).set_mode("outline")
    shoot(viewer, out / "review_disagreements.png", settle=1)
    print("disagreements:", dv.summary(), "|", dv.current().describe())
    # the whole slide: where the reads differ
    session_for(viewer).coloring(it.sid).set_mode("filled")
    viewer.reset_view()
    shoot(viewer, out / "review_disagreements_overview.png", settle=2)
    viewer.close()


def shoot_report(out: Path, paths, proj, work: Path) -> None:
    from napari_carspatial.cohort import run_batch
    from napari_carspatial.cohort.report import write_report

    res = work / "results"
    run_batch(paths["manifest"], paths["config"], res, scheduler="sequential", progress=False)
    report = write_report(res, review=proj.folder)
    html = report.read_text(encoding="utf-8")
    if 'id="reader-agreement"' not in html:
        raise SystemExit(f"{report} has no reader-agreement section")
    # the report as it is, with everything but its title and the agreement section hidden (its own CSS)
    page = work / "report_agreement.html"
    page.write_text(html.replace("</style>", "body>:not(h1):not(#reader-agreement){display:none}</style>", 1),
                    encoding="utf-8")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chrome is None:
        raise SystemExit("no Chromium found (apt-get install -y chromium)")
    target = out / "review_report_agreement.png"
    subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=10000", "--window-size=1600,1000", f"--screenshot={target}", page.as_uri()],
                   check=True, capture_output=True, timeout=180)
    print("report:", report, "->", target)


def main() -> int:
    out, work, a = review_command_line("/tmp/review-shots", only="dock,disagreements,report")
    t0 = time.time()
    if (work / "review" / "project.yaml").exists() and os.environ.get("REUSE"):
        from napari_carspatial.review import load_project

        proj = load_project(work / "review")
        paths = {"manifest": work / "cohort" / "manifest.csv", "config": work / "cohort" / "analysis.yaml"}
        samples = list(proj.samples)
    else:
        paths, proj, samples = build_trial(work)
    print(f"trial ready in {time.time() - t0:.0f} s")
    only = a.only.split(",")
    if "dock" in only:
        shoot_dock(out, proj, samples)
    if "disagreements" in only:
        shoot_disagreements(out, proj, samples)
    if "report" in only:
        shoot_report(out, paths, proj, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
