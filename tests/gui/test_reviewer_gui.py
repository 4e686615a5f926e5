"""The reviewer is a field in the Curation header, set once, remembered; no dialog ever interrupts
an edit (issue 14, item 7)."""

from __future__ import annotations

import numpy as np
import pytest
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for


@pytest.fixture
def no_dialogs(monkeypatch):
    """Any modal dialog fails the test (and is recorded)."""
    from qtpy.QtWidgets import QDialog, QInputDialog, QMessageBox

    opened = []

    def fail(*args, **kwargs):
        opened.append(args)
        raise AssertionError("a modal dialog was opened")

    for name in ("getText", "getItem", "getInt", "getDouble"):
        monkeypatch.setattr(QInputDialog, name, staticmethod(fail))
    for name in ("question", "warning", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(fail))
    monkeypatch.setattr(QDialog, "exec", fail)
    monkeypatch.setattr(QDialog, "exec_", fail, raising=False)
    return opened


def _dock(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.curation import CurationWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    return viewer, sample, w


def test_no_modal_dialog_during_assign(make_napari_viewer_proxy, qtbot, no_dialogs, monkeypatch, tmp_path):
    monkeypatch.setenv("CARSPATIAL_CONFIG_DIR", str(tmp_path))   # nothing remembered yet
    monkeypatch.delenv("CARSPATIAL_REVIEWER", raising=False)
    from napari_carspatial.model import default_reviewer

    viewer, sample, w = _dock(make_napari_viewer_proxy, qtbot)
    assert w.header.reviewer_edit.text() == default_reviewer()      # the OS user, shown in the field
    w.view.core.select_ids(np.asarray(sample.table.obs["cell_id"])[:3])
    cmd = w.assign("Tumor")                                         # the very first edit
    assert cmd is not None
    assert no_dialogs == []
    log = w.core.audit()
    assert list(log["reviewer"]) == [default_reviewer()]


def test_reviewer_typed_once_is_used_and_remembered(make_napari_viewer_proxy, qtbot, no_dialogs, monkeypatch,
                                                    tmp_path):
    monkeypatch.setenv("CARSPATIAL_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("CARSPATIAL_REVIEWER", raising=False)
    viewer, sample, w = _dock(make_napari_viewer_proxy, qtbot)
    w.header.reviewer_edit.setText("Dr Ada Path")
    w.header.reviewer_edit.editingFinished.emit()
    assert session_for(viewer).reviewer == "Dr Ada Path"
    w.view.core.select_ids(np.asarray(sample.table.obs["cell_id"])[:2])
    w.assign("Macrophage")
    assert list(w.core.audit()["reviewer"]) == ["Dr Ada Path"]
    assert (tmp_path / "settings.json").exists()
    # a new viewer (next session) starts with the remembered name, still without a dialog
    viewer2, _, w2 = _dock(make_napari_viewer_proxy, qtbot)
    assert w2.header.reviewer_edit.text() == "Dr Ada Path"
    assert session_for(viewer2).reviewer == "Dr Ada Path"
    assert no_dialogs == []
