"""Slides without a pyramid (issue 16) in the GUI: the first open shows the lazy strided levels at
once, the Samples dock caches a pyramid in a worker (progress, cancel) and switches the layers to
it (same pixels); the second open reads the cached levels straight away and starts no job."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_carspatial._napari import META_ROLE, session_for
from napari_carspatial.io import pyramid_cache as pc


@pytest.fixture()
def flat(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(2)
    img = rng.integers(0, 60000, (2, 4500, 2100), dtype=np.uint16)
    path = tmp_path / "flat.ome.tif"
    tifffile.imwrite(path, img, ome=True, tile=(256, 256), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3"]}})
    return path, img


def _from_cache(arr) -> bool:
    """The dask array reads a zarr array in the pyramid cache folder, not the TIFF."""
    entry = str(pc.cache_root())
    return any(entry in repr(v) for v in arr.dask.values() if type(v).__module__.startswith("zarr"))


def _images(viewer):
    return [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "image"]


def _dock(viewer, qtbot):
    from napari_carspatial.widgets.sample_widget import SampleWidget

    w = SampleWidget(viewer)
    qtbot.addWidget(w)
    return w


def _rows(dock):
    top = dock.tree.topLevelItem(0)
    return {top.child(i).text(0): top.child(i).text(1) for i in range(top.childCount())}


def test_first_open_caches_then_second_open_uses_the_cache(make_napari_viewer_proxy, qtbot, flat):
    path, img = flat
    viewer = make_napari_viewer_proxy()
    dock = _dock(viewer, qtbot)
    with qtbot.waitSignal(dock.jobs.pyramid_cached, timeout=60000):
        viewer.open(str(path), plugin="napari-carspatial")
        assert [len(ly.data) for ly in _images(viewer)] == [3, 3]     # strided levels first
        limits = [tuple(ly.contrast_limits) for ly in _images(viewer)]
        qtbot.waitUntil(lambda: dock.jobs.running, timeout=10000)
        assert dock.measure_progress.isVisibleTo(dock) and "Caching a pyramid" in dock.measure_status.text()
        assert "caching one" in _rows(dock)["pyramid levels"]
    layers = _images(viewer)
    assert [len(ly.data) for ly in layers] == [4, 4]                  # the cached pyramid, to <= 1024 px
    for c, ly in enumerate(layers):
        assert _from_cache(ly.data[3]) and _from_cache(ly.data[1]) and not _from_cache(ly.data[0])
        np.testing.assert_array_equal(np.asarray(ly.data[3]), img[c, ::8, ::8])
        np.testing.assert_array_equal(np.asarray(ly.data[1]), img[c, ::2, ::2])
    assert [tuple(ly.contrast_limits) for ly in layers] == limits     # the look did not change
    s = session_for(viewer).sample_of(layers[0])
    assert len(s.image) == 4
    assert "cached" in _rows(dock)["pyramid levels"]
    assert "Cached a 4-level pyramid" in dock.measure_status.text()

    viewer2 = make_napari_viewer_proxy()
    dock2 = _dock(viewer2, qtbot)
    viewer2.open(str(path), plugin="napari-carspatial")
    assert [len(ly.data) for ly in _images(viewer2)] == [4, 4]        # from the cache right away
    assert _from_cache(_images(viewer2)[0].data[1])
    qtbot.wait(50)
    assert not dock2.jobs.running and not dock2.jobs.queue


def test_cancel_keeps_the_strided_levels(make_napari_viewer_proxy, qtbot, flat):
    path, _ = flat
    viewer = make_napari_viewer_proxy()
    dock = _dock(viewer, qtbot)
    dock.auto_pyramid.setChecked(False)
    viewer.open(str(path), plugin="napari-carspatial")
    sid = next(iter(session_for(viewer).samples()))
    assert dock.jobs.cache_pyramid(sid)
    assert not dock.jobs.cache_pyramid(sid)                           # queued once
    with qtbot.waitSignal(dock.jobs.worker.finished, timeout=60000):
        dock.cancel_button.click()
    assert [len(ly.data) for ly in _images(viewer)] == [3, 3]
    s = session_for(viewer).sample(sid)
    assert not pc.cache_path(path, s.image[0]).exists() and not list(pc.cache_root().glob(".*.tmp"))
    assert "cancelled" in dock.measure_status.text()
