"""The copy-on-write working copy equals a full copy of the mask: reads, every pyramid level, the
saved corrected mask and, through the segmentation editor, the corrected table; the source is
never written and only the chunks an edit touches are stored."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tifffile

from napari_carspatial.io.mask_store import MaskStore, level_shapes, save_corrected_mask
from napari_carspatial.io.masks import read_mask


def _cells(h=700, w=900, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint32)
    ids = rng.permutation(np.arange(1, 400, dtype=np.uint32) * 7)   # non-consecutive ids
    for cid in ids:
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
        lab[y:y + rng.integers(4, 12), x:x + rng.integers(4, 12)] = cid
    return lab


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _full_copy(lab, chunk):
    """The reference: a store holding every chunk (a full copy, as working copies were made before)."""
    st = MaskStore.open_working_copy(None, labels=lab, chunk=chunk)
    st.write(0, 0, lab, count_edit=False)
    assert st.held_chunks(0).all()
    return st


@pytest.mark.parametrize("seed", [0, 1])
def test_lazy_store_equals_a_full_copy(tmp_path, seed):
    lab = _cells(seed=seed)
    src = tmp_path / "mask.tiff"
    tifffile.imwrite(src, lab)
    digest = _sha(src)
    chunk = 128
    lazy = MaskStore.open_working_copy(src, labels=read_mask(src), chunk=chunk)
    full = _full_copy(lab, chunk)
    ref = lab.copy()
    assert not lazy.held_chunks(0).any()             # nothing copied up front
    rng = np.random.default_rng(seed)
    boxes = [(0, 0, 5, 5), (690, 890, 10, 10), (120, 120, 20, 20), (250, 380, 140, 260)]   # corners, chunk borders
    boxes += [(int(rng.integers(0, 650)), int(rng.integers(0, 850)), int(rng.integers(1, 50)),
               int(rng.integers(1, 50))) for _ in range(12)]
    for y0, x0, h, w in boxes:
        h, w = min(h, 700 - y0), min(w, 900 - x0)
        blk = lazy.read(y0, y0 + h, x0, x0 + w)
        np.testing.assert_array_equal(blk, full.read(y0, y0 + h, x0, x0 + w))
        blk[rng.random(blk.shape) < 0.4] = lazy.reserve_ids(1)[0]
        blk[rng.random(blk.shape) < 0.2] = 0
        full.raise_max_id(lazy.max_id)
        lazy.write(y0, x0, blk)
        full.write(y0, x0, blk)
        ref[y0:y0 + h, x0:x0 + w] = blk
    np.testing.assert_array_equal(lazy.read(0, 700, 0, 900), ref)
    np.testing.assert_array_equal(full.read(0, 700, 0, 900), ref)
    # only the touched chunks are held
    touched = np.zeros(lazy.held_chunks(0).shape, bool)
    for y0, x0, h, w in boxes:
        h, w = min(h, 700 - y0), min(w, 900 - x0)
        touched[y0 // chunk:(y0 + h - 1) // chunk + 1, x0 // chunk:(x0 + w - 1) // chunk + 1] = True
    np.testing.assert_array_equal(lazy.held_chunks(0), touched)
    assert not touched.all()
    # every displayed level: level 0 strided (the source pyramid is strided too)
    for k, (a, b) in enumerate(zip(lazy.pyramid(), full.pyramid(), strict=True)):
        f = 2 ** k
        np.testing.assert_array_equal(a.compute(), ref[::f, ::f], err_msg=f"level {k}")
        np.testing.assert_array_equal(b.compute(), ref[::f, ::f], err_msg=f"level {k}")
    # the saved corrected masks are the same, at every level
    out_lazy = save_corrected_mask(lazy, tmp_path / "lazy.corrected.zarr")
    out_full = save_corrected_mask(full, tmp_path / "full.corrected.zarr")
    a, b = read_mask(out_lazy), read_mask(out_full)
    assert [tuple(x.shape) for x in a] == level_shapes(ref.shape)[:len(a)]
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(x.compute(), y.compute(), err_msg=f"level {k}")
        np.testing.assert_array_equal(x.compute(), ref[::2 ** k, ::2 ** k], err_msg=f"level {k}")
    assert _sha(src) == digest                          # the source was never written
    # reopened (resume): the same edits, read through the same source
    again = MaskStore.open_working_copy(src, resume=True)
    np.testing.assert_array_equal(again.read(0, 700, 0, 900), ref)
    assert again.edit_count == len(boxes) and again.max_id == lazy.max_id


def test_editor_on_the_lazy_copy_equals_the_editor_on_a_full_copy(tmp_path):
    """Merge, split, delete and a drawn cell through the editor: the same table and mask whether the
    working copy is copy-on-write (read through from the file) or a full copy."""
    import copy

    from napari_carspatial.datasets import write_demo
    from napari_carspatial.editing import RegionEdit, SegmentationEditor
    from napari_carspatial.editing.segmentation import check_consistency
    from napari_carspatial.io import read_sample

    files = write_demo(tmp_path, size=256)
    digest = _sha(files["mask"])
    s1 = read_sample(files["image"], mask=files["mask"], table=files["table"])
    s2 = copy.copy(s1)
    s2.table = s1.table.copy()
    lab = np.asarray(s1.labels[0])
    full = _full_copy(lab, 64)
    full.raise_max_id(int(s1.table.obs["cell_id"].max()))
    eds = [SegmentationEditor(s1), SegmentationEditor(s2, store=full)]
    edits = [RegionEdit(e, e.region(20, 230, 30, 240)) for e in eds]
    d = edits[0].data
    a, b = d[:, :-1], d[:, 1:]
    y, x = np.argwhere((a != b) & (a > 0) & (b > 0))[0]
    pair = [int(a[y, x]), int(b[y, x])]
    cells = [int(c) for c in np.unique(d) if c and c not in pair]
    big = max(cells, key=lambda c: int((d == c).sum()))
    ys, xs = np.nonzero(d == big)
    line = [[ys.min() - 1, (xs.min() + xs.max()) / 2], [ys.max() + 1, (xs.min() + xs.max()) / 2]]
    victim = next(c for c in cells if c != big)
    for ed in edits:
        ed.merge(pair)
        ed.commit()
        ed.split_by_line(line, big)
        ed.commit()
        ed.delete([victim])
        ed.draw([[[2, 2], [2, 9], [9, 9], [9, 2]]], overwrite=True)
        ed.commit()
    np.testing.assert_array_equal(edits[0].data, edits[1].data)
    np.testing.assert_array_equal(eds[0].store.read(0, 256, 0, 256), eds[1].store.read(0, 256, 0, 256))
    t1, t2 = s1.table, s2.table
    assert list(t1.obs_names) == list(t2.obs_names)
    np.testing.assert_allclose(np.asarray(t1.X), np.asarray(t2.X))
    for c in ("cell_id", "area", "cell_type"):
        np.testing.assert_array_equal(t1.obs[c].astype(str).to_numpy(), t2.obs[c].astype(str).to_numpy())
    np.testing.assert_allclose(t1.obsm["spatial"], t2.obsm["spatial"])
    check_consistency(s1.labels[0], t1)
    from napari_carspatial.model import get_log

    assert get_log(t1)["action"].astype(str).str.startswith("segmentation").sum() >= 3
    assert eds[0].store.held_chunks(0).any()
    assert _sha(files["mask"]) == digest
