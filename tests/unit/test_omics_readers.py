"""Instrument folders (Xenium, CosMx) through spatialdata-io, checked against the files' own numbers.

The shared crops lack files spatialdata-io's readers need (see each README): Xenium has no
``experiment.xenium`` / ``cells.zarr.zip``, CosMx no FOV positions file and no image folders.
These tests check that the readers cope as documented and that every count equals the source's.
"""

from __future__ import annotations

import logging
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_carspatial.io import detect_format, read_sample
from napari_carspatial.model import ReaderError

pytest.importorskip("spatialdata_io")


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """The CosMx link folders and transcript indexes go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def xenium_dir(real_data_root):
    return real_data_root / "xenium_crop"


@pytest.fixture(scope="module")
def cosmx_dir(real_data_root):
    return real_data_root / "cosmx_crop"


@pytest.fixture(scope="module")
def xenium(xenium_dir):
    (s,) = read_sample(xenium_dir, image_pixel_size_um=1.7, image_origin_um=(1000.0, 1000.0))
    return s


def test_xenium_counts_equal_the_files(xenium, xenium_dir):
    import scanpy as sc

    assert detect_format(xenium_dir) == "xenium"
    ref = sc.read_10x_h5(xenium_dir / "cell_feature_matrix.h5", gex_only=False)
    tx = pd.read_parquet(xenium_dir / "transcripts.parquet")
    s = xenium
    assert s.n_cells == 526 == ref.n_obs
    assert list(s.table.var_names) == list(ref.var_names) and s.table.n_vars == 30
    assert sp.issparse(s.table.X) and s.table.X.format == "csr"
    assert (s.table.X != ref.X).nnz == 0  # same counts, same cell order
    assert list(s.table.obs["cell_id"]) == list(ref.obs_names)
    assert len(s.points) == 5260 == len(tx)
    assert s.points.gene_counts() == {g: int(n) for g, n in tx["feature_name"].value_counts().items()} | {
        g: 0 for g in s.table.var_names if g not in set(tx["feature_name"])}
    assert s.points.quality_name == "qv"
    q = s.points.query(columns=["quality"])["quality"]
    np.testing.assert_allclose(np.sort(q), np.sort(tx["qv"].to_numpy(np.float32)))
    assert s.pixel_size_um == pytest.approx(0.2125)
    assert s.metadata["platform"] == "Xenium"


def test_xenium_transcripts_fall_in_their_cells(xenium, xenium_dir):
    """Points and cells come from different files: each assigned molecule lies in its own cell's mask."""
    s = xenium
    lab = s.labels[0].compute()
    q = s.points.query(columns=["x", "y", "cell_id"])
    r = np.clip(np.round(q["y"]).astype(int), 0, lab.shape[0] - 1)
    c = np.clip(np.round(q["x"]).astype(int), 0, lab.shape[1] - 1)
    assigned = q["cell_id"] > 0
    tx = pd.read_parquet(xenium_dir / "transcripts.parquet")
    assert int(assigned.sum()) == int(tx["cell_id"].isin(set(s.table.obs["cell_id"])).sum())
    assert (lab[r, c] == q["cell_id"])[assigned].mean() > 0.98
    # the table's integer link equals the transcripts' platform ids
    lut = dict(zip(s.table.obs["cell_id"], s.table.obs["cell_label"], strict=True))
    expect = tx["cell_id"].map(lut).fillna(0).to_numpy(np.int64)
    np.testing.assert_array_equal(np.sort(q["cell_id"]), np.sort(expect))
    # positions: µm -> level-0 pixels of the grid whose corner is origin_um
    ox, oy = s.metadata["origin_um"]
    np.testing.assert_allclose(np.sort(q["x"]), np.sort((tx["x_location"].to_numpy() - ox) / 0.2125 - 0.5), atol=1e-3)


def test_xenium_image_placement(xenium_dir, caplog):
    """Without a placement the 8x-reduced crop image is left out (with a message); placed, it lines up."""
    with caplog.at_level(logging.WARNING):
        (bare,) = read_sample(xenium_dir)
    assert not bare.image and bare.n_cells == 526
    assert "image_pixel_size_um" in caplog.text and "experiment.xenium" in caplog.text and "cells.zarr.zip" in caplog.text

    from skimage.draw import polygon

    nuc = pd.read_parquet(xenium_dir / "nucleus_boundaries.parquet")
    nuc["cell_id"] = nuc["cell_id"].str.decode("utf-8")

    def corr(s, origin):
        """Nuclei (nucleus_boundaries.parquet, drawn here on the sample's grid) vs DAPI, over the image's footprint."""
        ox, oy = s.metadata["origin_um"]
        h, w = s.labels[0].shape
        mask = np.zeros((h, w), bool)
        for _, g in nuc.groupby("cell_id", sort=False):
            rr, cc = polygon((g["vertex_y"] - oy) / 0.2125 - 0.5, (g["vertex_x"] - ox) / 0.2125 - 0.5, (h, w))
            mask[rr, cc] = True
        y0, x0 = max(int((origin[1] - oy) / 0.2125), 0), max(int((origin[0] - ox) / 0.2125), 0)
        n = int(237 * 1.7 / 0.2125)
        img = s.image[0][0].compute()[y0:y0 + n, x0:x0 + n].astype(float)
        return np.corrcoef(mask[y0:y0 + n, x0:x0 + n].ravel(), img.ravel())[0, 1]

    (good,) = read_sample(xenium_dir, image_pixel_size_um=1.7, image_origin_um=(1000.0, 1000.0), transcripts=False)
    (off,) = read_sample(xenium_dir, image_pixel_size_um=1.7, image_origin_um=(980.0, 980.0), transcripts=False)
    assert good.channel_names == ["morphology_focus", "morphology_mip"]
    assert good.image[0].shape[-2:] == good.labels[0].shape
    c_good, c_off = corr(good, (1000.0, 1000.0)), corr(off, (980.0, 980.0))
    assert c_good > 0.25 > 5 * abs(c_off), (c_good, c_off)


