"""The Curation dock's Save runs off the GUI thread: the table write and the provenance checksums
happen in a worker, the GUI keeps processing events meanwhile, the sample is busy for every
dock, progress is shown, and Cancel before the write leaves nothing behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_carspatial._napari import session_for
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.io import read_sample


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    from napari_carspatial.datasets import write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), size=256, seed=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    from napari_carspatial.io import write as w

    w.clear_checksum_cache()
    return tmp_path


def _dock(viewer, qtbot, files):
    from napari_carspatial.widgets.curation import CurationWidget

    s = read_sample(files["image"], mask=files["mask"], table=files["table"])
    add_sample_layers(viewer, s)
    session_for(viewer).register(s)
    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    w.set_reviewer("tester")
    return s, w


def test_save_runs_in_a_worker_while_the_gui_thread_stays_free(make_napari_viewer_proxy, qtbot, demo_files, cache,
                                                               monkeypatch):
    import napari_carspatial.io.write as wmod

    viewer = make_napari_viewer_proxy()
    s, w = _dock(viewer, qtbot, demo_files)
    w.view.select(np.arange(5))
    w.assign("Doublet")
    release = threading.Event()
    seen: dict = {}
    real = wmod.write_table

    def slow_write(*a, **k):
        seen["thread"] = threading.current_thread()
        assert release.wait(20), "the test never released the write"
        return real(*a, **k)

    monkeypatch.setattr(wmod, "write_table", slow_write)
    target = cache / "saved.h5ad"
    try:
        _save_while_blocked(w, qtbot, target, seen, release)
    finally:
        release.set()
        w.saving.wait(30)
    w.cleanup()


def _save_while_blocked(w, qtbot, target, seen, release):
    assert w.saving.save(target) is None            # returns at once: the worker writes
    sid = w.view.sid
    assert w.saving.busy and w.session.busy(sid) == "saving"
    assert not w.saving.progress.isHidden() and not w.saving.cancel_button.isHidden()
    qtbot.waitUntil(lambda: "thread" in seen, timeout=10000)
    ticks = []
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: ticks.append(1))   # the event loop runs while the write waits
    qtbot.waitUntil(lambda: bool(ticks), timeout=20_000)
    assert w.assign("CAR T") is None                # edits wait while the table is written
    assert not target.exists()
    release.set()
    qtbot.waitUntil(lambda: w.saving.saved_path == target, timeout=20000)
    qtbot.waitUntil(lambda: not w.saving.busy, timeout=20_000)
    assert seen["thread"] is not threading.main_thread()
    assert w.saving.last_job.thread != threading.main_thread().name
    assert target.exists() and w.session.busy(sid) is None
    assert w.saving.progress.isHidden()
    assert "Saved to" in w.status.text()
    from napari_carspatial.io import read_table

    back = read_table(target)
    assert (back.obs["cell_type_curated"].astype(str).to_numpy()[:5] == "Doublet").all()
    prov = back.uns["carspatial"]["provenance"]
    assert len(prov["image"]["sha256"]) == 64        # the checksum was computed in the worker


def test_cancel_during_the_checksums_writes_nothing(make_napari_viewer_proxy, qtbot, demo_files, cache, monkeypatch):
    import time

    import napari_carspatial.io.write as wmod

    viewer = make_napari_viewer_proxy()
    s, w = _dock(viewer, qtbot, demo_files)
    started = threading.Event()

    def slow_provenance(paths, *, progress=None):
        for i in range(10_000):
            started.set()
            progress(i, 10_000)          # raises once Cancel was pressed
            time.sleep(0.002)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(wmod, "checksums_pending", lambda paths: 10_000)
    monkeypatch.setattr(wmod, "provenance", slow_provenance)
    target = cache / "never.h5ad"
    w.saving.save(target)
    assert started.wait(10)
    qtbot.waitUntil(lambda: "of" in w.saving.progress.format(), timeout=20_000)   # MB done of MB
    w.saving.cancel_button.click()
    qtbot.waitUntil(lambda: not w.saving.busy, timeout=10000)
    assert not target.exists()
    assert "cancelled" in w.status.text()
    assert w.session.busy(w.view.sid) is None
    w.cleanup()
