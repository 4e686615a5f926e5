"""Saving never replaces the table a sample was read from, even when the caller forgets paths=,
and checksums of a changed zarr store are never stale (QA1 low items, io/saving), on a real
table (cytomapper E34's rows of cells.csv)."""

from __future__ import annotations

import os

import pytest

from napari_carspatial.io import read_sample, read_table, write_table
from napari_carspatial.io.write import sha256_file
from napari_carspatial.model import SampleError


@pytest.fixture()
def real_h5ad(cytomapper_dir, tmp_path):
    t = read_table(cytomapper_dir / "cells.csv", pixel_size_um=1.0, image="E34_imc.tiff")
    p = tmp_path / "E34.h5ad"
    t.write_h5ad(p)
    return p


def test_the_table_read_from_is_refused_without_paths(real_h5ad, tmp_path):
    """QA low: write_table(s.table, s.paths['table'], overwrite=True) without paths= replaced the source."""
    before = sha256_file(real_h5ad)
    s = read_sample(real_h5ad)
    s.table.obs["CellType"] = "changed"
    with pytest.raises(SampleError, match="is the sample's source table"):
        write_table(s.table, real_h5ad, overwrite=True)
    os.symlink(real_h5ad, tmp_path / "link_dir_target.h5ad")
    with pytest.raises(SampleError):
        write_table(s.table, tmp_path / "link_dir_target.h5ad", overwrite=True)
    assert sha256_file(real_h5ad) == before
    # a new name is fine, and the table written there may later be saved over by its own next read
    new = write_table(s.table, tmp_path / "E34_curated.h5ad")
    s2 = read_sample(new)
    with pytest.raises(SampleError, match="source table"):
        write_table(s2.table, real_h5ad, overwrite=True)   # still the original's source (provenance)
    write_table(s2.table, tmp_path / "E34_v2.h5ad")


def test_a_changed_zarr_store_gets_a_new_checksum_in_the_same_process(real_h5ad, tmp_path):
    """QA low: folders were cached by the folder's own mtime, so a zarr changed inside kept its old
    hash within one process."""
    import anndata as ad

    store = write_table(ad.read_h5ad(real_h5ad), tmp_path / "E34.zarr")
    h0 = sha256_file(store)
    folder_mtime = store.stat().st_mtime_ns
    chunk = max((p for p in (store / "X").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)  # X's data
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    os.utime(store, ns=(folder_mtime, folder_mtime))   # the folder itself looks unchanged
    assert store.stat().st_mtime_ns == folder_mtime
    assert sha256_file(store) != h0
