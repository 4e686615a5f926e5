"""Segmentation edits are refused on a review project's slides (their cell mask is shared by every
reader): headless, the editor raises a SampleError naming the slide and why; other samples edit."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import session_for, workspace_for  # noqa: E402
from napari_carspatial.editing import SegmentationEditor  # noqa: E402
from napari_carspatial.editing.segmentation import review_read_only, save_corrected  # noqa: E402
from napari_carspatial.model import SampleError  # noqa: E402
from napari_carspatial.review import init_project  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, size=96, image=False)["manifest"]


@pytest.fixture
def workspace(tmp_path, cohort, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob", "carol"], due="2099-12-31")
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    v = ViewerModel()
    ws = workspace_for(v)
    ws.open_project(proj.folder)
    session_for(v).set_reviewer("alice")
    yield ws
    ws.close_all()


def test_a_project_read_refuses_segmentation_edits(workspace, tmp_path):
    item = workspace.open(workspace.next_label())
    s = item.sample
    reason = review_read_only(s)
    assert reason and "review project" in reason and ("read 1" in reason or "read 2" in reason)
    ed = SegmentationEditor(s)
    assert ed.read_only == reason
    mask_before = np.asarray(s.labels[0]).copy()
    with pytest.raises(SampleError, match=f"sample .{s.name}..*refused: it is read .* of a review project") as err:
        ed.region(0, 50, 0, 50)
    assert "outside the review project" in (err.value.hint or "")
    with pytest.raises(SampleError, match="review project"):
        save_corrected(ed, tmp_path / "out.h5ad")
    assert not ed.store_ready                           # nothing was opened for editing
    np.testing.assert_array_equal(np.asarray(s.labels[0]), mask_before)


def test_other_samples_still_edit(tmp_path):
    from napari_carspatial.datasets import demo_sample

    s = demo_sample(size=96, image=False)
    assert review_read_only(s) is None
    ed = SegmentationEditor(s)
    assert ed.read_only is None
    r = ed.region(0, 40, 0, 40)
    assert r.data.shape == (40, 40)
    ed.set_read_only("the slide is locked")
    with pytest.raises(SampleError, match="the slide is locked"):
        ed.commit(r)
