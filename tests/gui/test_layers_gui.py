"""The sample shows up in a real napari viewer: named channels, outlines, hover with id and type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari import META_SAMPLE, session_for
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.model import Sample


def _small_sample(name="tiny"):
    import anndata as ad

    rng = np.random.default_rng(0)
    img = rng.random((3, 64, 80), dtype=np.float32)
    lab = np.zeros((64, 80), np.uint32)
    lab[5:20, 5:25] = 17
    lab[30:50, 40:70] = 4242
    table = ad.AnnData(
        X=np.ones((2, 3), np.float32),
        obs=pd.DataFrame({"cell_id": [17, 4242], "cell_type": pd.Categorical(["CAR T", "Tumor"])},
                         index=["c17", "c4242"]),
    )
    table.var_names = ["DAPI", "CD3", "CAR"]
    s = Sample(name, image=[img, img[:, ::2, ::2]], channel_names=["DAPI", "CD3", "CAR"],
               pixel_size_um=0.5, labels=[lab, lab[::2, ::2]], table=table)
    return s.validate()


def test_add_sample_layers_names_colors_scale(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    sample = _small_sample()
    layers = add_sample_layers(viewer, sample)
    names = [lyr.name for lyr in viewer.layers]
    assert names == ["DAPI", "CD3", "CAR", "tiny cells"]
    imgs = [lyr for lyr in layers if lyr.__class__.__name__ == "Image"]
    assert all(lyr.blending == "additive" for lyr in imgs)
    assert imgs[0].colormap.name == "blue"            # DAPI is blue
    assert imgs[1].colormap.name == "red"             # CD3 red
    assert all(lyr.multiscale for lyr in layers)
    np.testing.assert_allclose(imgs[0].scale, [0.5, 0.5])
    labels = viewer.layers["tiny cells"]
    assert labels.contour == 1
    assert viewer.canvas.overlays.scale_bar.visible
    # the registry resolves the layer back to the sample, layers only hold an id
    assert session_for(viewer).sample_of(labels) is sample
    assert isinstance(labels.metadata[META_SAMPLE], str)


def test_hover_status_shows_cell_id_and_type(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, _small_sample())
    labels = viewer.layers["tiny cells"]
    # world coordinates are µm (pixel size 0.5): pixel (10, 10) -> (5, 5) µm, inside cell 17
    status = labels.get_status((5.0, 5.0), world=True)
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert "17" in text
    assert "CAR T" in text
    status = labels.get_status((20.0, 25.0), world=True)  # pixel (40, 50): cell 4242
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert "4242" in text
    assert "Tumor" in text


def test_contrast_from_smallest_level_only(make_napari_viewer_proxy):
    import dask.array as da

    make_napari_viewer_proxy()  # a viewer exists, as in the app (not used directly)
    big = da.random.random((3, 4096, 4096), chunks=(1, 1024, 1024)).astype(np.float32)

    def _boom(block):
        raise AssertionError("level 0 was read")

    poisoned = big.map_blocks(_boom, dtype=np.float32)
    small = da.from_array(np.linspace(0, 1, 3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64))
    s = Sample("lazy", image=[poisoned, small], channel_names=["a", "b", "c"]).validate()
    from napari_carspatial._napari.layers import sample_to_layer_data

    data, meta, kind = sample_to_layer_data(s)[0]
    assert kind == "image"
    assert meta["multiscale"]
    assert len(meta["contrast_limits"]) == 3
    lo, hi = meta["contrast_limits"][0]
    assert 0 <= lo < hi <= 1


def test_sample_widget_lists_sample(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.sample_widget import SampleWidget

    viewer = make_napari_viewer_proxy()
    widget = SampleWidget(viewer)
    qtbot.addWidget(widget)
    add_sample_layers(viewer, _small_sample("listed"))
    assert widget.tree.topLevelItemCount() == 1
    top = widget.tree.topLevelItem(0)
    assert top.text(0) == "listed"
    rows = {top.child(i).text(0): top.child(i).text(1) for i in range(top.childCount())}
    assert rows["cells"] == "2"
    assert rows["pixel size"] == "0.5 µm"
    viewer.layers.clear()
    assert widget.tree.topLevelItemCount() == 0


def test_reader_bad_file_notifies_instead_of_traceback(tmp_path, make_napari_viewer_proxy, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_carspatial._napari.reader import read_path

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    bad = tmp_path / "broken.ome.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)   # a TIFF header and nothing else
    out = read_path(str(bad))
    assert out == [(None,)]                       # napari's "nothing to add": no exception
    assert len(shown) == 1                        # one error notification ...
    assert str(bad) in shown[0]                   # ... naming the file
    assert "Traceback" not in shown[0]


def test_reader_layer_data_carry_only_an_id(tmp_path, make_napari_viewer_proxy):
    """The reader's tuples hold the sample id and the layer role in ``metadata``, nothing else;
    the viewer's session claims the sample when the layers arrive and styles the outlines."""
    from napari_carspatial._napari.layers import samples_to_layer_data

    viewer = make_napari_viewer_proxy()
    sample = _small_sample("read")
    tuples = samples_to_layer_data([sample])
    for _data, meta, _kind in tuples:
        metas = meta["metadata"] if isinstance(meta["metadata"], list) else [meta["metadata"]]
        for m in metas:
            assert set(m) <= {META_SAMPLE, "carspatial_role", "carspatial_channel"}
            assert all(isinstance(v, str) for v in m.values())
    for data, meta, kind in tuples:
        getattr(viewer, f"add_{kind}")(data, **meta)
    labels = viewer.layers["read cells"]
    session = session_for(viewer)
    assert session.sample_of(labels) is sample
    assert labels.contour == 1


def test_progressive_add_ends_with_every_channel_below_outlines(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.progressive import add_samples_progressively

    viewer = make_napari_viewer_proxy()
    names = ["DAPI", "PanCK", "CD3", "CAR", "CD68"] + [f"M{i}" for i in range(9)]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, (len(names), 64, 64)).astype(np.uint16)
    lab = np.zeros((64, 64), np.uint32)
    lab[10:20, 10:20] = 5
    s = Sample("prog", image=[img], channel_names=names, labels=[lab]).validate()
    done = []
    first = add_samples_progressively(viewer, [s], batch=3, on_done=lambda: done.append(True))
    viewer.layers.selection.active = viewer.layers["CAR"]      # the user picks a layer meanwhile
    # first: the default-visible channels and the outlines only
    assert {lyr.name for lyr in first} == {"DAPI", "PanCK", "CAR", "CD68", "prog cells"}   # nuclear + 3 lineages
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    order = [lyr.name for lyr in viewer.layers]
    assert sorted(order[:-1]) == sorted(names)
    assert order[-1] == "prog cells"
    assert not any(viewer.layers[n].visible for n in names[5:])
    assert viewer.layers.selection.active.name == "CAR"   # not stolen by the background adds
    # the hidden channels got the same contrast as computed once for the sample
    lo, hi = viewer.layers["M3"].contrast_limits
    ref = np.percentile(img[8], [1, 99.8], method="lower")
    assert (lo, hi) == pytest.approx(tuple(ref))
