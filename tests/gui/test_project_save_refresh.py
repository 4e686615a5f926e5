"""The Project dock follows saves made anywhere: "Save read 1" in the Curation dock (in a worker,
through the read's ``ReadSession.save``) makes the viewer session emit ``saved`` on the main
thread and the slides table shows the new share of cells reviewed at once; "Add samples…" adds a
manifest's samples (assigned like the others, one line for those already there); a project slide
tells the Segmentation dock why its mask may not be edited."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari import (
    is_project_sample,
    project_item,
    segmentation_refusal,
    session_for,
)
from napari_carspatial.review import init_project, load_project


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=100, image=False)["manifest"]


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as notifications

    out = {"info": [], "warning": [], "error": []}
    for level in out:
        monkeypatch.setattr(notifications, f"show_{level}", lambda msg, level=level: out[level].append(str(msg)))
    return out


def _reviewed(dock, label):
    from napari_carspatial.widgets.project.slides import COLUMNS

    row = dock.slides.labels().index(label)
    col = COLUMNS.index("reviewed")
    return None if dock.slides.isColumnHidden(col) else dock.slides.item(row, col).text()


def test_curation_save_refreshes_the_project_dock(make_napari_viewer_proxy, qtbot, cohort, tmp_path, monkeypatch,
                                                  notes):
    from napari_carspatial.widgets.curation import CurationWidget
    from napari_carspatial.widgets.project import ProjectWidget
    from napari_carspatial.widgets.project.slides import percent

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob"])
    proj.assign(None, readers=("alice", "bob"))
    viewer = make_napari_viewer_proxy()
    dock, cur = ProjectWidget(viewer), CurationWidget(viewer)
    assert dock.open_project(proj.folder)
    dock.set_reviewer("alice")
    dock.open_label(dock.workspace.next_label(), in_worker=False)
    item = dock.current
    label, sid = item.label, item.sid
    assert _reviewed(dock, label) is None          # nothing saved yet: no share shown
    session = session_for(viewer)
    events = []
    session.events.saved.connect(lambda e: events.append((e.sid, e.path, e.kind, threading.current_thread())))

    # the seg dock's question: this slide is a project slide, a sample of no project is not
    assert is_project_sample(viewer, sid) and is_project_sample(session, item.sample) and is_project_sample(viewer, label)
    assert project_item(viewer, session.labels_layer(sid)) is item
    mask = session.labels_layer(sid)
    mask.mode = "paint"
    assert not mask.editable and mask.mode == "pan_zoom"   # napari's paint / fill / erase are off too
    reason = segmentation_refusal(viewer, sid)
    assert reason.startswith(f"{label} is a review project slide (read 1): segmentation edits are refused")
    assert segmentation_refusal(viewer, "P99-other") is None and not is_project_sample(viewer, "s0-nothing")

    # Curation dock: re-type 5 cells, "Save read 1" in a worker; the dock updates when it lands
    n = cur.core.table.n_obs
    cur.view.select(np.arange(5))
    assert cur.assign("CAR T") is not None
    assert cur.saving.save_button.text() == "Save read 1"
    cur.saving.save_to_target()
    qtbot.waitUntil(lambda: _reviewed(dock, label) == percent(5 / n), timeout=20_000)
    path = proj.read_path(label, "alice")
    assert [(e[0], e[1], e[2]) for e in events] == [(sid, str(path), "read")]
    assert events[0][3] is threading.main_thread()
    assert cur.saving.last_job.thread != threading.main_thread().name   # the write ran in a worker
    assert dock.slides.item(dock.slides.labels().index(label), 2).text() == "in progress"
    assert dock.status.text() == f"{label} saved ({path.name}): 5 of {n} cells reviewed."

    # (saves on the GUI thread and the Project dock's own Save: tests/unit/test_project_saves_and_slides.py)

    # Mark done: the status changes in the table (and is announced)
    dock.workspace.finish(label)
    assert dock.slides.item(dock.slides.labels().index(label), 2).text() == "done" and len(events) == 2
    assert segmentation_refusal(viewer, sid).startswith(f"{label} is a review project slide (read 1)")   # done: still
    viewer.close()
    assert segmentation_refusal(session, sid) is None       # closed: no longer a project slide here


def test_add_samples_from_the_dock(make_napari_viewer_proxy, qtbot, cohort, tmp_path, notes):
    from napari_carspatial.widgets.project import ProjectWidget

    full = pd.read_csv(cohort, dtype=str, keep_default_na=False)
    for c in ("table", "mask"):
        full[c] = [str((cohort.parent / v).resolve()) if v else v for v in full[c]]
    man = tmp_path / "manifest.csv"
    full.iloc[:2].to_csv(man, index=False)
    new = tmp_path / "new.csv"
    full.iloc[[1, 2, 3]].to_csv(new, index=False)
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    viewer = make_napari_viewer_proxy()
    dock = ProjectWidget(viewer)
    assert not dock.add_samples_button.isEnabled()      # no project yet
    assert dock.open_project(proj.folder)
    dock.set_reviewer("carol")
    assert dock.add_samples_button.isEnabled() and dock.slides.rowCount() == 2

    dock.add_samples(new)                               # in a worker
    qtbot.waitUntil(lambda: dock._adding is None, timeout=20_000)
    assert dock.slides.rowCount() == 4                  # carol adjudicates the two new samples too
    line = f"2 samples added, assigned like the others; {full['sample'][1]} is in the project already; not added."
    assert notes["info"][-1] == line and dock.status.text() == line
    assert dock.project_label.text().endswith("4 slides")
    p = load_project(proj.folder)
    assert list(p.samples) == list(full["sample"]) and all(set(p.samples[s].readers) == {"alice", "bob"}
                                                           for s in full["sample"][2:])
    # a reader adding samples is told what blinding cannot hide; a bad file is one warning naming it
    dock.set_reviewer("alice")
    text = dock.workspace.add_samples_from(new)
    assert text.startswith(f"{', '.join(full['sample'][1:])} are in the project already; not added.")
    dock.add_samples(tmp_path / "nowhere.csv", in_worker=False)
    assert "nowhere.csv" in notes["warning"][-1] and not notes["error"]
