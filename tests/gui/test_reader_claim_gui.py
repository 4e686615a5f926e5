"""Our own .zarr stores open without napari asking which plugin should read them, even with
napari-spatialdata installed (it claims every ``*.zarr`` folder, as napari's builtins and we do).

The mechanism is napari's public reader preference (``settings.plugins.extension2reader``), set
on plugin activation (npe2 ``on_activate``) for the names our writers give their stores. The
"Choose reader" dialog has no public hook, so the File > Open check patches the function napari
calls to show it (``napari._qt.qt_viewer.handle_gui_reading``) and asserts it is never called.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("spatialdata")

from napari.components.viewer_model import MultipleReaderError  # noqa: E402
from napari.settings import get_settings  # noqa: E402

from napari_carspatial._napari.reader_claim import (  # noqa: E402
    PLUGIN,
    claim_our_stores,
    claim_store,
    preferred_reader,
    store_patterns,
)
from napari_carspatial.io.sdata_export import export_spatialdata  # noqa: E402
from napari_carspatial.model import Sample  # noqa: E402


def _sample():
    lab = np.zeros((40, 50), np.uint32)
    lab[5:15, 5:15] = 3
    lab[20:35, 25:45] = 9
    table = ad.AnnData(X=np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
                       obs=pd.DataFrame({"cell_id": [3, 9], "cell_type": pd.Categorical(["CAR T", "Tumor"])},
                                        index=["a", "b"]))
    table.var_names = ["CD3", "PanCK"]
    table.obsm["spatial"] = np.array([[10.0, 10.0], [35.0, 27.0]])
    img = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    return Sample("mini", image=[img], channel_names=["CD3", "PanCK"], pixel_size_um=0.5, labels=[lab],
                  table=table).validate()


@pytest.fixture
def stores(tmp_path):
    ours = export_spatialdata(_sample(), tmp_path / "mini.sdata.zarr")
    import shutil

    theirs = tmp_path / "someone_elses.zarr"        # the same SpatialData content, not our name
    shutil.copytree(ours, theirs)
    return ours, theirs


def _other_zarr_reader():
    """napari-spatialdata when installed (the [test] extra), else a stand-in claiming *.zarr folders."""
    import napari.plugins
    from napari.plugins import _npe2

    napari.plugins._initialize_plugins()
    if "napari-spatialdata" in _npe2.get_readers("x.zarr"):
        return "napari-spatialdata"
    import npe2

    mf = npe2.PluginManifest(
        name="standin-spatialdata", display_name="stand-in spatialdata",
        contributions={"commands": [{"id": "standin-spatialdata.get_reader", "title": "read",
                                     "python_name": "napari_carspatial._napari.reader:get_reader"}],
                       "readers": [{"command": "standin-spatialdata.get_reader", "filename_patterns": ["*.zarr"],
                                    "accepts_directories": True}]})
    npe2.PluginManager.instance().register(mf)
    return "standin-spatialdata"


def _ours(viewer):
    return [ly for ly in viewer.layers if "carspatial_sample" in ly.metadata]


def test_our_store_opens_without_a_reader_dialog(make_napari_viewer, stores, monkeypatch):
    ours, theirs = stores
    viewer = make_napari_viewer()            # napari's fixture resets the settings: no preference yet
    other = _other_zarr_reader()
    from napari.plugins import _npe2

    readers = _npe2.get_readers(str(ours))
    assert {PLUGIN, other} <= set(readers) and len(readers) >= 3     # napari builtins too
    assert preferred_reader(ours) is None
    with pytest.raises(MultipleReaderError):                         # napari would ask
        viewer.open(str(ours), plugin=None)   # what File > Open does (viewer.open defaults to builtins)
    # the plugin claims its stores when npe2 activates it (first dock, reader or sample data)
    import npe2

    pm = npe2.PluginManager.instance()
    assert pm.get_manifest(PLUGIN).on_activate == "napari_carspatial._napari.reader_claim:activate"
    pm.deactivate(PLUGIN)
    pm.activate(PLUGIN)
    prefs = dict(get_settings().plugins.extension2reader)
    assert all(prefs[p] == PLUGIN for p in store_patterns())
    assert preferred_reader(ours) == PLUGIN
    # File > Open: napari's Qt path, with the dialog function watched
    import napari._qt.qt_viewer as qv

    asked = []
    monkeypatch.setattr(qv, "handle_gui_reading", lambda paths, *a, **k: asked.append(list(paths)))
    viewer.window._qt_viewer._qt_open([str(ours)], stack=False)
    assert asked == []
    got = _ours(viewer)
    assert {ly.metadata.get("carspatial_role") for ly in got} >= {"image", "labels"}
    # someone else's .zarr (same content, another name): napari still lets the user choose
    assert preferred_reader(theirs) is None
    viewer.window._qt_viewer._qt_open([str(theirs)], stack=False)
    assert len(asked) == 1
    # ... unless the store is claimed by path (the most specific pattern napari knows)
    pattern = claim_store(theirs)
    assert pattern.endswith("someone_elses.zarr/") and preferred_reader(theirs) == PLUGIN
    n = len(_ours(viewer))
    viewer.open(str(theirs), plugin=None)
    assert len(_ours(viewer)) > n


def test_a_users_own_choice_is_kept(make_napari_viewer):
    make_napari_viewer()
    s = get_settings()
    s.plugins.extension2reader = {"*.sdata.zarr/": "napari-spatialdata"}
    added = claim_our_stores()
    assert "*.sdata.zarr/" not in added
    assert dict(s.plugins.extension2reader)["*.sdata.zarr/"] == "napari-spatialdata"
    assert dict(s.plugins.extension2reader)["*.corrected.zarr/"] == PLUGIN
