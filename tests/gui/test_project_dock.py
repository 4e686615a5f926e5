"""The Project dock (issue 18's GUI half), through the real widgets on a four-sample demo trial:
alice reads one sample through the dock (open from the project, assign a few cells in the
Curation dock, save, mark done), a second window is refused with the holder's name, bob reads
it headless, and carol adjudicates one disagreement (and the rest in bulk) through the dock's
disagreement section. Blinding is checked in every place the viewer shows a name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_carspatial._napari import camera, session_for
from napari_carspatial.model import edit_log
from napari_carspatial.review import init_project, load_project, read_lock

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from review_trial import simulate_read  # noqa: E402

SAMPLES = ["P01-pre", "P01-post", "P02-pre", "P02-post"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    # masks and tables only: image channels add nothing to what is tested and cost ~20 s a slide
    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=160, image=False)["manifest"]


@pytest.fixture
def project(tmp_path, cohort, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=[("alice", "Dr A"), "bob", "carol"], due="2099-12-31")
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    return proj


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as notifications

    got = []
    for level in ("info", "warning", "error"):
        monkeypatch.setattr(notifications, f"show_{level}", lambda msg, _l=level: got.append((_l, str(msg))))
    return got


def _docks(viewer):
    from napari_carspatial.widgets.curation import CurationWidget
    from napari_carspatial.widgets.project import ProjectWidget

    proj_dock = ProjectWidget(viewer)
    viewer.window.add_dock_widget(proj_dock, name="Project", area="right")
    cur = CurationWidget(viewer)
    viewer.window.add_dock_widget(cur, name="Curation", area="right")
    return proj_dock, cur


def _wait_open(qtbot, dock):
    qtbot.waitUntil(lambda: dock._worker is None and dock.current is not None, timeout=60_000)
    return dock.current


def _wait_job(qtbot, dock):
    qtbot.waitUntil(lambda: dock._job is None, timeout=60_000)


def _shown_texts(viewer, dock, cur) -> list[str]:
    """Every name the viewer shows: layers, title, the docks' sample lists and slide tables."""
    out = [lyr.name for lyr in viewer.layers] + [viewer.title]
    out += [cur.sample_box.itemText(i) for i in range(cur.sample_box.count())]
    out += [dock.slides.item(i, j).text() for i in range(dock.slides.rowCount()) for j in range(dock.slides.columnCount())]
    out += [dock.current_label.text(), dock.project_label.text(), cur.header.meta_label.text()]
    return out


