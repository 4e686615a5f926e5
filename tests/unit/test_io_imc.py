"""Raw IMC (.mcd / .txt) through readimc, checked on the real session in ../shared/data/real.

``imc_raw_mcd/`` holds four .mcd sessions (3 ROIs each) and their .txt exports;
``steinbock_imc_testdata/`` is steinbock 0.16.1's output for the same session, made with the hot
pixel filter ``--hpf 50``. steinbock's filter (``steinbock.preprocessing.imc.filter_hot_pixels``)
replaces a pixel by the maximum of its 8 neighbours (mirror border) where it exceeds that
maximum by more than the threshold; applying that published rule to our pixels must give
steinbock's ``img/`` exactly, and where it changes nothing the pixels must be equal as read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import detect_format, read_sample
from napari_carspatial.model import ReaderError

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
RAW = REAL / "imc_raw_mcd"
STEINBOCK = REAL / "steinbock_imc_testdata"

readimc = pytest.importorskip("readimc", reason="the [imc] extra (readimc) is not installed")


@pytest.fixture(scope="module")
def raw_dir():
    if not RAW.is_dir():
        pytest.skip(f"real data folder {RAW} is absent")
    return RAW


def _steinbock_hpf(img: np.ndarray, thres: float) -> np.ndarray:
    """steinbock's published hot-pixel filter (steinbock/preprocessing/imc.py), for comparison."""
    from scipy.ndimage import maximum_filter

    kernel = np.ones((1, 3, 3), dtype=bool)
    kernel[0, 1, 1] = False
    mx = maximum_filter(img, footprint=kernel, mode="mirror")
    return np.where(img - mx > thres, mx, img)


def _mcd_files(raw_dir):
    return sorted(raw_dir.glob("*/*.mcd"))


def test_detect(raw_dir):
    mcd = _mcd_files(raw_dir)[0]
    assert detect_format(mcd) == "imc-mcd"
    assert detect_format(sorted(mcd.parent.glob("*.txt"))[0]) == "imc-txt"
    assert detect_format(raw_dir / "README.md") is None


def test_mcd_pixels_names_and_size_equal_readimc(raw_dir):
    from readimc import MCDFile

    panel = pd.read_csv(raw_dir / "panel.csv")
    metal_to_target = dict(zip(panel["Metal Tag"], panel["Target"], strict=False))
    n = 0
    for mcd in _mcd_files(raw_dir):
        samples = read_sample(mcd)
        with MCDFile(mcd) as f:
            acqs = [a for s in f.slides for a in s.acquisitions]
            assert [s.name for s in samples] == [f"{mcd.stem}_{a.id:03d}" for a in acqs]
            for s, a in zip(samples, acqs, strict=True):
                ref = f.read_acquisition(a)
                got = s.image[0].compute()
                assert got.dtype == ref.dtype and np.array_equal(got, ref)
                assert s.pixel_size_um == a.pixel_size_x_um == 1.0
                assert s.channel_names == [metal_to_target[m] for m in a.channel_names]
                meta = s.metadata["channel_metadata"]
                assert [c["metal"] for c in meta] == list(a.channel_names)
                assert [c["mass"] for c in meta] == list(a.channel_masses)
                assert [c["label"] for c in meta] == list(a.channel_labels)
                assert s.metadata["acquisition_description"] == a.description
                n += 1
    assert n == 12


def test_mcd_equals_steinbock_img(raw_dir):
    import tifffile

    if not STEINBOCK.is_dir():
        pytest.skip(f"{STEINBOCK} is absent")
    images = pd.read_csv(STEINBOCK / "images.csv")
    sb_names = pd.read_csv(STEINBOCK / "panel.csv")
    sb_names = sb_names.loc[sb_names["keep"] == 1, "name"].tolist()
    unfiltered = 0
    compared = 0
    for mcd in _mcd_files(raw_dir):
        for s in read_sample(mcd):
            row = images.loc[(images["source_file"] == mcd.name) & (images["acquisition_id"] == s.metadata["acquisition_id"])]
            assert len(row) == 1
            sb = tifffile.imread(STEINBOCK / "img" / row["image"].iloc[0])
            ours = s.image[0].compute()
            assert s.channel_names == sb_names
            assert ours.shape == sb.shape
            assert np.array_equal(_steinbock_hpf(ours, 50.0), sb)
            if np.array_equal(_steinbock_hpf(ours, 50.0), ours):   # steinbock filtered nothing here
                assert np.array_equal(ours, sb)
                unfiltered += 1
            compared += 1
    assert compared == 12
    assert unfiltered >= 1   # mockData1 ROI_001 is empty: nothing to filter


def test_txt_equals_readimc_and_mcd(raw_dir):
    from readimc import TXTFile

    mcd = _mcd_files(raw_dir)[1]
    by_id = {s.metadata["acquisition_id"]: s for s in read_sample(mcd)}
    for txt in sorted(mcd.parent.glob("*.txt")):
        s = read_sample(txt)
        with TXTFile(txt) as f:
            ref = f.read_acquisition()
        assert np.array_equal(s.image[0].compute(), ref)
        acq_id = int(txt.stem.rsplit("_", 1)[1])
        assert s.channel_names == by_id[acq_id].channel_names
        assert s.pixel_size_um == 1.0
        # the text export rounds counts to 3 decimals
        np.testing.assert_allclose(s.image[0].compute(), by_id[acq_id].image[0].compute(), rtol=0, atol=5.1e-4)


def test_names_from_labels_without_panel(raw_dir, tmp_path):
    import shutil

    src = _mcd_files(raw_dir)[0]
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    s = read_sample(dst)[0]
    assert s.channel_names == ["Ag107", "Cytoker", "Laminin", "YBX1", "H3K27Ac"]
    assert s.metadata["channel_metadata"][1]["label"] == "Cytoker_651((3356))Pr141"


def test_panorama_equals_readimc(raw_dir):
    from readimc import MCDFile

    from napari_carspatial.io.imc import read_mcd_panorama

    mcd = _mcd_files(raw_dir)[0]
    pano = read_mcd_panorama(mcd)
    with MCDFile(mcd) as f:
        p = f.slides[0].panoramas[0]
        ref = f.read_panorama(p)
    assert np.array_equal(pano.image[0].compute(), np.moveaxis(ref[..., :3], -1, 0))
    assert pano.channel_names == ["red", "green", "blue"]
    # the panorama's corners span 193 x 162 µm for 193 x 162 px
    assert pano.pixel_size_um == pytest.approx(1.0)


def test_missing_readimc_names_the_extra(raw_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "readimc", None)
    mcd = _mcd_files(raw_dir)[0]
    assert detect_format(mcd) == "imc-mcd"   # still recognised
    with pytest.raises(ReaderError, match=r"napari-carspatial\[imc\]"):
        read_sample(mcd)


def test_truncated_mcd_one_clear_error(raw_dir, tmp_path):
    src = _mcd_files(raw_dir)[0]
    bad = tmp_path / src.name
    bad.write_bytes(src.read_bytes()[: 4096])
    with pytest.raises(ReaderError, match=src.name):
        read_sample(bad)
