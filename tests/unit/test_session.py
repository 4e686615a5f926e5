"""The per-viewer session (``_napari/session.py``) on napari's Qt-free ViewerModel: one session per
viewer (also through napari's public-API proxy), samples added / removed with their layers,
caches that die with the sample or follow ``table_changed``, busy and reviewer state, key bindings."""

from __future__ import annotations

import gc

import anndata as ad
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import (  # noqa: E402
    META_SAMPLE,
    STRUCTURE,
    add_sample_layers,
    samples_to_layer_data,
    session_for,
)
from napari_carspatial.model import Sample  # noqa: E402


def _sample(name="tiny"):
    lab = np.zeros((40, 50), np.uint32)
    lab[5:15, 5:15] = 3
    lab[20:35, 25:45] = 9
    table = ad.AnnData(X=np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
                       obs=pd.DataFrame({"cell_id": [3, 9], "cell_type": pd.Categorical(["CAR T", "Tumor"])},
                                        index=["a", "b"]))
    table.var_names = ["CD3", "PanCK"]
    table.obsm["spatial"] = np.array([[10.0, 10.0], [35.0, 27.0]])
    img = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    return Sample(name, image=[img], channel_names=["CD3", "PanCK"], pixel_size_um=0.5,
                  labels=[lab], table=table).validate()


def _events(session, name):
    got = []
    getattr(session.events, name).connect(lambda e: got.append(e))
    return got


def test_one_session_per_viewer_also_through_the_public_proxy():
    from napari.utils._proxies import PublicOnlyProxy

    v1, v2 = ViewerModel(), ViewerModel()
    s1 = session_for(v1)
    assert session_for(v1) is s1
    assert session_for(PublicOnlyProxy(v1)) is s1     # each dock gets its own proxy
    assert session_for(v2) is not s1


def test_samples_follow_their_layers_and_caches_die_with_them():
    viewer = ViewerModel()
    session = session_for(viewer)
    added, removed = _events(session, "sample_added"), _events(session, "sample_removed")
    s = _sample()
    layers = add_sample_layers(viewer, s)
    sid = session.sid_of(s)
    assert [e.sid for e in added] == [sid]                 # once, at the first layer
    assert session.samples() == {sid: s}
    assert all(lyr.metadata[META_SAMPLE] == sid for lyr in layers)
    assert session.sample_of(layers[-1]) is s
    col = session.coloring(sid)
    assert session.coloring(sid) is col
    session.cache(sid)["x"] = 1
    viewer.layers.remove(layers[0])                        # one layer left: still there
    assert removed == []
    for lyr in list(viewer.layers):
        viewer.layers.remove(lyr)
    assert [e.sid for e in removed] == [sid]
    assert session.sample(sid) is None
    with pytest.raises(KeyError):
        session.cache(sid)


def test_reader_tuples_are_claimed_by_the_session_of_the_viewer_they_land_in():
    s = _sample("read")
    tuples = samples_to_layer_data([s])                    # no viewer: a pending hand-off
    viewer = ViewerModel()
    for data, meta, kind in tuples:
        getattr(viewer, f"add_{kind}")(data, **meta)
    lab = viewer.layers["read cells"]
    assert lab.contour == 0                                # nothing styled it yet ...
    session = session_for(viewer)                          # ... until the viewer has a session
    assert session.sample_of(lab) is s
    assert lab.contour == 1


def test_table_changed_drops_dependent_caches_and_refreshes_hover_and_coloring():
    viewer = ViewerModel()
    session = session_for(viewer)
    s = _sample()
    add_sample_layers(viewer, s)
    sid = session.sid_of(s)
    cache = session.cache(sid)
    cache[("table", "CD3", "values")] = "cd3"
    cache[("table", "PanCK", "values")] = "panck"
    cache[("table", STRUCTURE, "index")] = "index"
    cache[("table", None, "any")] = "any"
    cache["plan"] = "plan"
    col = session.coloring(sid)
    col.color_by_category("cell_type")
    got = _events(session, "table_changed")

    s.table.obs["cell_type"] = pd.Categorical(["Tumor", "Tumor"])
    session.table_changed(sid, columns=["cell_type"], rows=[0], reason="test")
    assert set(cache) == {("table", "CD3", "values"), ("table", "PanCK", "values"), ("table", STRUCTURE, "index"),
                          "plan", "channel_plan"}
    assert got[-1].columns == ("cell_type",)
    assert got[-1].rows.tolist() == [0]
    assert got[-1].structure is False
    assert col.categories == ["Tumor"]                     # the colouring followed
    lab = session.labels_layer(sid)
    assert lab.features["cell_type"].tolist() == ["Tumor", "Tumor"]   # and the hover

    session.table_changed(sid, columns=["CD3"])
    assert ("table", "CD3", "values") not in cache
    assert ("table", "PanCK", "values") in cache
    session.table_changed(sid, structure=True)
    assert set(cache) == {"plan", "channel_plan"}


def test_busy_and_reviewer_are_per_viewer():
    v1, v2 = ViewerModel(), ViewerModel()
    s1, s2 = session_for(v1), session_for(v2)
    s = _sample()
    add_sample_layers(v1, s)
    sid = s1.sid_of(s)
    got = _events(s1, "busy")
    with s1.busy_while(sid, "committing"):
        assert s1.busy(sid) == "committing"
    assert s1.busy(sid) is None
    assert [(e.busy, e.message) for e in got] == [(True, "committing"), (False, "")]
    s1.set_reviewer("Dr A")
    assert s1.reviewer == "Dr A"
    assert s2.reviewer != "Dr A"
    cur = s1.curation(sid)
    assert cur.core.reviewer == "Dr A"
    s1.set_reviewer("Dr B")
    assert cur.core.reviewer == "Dr B"                      # open curations follow


def test_key_bindings_go_to_the_most_recent_shown_owner():
    viewer = ViewerModel()
    keys = session_for(viewer).keys
    log, shown = [], {"a": True, "b": True}
    keys.register("a", {"Control-Z": lambda v: log.append("a")}, shown=lambda o: shown[o])
    keys.register("b", {"Control-Z": lambda v: log.append("b")}, shown=lambda o: shown[o])
    keys.dispatch("Control-Z")
    keys.activate("a")
    keys.dispatch("Control-Z")
    shown["a"] = False
    keys.dispatch("Control-Z")
    assert log == ["b", "a", "b"]
    keys.unregister("b")
    keys.unregister("a")
    from napari.utils.key_bindings import coerce_keybinding

    assert coerce_keybinding("Control-Z") not in viewer.keymap


def test_session_dies_with_its_viewer():
    import weakref

    viewer = ViewerModel()
    ref = weakref.ref(session_for(viewer))
    del viewer
    gc.collect()
    assert ref() is None
