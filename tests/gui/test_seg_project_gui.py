"""The Segmentation dock refuses edits on a review project's slide with one clear line (the mask is
shared by every reader), and keeps editing other samples of the same viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial._napari import session_for, workspace_for
from napari_carspatial.review import init_project


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=96, image=False)["manifest"]


def test_segmentation_dock_refuses_a_project_slide(make_napari_viewer_proxy, qtbot, cohort, tmp_path, monkeypatch):
    from napari_carspatial._napari import add_sample_layers
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets.segmentation import SegmentationWidget

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob", "carol"], due="2099-12-31")
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    viewer = make_napari_viewer_proxy()
    ws = workspace_for(viewer)
    ws.open_project(proj.folder)
    session_for(viewer).set_reviewer("alice")
    item = ws.open(ws.next_label())
    w = SegmentationWidget(viewer)
    qtbot.addWidget(w)
    w.sample_box.setCurrentIndex(w.sample_box.findData(item.sid))
    assert w.sid == item.sid
    line = w.region_view.read_only_label
    assert not line.isHidden()
    assert item.label in line.text() and "review project" in line.text() and "shared by every reader" in line.text()
    assert not w.region_view.view_button.isEnabled() and not w.region_view.rect_button.isEnabled()
    assert not w.commit_view.save_button.isEnabled()
    assert w.region_view.edit_view() is None and w.region_view.edit_rect(0, 0, 40, 40, wait=True) is None
    assert w.edit is None and not w.editor.store_ready
    # another sample of the same viewer is edited as usual
    other = demo_sample(size=96, image=False)
    add_sample_layers(viewer, other)
    sid = session_for(viewer).register(other)
    w.sample_box.setCurrentIndex(w.sample_box.findData(sid))
    assert line.isHidden() and w.region_view.rect_button.isEnabled()
    r = w.region_view.edit_rect(0, 0, 40, 40, wait=True)
    assert r is not None and np.asarray(r.data).shape == (40, 40)
    w.region_view.close_region(wait=True)
    w.cleanup()
    ws.close_all()
