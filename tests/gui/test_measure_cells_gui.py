"""Measure cells in the GUI (issue 12), montages in ``carspatial open``, outlines without docks.

* an image + mask without a table (a real steinbock acquisition, copied without its table) opens
  with its layers first; the Samples dock then measures the cells in a worker and the table
  reaches the hover, the legend and the inspector through the session; the cell count equals
  steinbock's own table of that acquisition;
* "Measure cells" for a sample already loaded, and Cancel (nothing stored);
* File > Open of a steinbock folder without intensities: one montage, measured: 404 cells with
  each acquisition named;
* ``carspatial open`` (``widgets.progressive``) arranges a multi-acquisition folder as File > Open
  does: one montage with named tiles;
* File > Open without any of our docks draws the cells as outlines at once.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari import META_ROLE, session_for
from napari_carspatial.model import Sample

NAME = "20210305_NE_mockData2_001"


def _labels(viewer):
    return [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "labels"]


@pytest.fixture
def acquisition(tmp_path, steinbock_dir):
    """One real steinbock acquisition as image + mask, without its table (copied)."""
    img = tmp_path / f"{NAME}.tiff"
    mask = tmp_path / f"{NAME}_mask.tiff"
    shutil.copy(steinbock_dir / "img" / f"{NAME}.tiff", img)
    shutil.copy(steinbock_dir / "masks_deepcell" / f"{NAME}.tiff", mask)
    n_ref = len(pd.read_csv(steinbock_dir / "intensities_deepcell" / f"{NAME}.csv"))
    return img, mask, n_ref


def _dock(viewer, qtbot, *, auto=True):
    from napari_carspatial.widgets.sample_widget import SampleWidget

    w = SampleWidget(viewer)
    qtbot.addWidget(w)
    w.auto_measure.setChecked(auto)
    return w


def test_open_image_and_mask_measures_in_a_worker(make_napari_viewer_proxy, qtbot, acquisition):
    from napari_carspatial.widgets.inspector import InspectorWidget
    from napari_carspatial.widgets.legend import LegendWidget

    img, mask, n_ref = acquisition
    viewer = make_napari_viewer_proxy()
    dock = _dock(viewer, qtbot)
    legend = LegendWidget(viewer)
    inspector = InspectorWidget(viewer)
    qtbot.addWidget(legend)
    qtbot.addWidget(inspector)
    assert legend.empty.isVisibleTo(legend) and "Measure cells" in legend.empty.text()
    session = session_for(viewer)
    seen_without_table = []
    session.events.sample_added.connect(lambda e: seen_without_table.append(e.sample.table is None))

    dock.image_path.edit.setText(str(img))
    dock.mask_path.edit.setText(str(mask))
    with qtbot.waitSignal(dock.jobs.measured, timeout=60000):
        dock.open_button.click()
        # the layers come first, the table after
        qtbot.waitUntil(lambda: bool(_labels(viewer)), timeout=30000)
        assert seen_without_table == [True]
    lab = _labels(viewer)[0]
    sample = session.sample_of(lab)
    assert sample.n_cells == n_ref == 55                 # steinbock's own table of this acquisition
    assert sample.metadata["table_source"] == "measured from the mask"
    assert session.busy(session.sid_of(sample)) is None
    assert len(lab.features) == n_ref and "index" in lab.features   # hover knows every cell
    sid = session.sid_of(sample)
    assert legend.sample_box.findData(sid) >= 0 and not legend.empty.isVisibleTo(legend)
    assert inspector.sample_combo.findData(sid) >= 0
    assert not dock.measure_progress.isVisibleTo(dock)
    assert "Measured 55 cells" in dock.measure_status.text()
    rows = {dock.tree.topLevelItem(0).child(i).text(0): dock.tree.topLevelItem(0).child(i).text(1)
            for i in range(dock.tree.topLevelItem(0).childCount())}
    assert rows["cells"] == "55"
    assert lab.contour == 1


def test_measure_action_and_cancel(make_napari_viewer_proxy, qtbot, acquisition):
    from napari_carspatial._napari import add_sample_layers
    from napari_carspatial.io import read_sample

    img, mask, n_ref = acquisition
    viewer = make_napari_viewer_proxy()
    dock = _dock(viewer, qtbot, auto=False)
    session = session_for(viewer)
    s = read_sample(img, mask=mask, measure=False)
    add_sample_layers(viewer, s)
    assert s.table is None and dock.measure_button.isEnabled()
    with qtbot.waitSignal(dock.jobs.measured, timeout=60000):
        assert dock.measure_selected()
    assert s.n_cells == n_ref
    assert not dock.measure_button.isEnabled()          # it has a table now
    assert not dock.measure_selected()                  # and is not measured over

    # Cancel: a larger in-memory sample (6 tiles); nothing is stored, the sample is idle again
    rng = np.random.default_rng(0)
    lab = np.zeros((2048, 3072), np.uint32)
    lab[8::24, :] = 0
    k = 0
    for y in range(4, 2040, 24):
        for x in range(4, 3064, 24):
            k += 1
            lab[y:y + 12, x:x + 12] = k
    big = Sample("big", image=[rng.integers(0, 200, (2, 2048, 3072)).astype(np.uint16)],
                 channel_names=["DNA1", "CD3"], labels=[lab]).validate()
    add_sample_layers(viewer, big)
    sid = session.sid_of(big)
    dock.tree.setCurrentItem(next(dock.tree.topLevelItem(i) for i in range(dock.tree.topLevelItemCount())
                                  if dock.tree.topLevelItem(i).text(0) == "big"))
    assert dock.measure_selected()
    assert dock.measure_progress.isVisibleTo(dock) and dock.cancel_button.isVisibleTo(dock)
    assert session.busy(sid)
    with qtbot.waitSignal(dock.jobs.worker.finished, timeout=60000):
        dock.cancel_button.click()
    assert big.table is None
    assert session.busy(sid) is None
    assert "cancelled" in dock.measure_status.text()
    assert dock.measure_button.isEnabled()              # it can be measured again


def test_file_open_steinbock_without_table_is_measured_as_a_montage(make_napari_viewer_proxy, qtbot, tmp_path,
                                                                   steinbock_dir):
    folder = tmp_path / "steinbock"
    folder.mkdir()
    for part in ("img", "masks_deepcell"):
        shutil.copytree(steinbock_dir / part, folder / part)
    for f in ("panel.csv", "images.csv"):
        shutil.copy(steinbock_dir / f, folder / f)
    viewer = make_napari_viewer_proxy()
    dock = _dock(viewer, qtbot)
    with qtbot.waitSignal(dock.jobs.measured, timeout=120000):
        viewer.open(str(folder), plugin="napari-carspatial")
    (lab,) = _labels(viewer)
    m = session_for(viewer).sample_of(lab)
    assert m.n_cells == 404                           # steinbock's deepcell cells, all acquisitions
    t = m.table
    assert t.obs["acquisition"].nunique() == 15
    ref = pd.read_csv(steinbock_dir / "intensities_deepcell" / f"{NAME}.csv")
    assert int((t.obs["acquisition"] == NAME).sum()) == len(ref)
    assert sorted(t.obs.loc[t.obs["acquisition"] == NAME, "source_cell_id"]) == sorted(ref["Object"])


def test_progressive_open_makes_the_montage_file_open_makes(make_napari_viewer_proxy, qtbot, steinbock_dir):
    """``carspatial open FOLDER`` (add_samples_progressively) = File > Open: one montage sample,
    one layer per channel, one cell layer, 15 named tiles."""
    from napari_carspatial.io import read_sample
    from napari_carspatial.widgets.progressive import add_samples_progressively

    ref_viewer = make_napari_viewer_proxy()
    ref_viewer.open(str(steinbock_dir), plugin="napari-carspatial")
    want = sorted(ly.name for ly in ref_viewer.layers)

    viewer = make_napari_viewer_proxy()
    done = []
    add_samples_progressively(viewer, read_sample(steinbock_dir), on_done=lambda: done.append(1))
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert sorted(ly.name for ly in viewer.layers) == want
    (lab,) = _labels(viewer)
    assert session_for(viewer).sample_of(lab).n_cells == 404
    tiles = next(ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "tiles")
    ref_tiles = next(ly for ly in ref_viewer.layers if ly.metadata.get(META_ROLE) == "tiles")
    assert list(tiles.features["acquisition"]) == list(ref_tiles.features["acquisition"])
    assert len(tiles.data) == 15 and tiles.text.string.format == "{acquisition}"
    for a, b in zip(tiles.data, ref_tiles.data, strict=True):
        np.testing.assert_allclose(a, b)
    # the cell layer is on top of every channel, the tiles layer on top of all
    names = [ly.name for ly in viewer.layers]
    assert names.index(lab.name) > max(names.index(n) for n in ["Ag107", "YBX1", "H3K27Ac"])


def test_file_open_without_docks_draws_outlines(make_napari_viewer_proxy, steinbock_dir):
    """No dock, hence no session: the cells are outlines straight away (not filled grey), and
    the first view shows every acquisition with its name (napari fits the first layer only)."""
    from napari_carspatial._napari import session as session_module
    from napari_carspatial._napari import visible_world_rect
    from napari_carspatial._napari.reader import read_path

    out = read_path(str(steinbock_dir))                     # no viewer needed
    assert [type(d).__name__ if not isinstance(d, tuple) else d[2] for d in out] == \
        ["shapes", "image", "Labels"]
    viewer = make_napari_viewer_proxy()
    viewer.window.resize(1600, 1000)
    viewer.open(str(steinbock_dir), plugin="napari-carspatial")
    assert hash(viewer) not in session_module._sessions     # nobody made a session
    (lab,) = _labels(viewer)
    assert lab.contour == 1
    assert lab.metadata.get("carspatial_sample")
    tiles = viewer.layers[0]
    assert tiles.metadata.get(META_ROLE) == "tiles"
    y0, x0, y1, x1 = visible_world_rect(viewer)
    corners = np.concatenate([np.asarray(r) for r in tiles.data])   # name bands included
    assert corners[:, 0].min() >= y0 - 1e-6 and corners[:, 0].max() <= y1 + 1e-6
    assert corners[:, 1].min() >= x0 - 1e-6 and corners[:, 1].max() <= x1 + 1e-6
    # a dock opened later still finds the sample and its table
    assert session_for(viewer).sample_of(lab).n_cells == 404
    assert _labels(viewer)[0].contour == 1