def test_read_through_the_dock_then_adjudicate(make_napari_viewer_proxy, qtbot, project, notes):
    viewer = make_napari_viewer_proxy()
    viewer.window.resize(1600, 1000)
    dock, cur = _docks(viewer)
    assert dock.open_project(project.folder)
    dock.set_reviewer("alice")
    assert dock.slides.rowCount() == 4
    assert all(lab.startswith("RV-") for lab in dock.slides.labels())

    # 1. open the next slide in one click (read in a worker), blinded everywhere
    qtbot.mouseClick(dock.next_button, Qt.LeftButton)
    item = _wait_open(qtbot, dock)
    label = item.label
    assert item.role == "read 1" and item.writable
    texts = _shown_texts(viewer, dock, cur)
    for leak in (*SAMPLES, "P01", "P02", "responder", "timepoint"):
        assert not any(leak in t for t in texts), (leak, [t for t in texts if leak in t])
    assert any(label in t for t in texts) and label in viewer.title
    assert cur.sample_box.currentText() == label
    assert cur.header.blind_box.isChecked()
    assert not {"patient", "timepoint", "response"} & set(item.sample.table.obs)

    # 2. curate in the Curation dock: assign a few cells; Save writes the working copy
    assert cur.saving.save_button.text() == "Save read 1"
    rows = np.arange(6)
    cur.view.select(rows)
    assert cur.assign("Macrophage") is not None
    qtbot.mouseClick(cur.saving.save_button, Qt.LeftButton)
    assert cur.saving.wait(20)                           # "Save read 1" writes in a worker
    path = project.read_path(label, "alice")
    wc = ad.read_h5ad(path)
    assert (wc.obs["cell_type_curated"].astype(str).to_numpy()[rows] == "Macrophage").all()
    assert edit_log.get_log(wc)["reviewer"].tolist() == ["alice"]
    assert read_lock(path).owner == "alice"
    assert cur.core.recovery.key()[0] == str(path)     # autosave / recovery keyed by the read
    # the Project dock's Save: in a worker, the sample busy meanwhile
    cur.view.select([6])
    cur.assign("CAR T")
    qtbot.mouseClick(dock.save_button, Qt.LeftButton)
    _wait_job(qtbot, dock)
    assert ad.read_h5ad(path).obs["cell_type_curated"].astype(str).iloc[6] == "CAR T"
    assert not session_for(viewer).busy(item.sid)

    # 3. a second window is refused, naming the holder
    viewer2 = make_napari_viewer_proxy()
    dock2, _cur2 = _docks(viewer2)
    dock2.open_project(project.folder)
    dock2.set_reviewer("alice")
    dock2.open_label(label, in_worker=False)
    assert dock2.current is None
    refusal = [m for lvl, m in notes if "second writer is refused" in m]
    assert refusal and "locked by alice on host" in refusal[-1]
    viewer2.close()

    # 4. mark done: saved, status done, lock released, the slide read-only
    qtbot.mouseClick(dock.done_button, Qt.LeftButton)
    assert session_for(viewer).busy(item.sid)            # the file work runs in a worker
    _wait_job(qtbot, dock)
    assert load_project(project.folder).entry(label).read_of("alice").status == "done"
    assert read_lock(path) is None and cur.core.read_only
    row = dock.slides.labels().index(label)
    assert dock.slides.item(row, 2).text().startswith("done")
    cur.view.select(np.arange(6, 9))
    assert cur.assign("Tumor") is None                    # refused with a notification
    assert any("read-only" in m for _l, m in notes)

    # bob reads the same sample headless (the reads are independent)
    sample = load_project(project.folder).entry(label).sample
    with project.start_read(label, "bob") as rd:
        simulate_read(rd, SAMPLES.index(sample))

    # 5. carol adjudicates in the same viewer: the disagreement layer and the stepping controls
    dock.set_reviewer("carol")
    assert len(dock.slides.labels()) == 4 and not dock.workspace.items   # alice's slide was closed
    texts = {dock.slides.item(i, 0).text(): dock.slides.item(i, 2).text() for i in range(4)}
    assert texts[label] == "not started" and sum(v == "waiting for reads" for v in texts.values()) == 3
    assert dock.workspace.next_label() == label
    dock.open_label(label)
    item = _wait_open(qtbot, dock)
    assert item.kind == "adjudication" and item.label == label
    panel = dock.disagreements
    assert not panel.isHidden() and not panel.decide_box.isHidden()
    dv = item.disagreements
    n = dv.n_disagreements
    assert n > 0 and f"{n:,} disagreeing" in panel.summary.text()
    assert session_for(viewer).coloring(item.sid).key == dv.key
    qtbot.mouseClick(panel.next_button, Qt.LeftButton)
    st = dv.current()
    assert st is not None and "alice" in panel.cell_label.text() and "bob" in panel.cell_label.text()
    assert str(st.cell_id) in panel.cell_label.text()
    world = session_for(viewer).labels_layer(item.sid).data_to_world((st.y, st.x))
    assert np.allclose(camera(viewer).center[-2:], world[-2:])
    # decide this cell: bob's call, with a note -> one audit row by carol with both calls
    panel.note.setText("CD68+ CD163+")
    qtbot.mouseClick(panel.accept_b, Qt.LeftButton)
    log = edit_log.get_log(item.adjudication.table)
    last = log.iloc[-1]
    assert last["action"] == "adjudicate" and last["reviewer"] == "carol" and last["note"] == "CD68+ CD163+"
    assert json.loads(last["new"]) == st.calls["bob"]
    assert json.loads(last["old"]) == {"alice": st.calls["alice"], "bob": st.calls["bob"]}
    assert dv.current().decision == st.calls["bob"]
    assert "decision" in panel.cell_label.text()
    # the rest in bulk: undecided only, alice's calls; regions: union
    panel.undecided_box.setChecked(True)
    assert len(dv.rows) == n - 1
    qtbot.mouseClick(panel.bulk_a, Qt.LeftButton)
    assert dv.n_undecided() == 0
    while panel.region_class.count() and panel.region_button.isEnabled() and dv.remaining()["regions"]:
        panel.region_choice.setCurrentText("union")
        qtbot.mouseClick(panel.region_button, Qt.LeftButton)
    assert dv.remaining() == {"cells": 0, "regions": []}
    assert dock.done_button.text() == "Finish adjudication"
    qtbot.mouseClick(dock.done_button, Qt.LeftButton)
    _wait_job(qtbot, dock)
    assert load_project(project.folder).entry(label).adjudication.status == "adjudicated"

    # 6. closing the slide, then the viewer, releases every lock
    qtbot.mouseClick(dock.close_button, Qt.LeftButton)
    assert not dock.workspace.items and not list(Path(project.folder).rglob("*.lock"))
    dock.set_reviewer("alice")
    qtbot.mouseClick(dock.next_button, Qt.LeftButton)
    nxt = _wait_open(qtbot, dock)
    assert nxt.label != label and read_lock(project.read_path(nxt.label, "alice")).owner == "alice"
    viewer.close()
    assert not list(Path(project.folder).rglob("*.lock"))
