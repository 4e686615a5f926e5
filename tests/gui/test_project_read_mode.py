"""A read opened from the Project dock puts the Curation dock in the read's mode: a project that
hides the original calls shows none (the classes are still offered), Save is "Save read 1" and
writes the working copy through ``ReadSession.save`` in a worker thread (progress, the slide busy,
the GUI thread free, a notification naming the file; a failed write loses nothing), autosave/recovery
are keyed by the working copy, a submitted read is read-only, and closing the viewer releases the lock."""

from __future__ import annotations

import threading

import anndata as ad
import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_carspatial._napari import session_for
from napari_carspatial.review import init_project, load_project, read_lock


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=120, image=False)["manifest"]


def test_hidden_calls_read_through_the_docks(make_napari_viewer_proxy, qtbot, cohort, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_carspatial.widgets.curation import CurationWidget
    from napari_carspatial.widgets.project import ProjectWidget

    notes, infos, errors = [], [], []
    monkeypatch.setattr(notifications, "show_warning", lambda msg: notes.append(str(msg)))
    monkeypatch.setattr(notifications, "show_info", lambda msg: infos.append(str(msg)))
    monkeypatch.setattr(notifications, "show_error", lambda msg: errors.append(str(msg)))
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob"], hide_original_calls=True)
    proj.assign(None, readers=("alice", "bob"))
    viewer = make_napari_viewer_proxy()
    dock, cur = ProjectWidget(viewer), CurationWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Project", area="right")
    viewer.window.add_dock_widget(cur, name="Curation", area="right")
    assert dock.open_project(proj.folder)
    dock.set_reviewer("alice")
    dock.open_label(dock.workspace.next_label(), in_worker=False)
    item = dock.current
    assert item is not None and item.role == "read 1"
    label = item.label

    # no original call anywhere: the table, the cells' colours; the classes are offered
    obs = cur.core.table.obs
    assert obs["cell_type"].isna().all() and obs["cell_type_curated"].isna().all()
    offered = [cur.cells.type_box.itemText(i) for i in range(cur.cells.type_box.count())]
    assert {"Tumor", "CAR T", "Macrophage"} <= set(offered)
    labels = session_for(viewer).labels_layer(item.sid)
    assert labels is not None and label in labels.name

    # Save is the read's: the working copy, the reader's audit rows, under alice's lock
    assert cur.saving.save_button.text() == "Save read 1"
    path = proj.read_path(label, "alice")
    assert cur.core.recovery.key()[0] == str(path)
    cur.view.select(np.arange(4))
    assert cur.assign("CAR T") is not None
    _save_read_in_a_worker(dock, cur, qtbot, monkeypatch, path, infos, errors, notes)
    wc = ad.read_h5ad(path)
    calls = wc.obs["cell_type_curated"].astype(object).to_numpy()
    assert (calls[:4] == "CAR T").all() and all(c != c for c in calls[4:])   # the rest: still no call
    assert read_lock(path).owner == "alice"

    # submitted: read-only everywhere
    dock.workspace.finish(label)
    assert cur.core.read_only and not cur.saving.save_button.isEnabled()
    cur.view.select(np.arange(4, 8))
    assert cur.assign("Tumor") is None and any("read-only" in m for m in notes)
    assert load_project(proj.folder).entry(label).read_of("alice").status == "done"

    # bob's read: open it, then close the viewer; the lock goes with it
    dock.set_reviewer("bob")
    dock.open_label(label, in_worker=False)
    assert dock.current is not None and dock.current.writable
    assert cur.core.table.obs["cell_type_curated"].isna().all()      # nothing of alice's
    bob_path = proj.read_path(label, "bob")
    assert read_lock(bob_path).owner == "bob"
    viewer.close()
    assert read_lock(bob_path) is None and not list(proj.folder.rglob("*.lock"))


def _save_read_in_a_worker(dock, cur, qtbot, monkeypatch, path, infos, errors, notes):
    """"Save read 1": a failed write is an error naming the file and loses nothing; the write runs
    in a worker (held here on an event) while the GUI thread turns, the slide is busy and the
    Project dock's Save waits; then the file is written and the notification names it."""
    import napari_carspatial.review.reads as reads

    real, release, seen = reads._write_wc, threading.Event(), {}

    def broken(adata, p):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reads, "_write_wc", broken)
    cur.saving.save_to_target()
    qtbot.waitUntil(lambda: not cur.saving.busy, timeout=10000)
    assert not path.exists() and any(str(path) in m and "No space" in m for m in errors)
    assert (cur.core.table.obs["cell_type_curated"].astype(object).to_numpy()[:4] == "CAR T").all()
    assert cur.core.autosaver.pending and cur.saving.save_button.isEnabled()

    def held(adata, p):
        seen["thread"] = threading.current_thread()
        assert release.wait(20), "the test never released the write"
        return real(adata, p)

    monkeypatch.setattr(reads, "_write_wc", held)
    qtbot.mouseClick(cur.saving.save_button, Qt.LeftButton)
    try:
        qtbot.waitUntil(lambda: "thread" in seen, timeout=10000)
        sid = cur.view.sid
        assert cur.saving.busy and cur.session.busy(sid) == "saving" and not cur.saving.save_button.isEnabled()
        qtbot.waitUntil(lambda: "writing" in cur.saving.progress_label.text(), timeout=20_000)
        assert path.name in cur.saving.progress_label.text() and not cur.saving.progress.isHidden()
        assert cur.saving.save_button.isHidden()                 # the progress takes the buttons' row
        assert not cur.saving.cancel_button.isEnabled()          # the write started: it finishes, atomically
        ticks = []
        QTimer.singleShot(0, lambda: ticks.append(1))            # the event loop runs while the write waits
        qtbot.waitUntil(lambda: bool(ticks), timeout=20_000)
        assert cur.assign("Tumor") is None                       # edits wait for the write
        assert dock.save() is None and any("busy (saving)" in m for m in notes)   # no second writer
        assert not path.exists()
    finally:
        release.set()
    qtbot.waitUntil(lambda: not cur.saving.busy, timeout=20000)
    assert seen["thread"] is not threading.main_thread() and cur.saving.last_job.thread != threading.main_thread().name
    assert cur.saving.saved_path == path and cur.session.busy(sid) is None and cur.saving.progress.isHidden()
    assert any(str(path) in m for m in infos) and not cur.core.autosaver.pending
