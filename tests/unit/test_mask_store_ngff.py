"""The corrected mask is NGFF 0.5 labels (axis units, µm scale) that ome-zarr-py itself reads back."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_carspatial.io import read_sample
from napari_carspatial.io.mask_store import MaskStore, read_provenance, save_corrected_mask


def _labels(h=300, w=260):
    lab = np.zeros((h, w), np.uint32)
    for i, (y, x) in enumerate([(10, 10), (100, 40), (200, 180), (250, 20)], start=1):
        lab[y:y + 30, x:x + 25] = i * 7
    return lab


def _ome_zarr_read(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url(str(path)))())
    labels = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert labels, [type(s).__name__ for n in nodes for s in n.specs]
    return labels[0]


@pytest.mark.parametrize("px", [0.5, None])
def test_corrected_mask_is_ngff_labels_read_by_ome_zarr(tmp_path, px):
    src = tmp_path / "roi_mask.tiff"
    lab = _labels()
    tifffile.imwrite(src, lab)
    st = MaskStore.open_working_copy(src, pixel_size_um=px, chunk=128)
    blk = st.read(0, 64, 0, 64)
    blk[blk == 7] = 0                      # delete cell 7
    st.write(0, 0, blk)
    out = save_corrected_mask(st, note="ngff test")
    node = _ome_zarr_read(out)
    ms = node.metadata
    axes = ms["axes"]
    assert [a["name"] for a in axes] == ["y", "x"] and all(a["type"] == "space" for a in axes)
    if px:
        assert all(a["unit"] == "micrometer" for a in axes)
    else:
        assert all("unit" not in a for a in axes)
    scales = [t[0]["scale"] for t in ms["coordinateTransformations"]]
    assert scales[0] == [px or 1.0, px or 1.0]
    assert all(s == [(px or 1.0) * 2 ** k] * 2 for k, s in enumerate(scales))
    expect = lab.copy()
    expect[expect == 7] = 0
    np.testing.assert_array_equal(np.asarray(node.data[0]), expect)
    assert read_provenance(out)["edit_count"] == 1 and read_provenance(out)["note"] == "ngff test"
    # and our own reader opens it as the mask of the image
    img = np.ones((2, *lab.shape), np.float32)
    ipath = tmp_path / "roi.tiff"
    tifffile.imwrite(ipath, img)
    s = read_sample(ipath, mask=out, channel_names=["DAPI", "CD3"])
    np.testing.assert_array_equal(s.labels[0].compute(), expect)
    assert s.n_cells == 3                    # measured on open from the corrected mask


def test_working_copy_is_no_image_and_records_its_source(tmp_path):
    """The copy-on-write working copy holds only edited chunks: no reader may take it for the mask
    (one clear line instead of a partial mask); it records its source, pixel size and levels."""
    import json

    from napari_carspatial.io.masks import read_mask
    from napari_carspatial.model import ReaderError, SampleError

    src = tmp_path / "m.tiff"
    tifffile.imwrite(src, _labels())
    st = MaskStore.open_working_copy(src, pixel_size_um=0.25)
    meta = json.loads((st.path / "carspatial.json").read_text())
    assert meta["role"] == "working-copy" and meta["layout"] == "copy-on-write"
    assert meta["source"] == str(src) and meta["pixel_size_um"] == 0.25
    assert [tuple(lv["shape"]) for lv in meta["levels"]] == [tuple(a.shape) for a in st.levels]
    assert not any(st.path.rglob("*.npy"))            # nothing copied before an edit
    with pytest.raises((ReaderError, SampleError)):
        read_mask(st.path)