def test_xenium_missing_files(xenium_dir, tmp_path):
    d = tmp_path / "xen"
    shutil.copytree(xenium_dir, d)
    (d / "cell_boundaries.parquet").unlink()
    with pytest.raises(ReaderError, match=r"neither cells\.zarr\.zip nor cell_boundaries\.parquet"):
        read_sample(d)
    (d / "transcripts.parquet").unlink()
    with pytest.raises(ReaderError, match=r"lacks transcripts\.parquet"):
        read_sample(d)


def test_cosmx_counts_equal_the_files(cosmx_dir, caplog):
    assert detect_format(cosmx_dir) == "cosmx"
    with caplog.at_level(logging.WARNING):
        (s,) = read_sample(cosmx_dir, pixel_size_um=0.18)
    expr = pd.read_csv(cosmx_dir / "Run5642_S3_Quarter_exprMat_file.csv")
    tx = pd.read_csv(cosmx_dir / "Run5642_S3_Quarter_tx_file.csv")
    meta = pd.read_csv(cosmx_dir / "Run5642_S3_Quarter_metadata_file.csv")
    assert s.n_cells == 27 == len(meta) and s.table.n_vars == 960 == expr.shape[1] - 2
    assert sp.issparse(s.table.X)
    cells = expr[expr["cell_ID"] > 0].set_index("cell_ID")
    ids = s.table.obs["cell_ID"].to_numpy()
    np.testing.assert_array_equal(s.table.X.toarray(), cells.loc[ids, list(s.table.var_names)].to_numpy())
    assert len(s.points) == 4188 == len(tx)
    q = s.points.query(columns=["x", "y", "cell_id", "compartment"])
    assert int((q["cell_id"] == 0).sum()) == int((tx["cell_ID"] == 0).sum()) == 1467
    assert s.points.quality_name is None  # CosMx flat files have no per-molecule quality
    with pytest.raises(ValueError, match="no quality"):
        s.points.query(min_quality=10)
    assert s.pixel_size_um == 0.18 and s.name == "Run5642_S3_Quarter_fov1"
    for missing in ("fov_positions_file", "CellComposite", "CellLabels"):
        assert missing in caplog.text
    # molecules the instrument assigned to a cell lie in that cell's rasterized polygon
    lab = s.labels[0].compute()
    r = np.clip(np.round(q["y"]).astype(int), 0, lab.shape[0] - 1)
    c = np.clip(np.round(q["x"]).astype(int), 0, lab.shape[1] - 1)
    inside = q["cell_id"] > 0
    assert (lab[r, c] == q["cell_id"])[inside].mean() > 0.95
    cats = s.points.metadata["extra_categories"]["compartment"]
    assert sorted(cats) == sorted(tx["CellComp"].fillna("").astype(str).unique())


def test_cosmx_pixel_size_unknown(cosmx_dir, caplog):
    with caplog.at_level(logging.WARNING):
        (s,) = read_sample(cosmx_dir, transcripts=False)
    assert s.pixel_size_um is None and "pixel_size_um" in caplog.text and s.points is None


def test_cosmx_fov_positions_derived(cosmx_dir):
    from napari_carspatial.io.cosmx import derive_fov_positions

    meta = pd.read_csv(cosmx_dir / "Run5642_S3_Quarter_metadata_file.csv")
    fov = derive_fov_positions(meta)
    tx = pd.read_csv(cosmx_dir / "Run5642_S3_Quarter_tx_file.csv")  # the transcripts agree
    assert fov["x_global_px"].iloc[0] == pytest.approx((tx["x_global_px"] - tx["x_local_px"]).mean())
    assert fov["y_global_px"].iloc[0] == pytest.approx((tx["y_global_px"] - tx["y_local_px"]).mean())
    meta.loc[0, "CenterX_global_px"] += 5
    with pytest.raises(ReaderError, match="differ within a FOV"):
        derive_fov_positions(meta)


def test_missing_extra_names_it(xenium_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "spatialdata_io", None)
    with pytest.raises(ReaderError, match=r"napari-carspatial\[omics\]"):
        read_sample(xenium_dir)


def test_options_only_for_instrument_folders(tmp_path):
    import tifffile

    f = tmp_path / "a.tif"
    tifffile.imwrite(f, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ReaderError, match="apply to instrument folders"):
        read_sample(f, image_origin_um=(0, 0))
