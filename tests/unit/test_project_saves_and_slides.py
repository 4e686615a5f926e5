"""Headless (napari's Qt-free ViewerModel): a read's save announces itself once on the main thread
(the session's ``saved`` event, the workspace's ``changed``), also when it ran in a worker; the
workspace adds samples from a manifest; a project slide says why its segmentation may not be
edited, by id, sample, layer or name, and only while it is open."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import (  # noqa: E402
    SEGMENTATION_REFUSED,
    is_project_sample,
    project_item,
    segmentation_refusal,
    session_for,
    workspace_for,
)
from napari_carspatial.model import SampleError  # noqa: E402
from napari_carspatial.review import init_project, load_project  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=100, image=False)["manifest"]


@pytest.fixture
def opened(tmp_path, cohort, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    v = ViewerModel()
    ws = workspace_for(v)
    ws.open_project(proj.folder)
    session_for(v).set_reviewer("alice")
    item = ws.open(ws.next_label())
    saved, changed = [], []
    ws.session.events.saved.connect(lambda e: saved.append((e.sid, e.path, e.kind, threading.current_thread())))
    ws.events.changed.connect(lambda e: changed.append(1))
    return proj, v, ws, item, saved, changed


def test_saves_are_announced_once_on_the_main_thread(opened):
    proj, v, ws, item, saved, changed = opened
    core = ws.core(item.label)
    path = proj.read_path(item.label, "alice")
    core.select(np.arange(3))
    core.assign("CAR T")
    # on the main thread (the headless "Save read 1"): at once, once
    assert core.save_to_target() == path
    assert [(s[0], s[1], s[2]) for s in saved] == [(item.sid, str(path), "read")] and len(changed) == 1
    assert ws.assignments().set_index("label").loc[item.label, "progress"] == round(3 / core.table.n_obs, 4)

    # in a worker (as the Curation dock's Save): the sample is busy; announced when it is idle again
    core.select(np.arange(3, 6))
    core.assign("Tumor")
    ws.session.set_busy(item.sid, "saving")
    t = threading.Thread(target=lambda: core.save_target.save(core))
    t.start()
    t.join()
    assert len(saved) == 1 and len(changed) == 1              # nothing from the worker thread
    ws.session.set_busy(item.sid, None)
    assert len(saved) == 2 and saved[1][3] is threading.main_thread() and len(changed) == 2
    ws.session.set_busy(item.sid, "something else")
    ws.session.set_busy(item.sid, None)
    assert len(saved) == 2                                     # announced once

    # the Project dock's path (save_job in a worker, saved() on the main thread): once
    core.select(np.arange(6, 8))
    core.assign("Tumor")
    out = ws.save_job(item.label)()
    ws.saved(item.label, out)
    ws.session.set_busy(item.sid, None)
    assert len(saved) == 3 and len(changed) == 3
    assert load_project(proj.folder).entry(item.label).read_of("alice").progress == round(8 / core.table.n_obs, 4)
    ws.finish(item.label)                                      # Mark done: announced too
    assert len(saved) == 4 and load_project(proj.folder).entry(item.label).read_of("alice").status == "done"


def test_a_project_slide_refuses_segmentation_edits(opened):
    proj, v, ws, item, _saved, _changed = opened
    session = ws.session
    mask = session.labels_layer(item.sid)
    for what in (item.sid, item.sample, mask, item.label):
        assert project_item(v, what) is item and is_project_sample(session, what)
    reason = segmentation_refusal(v, item.sid)
    assert reason == f"{item.label} is a review project slide (read 1): {SEGMENTATION_REFUSED}"
    assert item.label.startswith("RV-") and "P01" not in reason and "P02" not in reason   # blinded
    assert not mask.editable                                   # napari's paint tools are off
    # another sample in the same viewer is not a project slide; a viewer without a project neither
    from napari_carspatial._napari import add_sample_layers
    from napari_carspatial.io import read_sample

    row = pd.read_csv(proj.manifest_path).iloc[1]
    other = read_sample(proj.manifest_path.parent / row["table"])
    add_sample_layers(v, other)
    sid = session.register(other)
    assert segmentation_refusal(v, sid) is None and segmentation_refusal(v, other) is None
    assert segmentation_refusal(ViewerModel(), "anything") is None
    ws.close(item.label)
    assert segmentation_refusal(v, item.sid) is None and not is_project_sample(v, item.label)


def test_the_workspace_adds_samples_from_a_manifest(cohort, tmp_path):
    full = pd.read_csv(cohort, dtype=str, keep_default_na=False)
    for c in ("table", "mask"):
        full[c] = [str((cohort.parent / x).resolve()) for x in full[c]]
    full.iloc[:2].to_csv(tmp_path / "manifest.csv", index=False)
    full.iloc[[1, 2, 3]].to_csv(tmp_path / "new.csv", index=False)
    proj = init_project(tmp_path / "proj", tmp_path / "manifest.csv", reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    viewer = ViewerModel()          # held: the workspace lives only as long as its viewer's session
    ws = workspace_for(viewer)
    with pytest.raises(SampleError, match="no review project is open"):
        ws.add_samples_from(tmp_path / "new.csv")
    ws.open_project(proj.folder)
    ws.session.set_reviewer("alice")
    changed = []
    ws.events.changed.connect(lambda e: changed.append(1))
    text = ws.add_samples_from(tmp_path / "new.csv")
    assert text == (f"2 samples added, assigned like the others; {full['sample'][1]} is in the project already; "
                    "not added. You read 2 of them: you know their codes are the new ones, so the read is not blind "
                    "to which samples were added late.")
    assert len(changed) == 1 and len(ws.project.samples) == 4 and len(ws.assignments()) == 4
    assert ws.add_samples_from(tmp_path / "manifest.csv") == "no new samples to add."   # the project's own
    with pytest.raises(SampleError, match="not found"):
        ws.add_samples_from(tmp_path / "nowhere.csv")
