"""File > Open of a segmentation working copy (``<mask>.carspatial-edit.zarr``): one clear line.

The working copy keeps its ``.zarr`` name (napari's reader preference maps it to this plugin, so
no other plugin fails on it) but is a folder of ``carspatial.json`` and ``.npy`` chunks holding
only the edited chunks of a mask, not a sample: the reader claims it and answers with one line
naming the folder and what to do, never a reader error.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_carspatial._napari import reader
from napari_carspatial._napari.reader_claim import store_patterns, working_copy_message
from napari_carspatial.io import MaskStore


@pytest.fixture
def working_copy(tmp_path):
    mask = np.zeros((64, 64), np.uint32)
    mask[5:20, 5:20] = 1
    mask[30:50, 30:50] = 2
    src = tmp_path / "G01_mask.tiff"
    tifffile.imwrite(src, mask)
    st = MaskStore.open_working_copy(src)
    block = st.read(0, 32, 0, 32)
    block[block == 1] = 0                       # one edit: cell 1 deleted
    st.write(0, 0, block)
    path = tmp_path / "G01_mask.tiff.carspatial-edit.zarr"
    assert path.is_dir() and (path / "carspatial.json").is_file()
    return path


@pytest.fixture
def notes(monkeypatch):
    got = []
    monkeypatch.setattr(reader, "notify", lambda msg, level="info": got.append((level, msg)))
    return got


def test_working_copy_gets_one_clear_line(working_copy, notes):
    assert any(p.startswith("*.carspatial-edit.zarr") for p in store_patterns())   # still ours
    for given in (str(working_copy), str(working_copy) + os.sep, [str(working_copy)]):
        read = reader.get_reader(given)
        assert read is reader.read_working_copy
        assert read(given) == [(None,)]          # napari's null layer: nothing added
    assert len(notes) == 3
    level, msg = notes[0]
    assert level == "error"
    assert "\n" not in msg
    assert msg.startswith(f"{working_copy}: is a segmentation working copy (the unsaved edits of G01_mask.tiff)")
    assert "open its sample and use the Segmentation dock, or save the corrected mask" in msg
    assert all(m == msg for _lvl, m in notes)


def test_moved_aside_copy_is_known_by_its_role(working_copy, notes):
    aside = working_copy.with_name("G01_mask.tiff.carspatial-edit.20261202T040000.zarr")
    working_copy.rename(aside)
    msg = working_copy_message(aside)
    assert msg is not None and msg.startswith(f"{aside}: is a segmentation working copy")
    assert reader.get_reader(str(aside)) is reader.read_working_copy


def test_other_paths_are_not_working_copies(working_copy, tmp_path):
    src = tmp_path / "G01_mask.tiff"
    assert working_copy_message(src) is None                 # a file
    assert working_copy_message(tmp_path) is None            # a folder without the role or the name
    assert working_copy_message(tmp_path / "absent.carspatial-edit.zarr") is None
    img = tmp_path / "img.tiff"
    tifffile.imwrite(img, np.zeros((2, 16, 16), np.uint16))
    assert reader.get_reader(str(img)) is reader.read_path   # samples are read as before
