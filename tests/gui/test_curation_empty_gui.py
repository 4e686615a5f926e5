"""The Curation dock without a sample says nothing about the last one.

Closing the slide (its layers removed: a project read's slide closed, or the user deleting the
layers) left the header showing the gone sample's progress ("28 of 122 cells (23.0%)", the
re-labelled line, the case tooltip) and the status "Saved to …" over an empty sample box.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial._napari import session_for
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.io import read_sample


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    from napari_carspatial.datasets import write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), size=256, seed=3)


def test_header_and_status_cleared_when_the_sample_goes(make_napari_viewer_proxy, qtbot, demo_files, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    from napari_carspatial.widgets.curation import CurationWidget

    viewer = make_napari_viewer_proxy()
    s = read_sample(demo_files["image"], mask=demo_files["mask"], table=demo_files["table"])
    add_sample_layers(viewer, s)
    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    w.set_reviewer("Dr Test")
    n = s.table.n_obs
    rows = np.zeros(n, dtype=bool)
    rows[: max(1, n // 4)] = True
    w.view.select(rows)
    assert w.confirm() is not None
    bar = w.header.progress_bar
    assert bar.text().startswith(f"{rows.sum():,} of {n:,} cells"), bar.text()
    assert w.header.progress_label.text()
    out = w.saving.save(tmp_path / "curated.h5ad", wait=True)
    assert out is not None and w.status.text() == f"Saved to {out}"

    session = session_for(viewer)
    sid = w.view.sid
    for layer in list(session.layers_of(sid)):   # the slide closed: every layer of the sample goes
        viewer.layers.remove(layer)
    qtbot.wait(10)

    assert w.sample_box.count() == 0 and w.view is None
    assert bar.value() == 0 and bar.text() == "", bar.text()
    assert w.header.progress_label.text() == ""
    assert w.header.meta_label.text() == "" and w.header.meta_label.toolTip() == ""
    assert w.status.text() == ""
    assert not w.empty.isHidden()                      # the "Open a sample …" line instead
    assert not w.saving.undo_button.isEnabled()
