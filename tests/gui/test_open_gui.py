"""Opening things the way a user does: File > Open Sample, File > Open / drag-and-drop, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial._napari import META_ROLE, session_for


def _status_text(layer, world):
    status = layer.get_status(world, world=True)
    return status["coordinates"] if isinstance(status, dict) else str(status)


def test_open_sample_demo_menu(make_napari_viewer_proxy):
    """File > Open Sample > CAR T demo: named channels, outlines, hover shows id and true type."""
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-carspatial", "carspatial-demo-post")
    names = [lyr.name for lyr in viewer.layers]
    for marker in ["DAPI", "PanCK", "MSLN", "CD3", "CD4", "CD8", "CAR", "CD68", "CD163", "PD-L1",
                   "PD-1", "Ki-67", "CD20", "SMA"]:
        assert marker in names
    labels = [lyr for lyr in viewer.layers if lyr.metadata.get(META_ROLE) == "labels"]
    assert len(labels) == 1
    lab = labels[0]
    assert lab.multiscale
    # the viewer's session (any dock makes it) claims the sample read without a viewer and
    # draws its cells as outlines
    session = session_for(viewer)
    assert lab.contour == 1
    sample = session.sample_of(lab)
    t = sample.table
    # hover over the centroid of a CAR T cell whose centroid pixel belongs to the cell itself
    obs = t.obs
    xy = t.obsm["spatial"]
    level0 = np.asarray(sample.labels[0])
    for row in np.flatnonzero((obs["cell_type"] == "CAR T").to_numpy())[:50]:
        x, y = xy[row]
        if level0[int(round(y)), int(round(x))] == obs["cell_id"].iloc[row]:
            break
    world = lab.data_to_world((round(y), round(x)))
    text = _status_text(lab, world)
    assert str(int(obs["cell_id"].iloc[row])) in text
    assert "CAR T" in text


def test_file_open_real_imc_with_reader(make_napari_viewer_proxy, cytomapper_dir):
    """File > Open on a real IMC TIFF stack: channel names come from the panel.csv next to it."""
    viewer = make_napari_viewer_proxy()
    viewer.open(str(cytomapper_dir / "images" / "E34_imc.tiff"), plugin="napari-carspatial")
    names = [lyr.name for lyr in viewer.layers]
    assert names[:5] == ["H3", "CD99", "PIN", "CD8a", "CDH"]


def test_file_open_steinbock_folder(make_napari_viewer_proxy, steinbock_dir):
    viewer = make_napari_viewer_proxy()
    viewer.open(str(steinbock_dir), plugin="napari-carspatial")
    labels = [lyr for lyr in viewer.layers if lyr.metadata.get(META_ROLE) == "labels"]
    assert len(labels) == 1                        # 15 small acquisitions open as one tiled montage sample
    assert session_for(viewer).sample_of(labels[0]).n_cells == 404
    # acquisitions are tiled, not stacked: no two tiles share an origin, each is named
    tiles = next(lyr for lyr in viewer.layers if lyr.metadata.get(META_ROLE) == "tiles")
    origins = {tuple(np.round(np.asarray(r).max(axis=0), 3)) for r in tiles.data}
    assert len(origins) == 15
    assert "mockData1_001" in list(tiles.features["acquisition"])


@pytest.mark.parametrize("case", ["truncated", "float_mask", "empty_mask", "not_a_tiff"])
def test_bad_files_notify_and_keep_open_layers(case, tmp_path, make_napari_viewer_proxy, monkeypatch):
    """A bad file gives a napari notification naming it; no exception; open layers untouched."""
    import napari.utils.notifications as notifications
    import tifffile

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((8, 8)), name="already open")
    if case == "truncated":
        path = tmp_path / "slide.ome.tif"
        tifffile.imwrite(path, np.ones((3, 256, 256), np.uint16), ome=True, metadata={"axes": "CYX"})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "not_a_tiff":
        path = tmp_path / "notes.tif"
        path.write_text("this is not an image")
    else:
        path = tmp_path / ("float_mask.tif" if case == "float_mask" else "empty_mask.tif")
        img = tmp_path / "img.tif"
        tifffile.imwrite(img, np.ones((2, 32, 32), np.uint16))
        mask = np.full((32, 32), 1.5, np.float32) if case == "float_mask" else np.zeros((32, 32), np.uint16)
        tifffile.imwrite(path, mask)
        from napari_carspatial._napari.reader import _fail
        from napari_carspatial.io import read_sample
        from napari_carspatial.model import SampleError

        with pytest.raises(SampleError) as e:
            read_sample(img, mask=path)
        assert str(path) in str(e.value)
        _fail(str(e.value))
        assert shown
        assert str(path) in shown[0]
        assert [lyr.name for lyr in viewer.layers] == ["already open"]
        return
    viewer.open(str(path), plugin="napari-carspatial")        # must not raise
    assert shown, "no error notification was shown"
    assert str(path) in shown[0]
    assert "Traceback" not in shown[0]
    assert [lyr.name for lyr in viewer.layers] == ["already open"]
