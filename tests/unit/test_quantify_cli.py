"""``carspatial quantify`` on the demo written to files: in this process for a small field, a
local Dask cluster (progress bar) above the threshold; the same table either way."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from napari_carspatial.datasets import write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), size=384)


def _run(files, out, *extra):
    proc = subprocess.run([sys.executable, "-m", "napari_carspatial.cli", "quantify", str(files["image"]),
                           str(files["mask"]), "-o", str(out), "--tile", "128", "--statistics", "mean,median",
                           *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _check(files, out):
    import anndata as ad

    t = ad.read_h5ad(out)
    ref = ad.read_h5ad(files["table"])
    assert np.array_equal(np.sort(t.obs["cell_id"].to_numpy()), np.sort(ref.obs["cell_id"].to_numpy()))
    order = np.argsort(ref.obs["cell_id"].to_numpy())
    np.testing.assert_allclose(t.X, np.asarray(ref.X)[order], rtol=1e-4, atol=1e-4)
    assert "median" in t.layers and t.uns["spatialdata_attrs"]["instance_key"] == "cell_id"
    return t


def test_cli_quantify_small_field_in_process(files, tmp_path):
    proc = _run(files, tmp_path / "table.h5ad")
    t = _check(files, tmp_path / "table.h5ad")
    assert t.uns["carspatial"]["quantify"]["scheduler"].startswith("in-process")
    assert "LocalCluster" not in proc.stderr


def test_cli_quantify_local_cluster_above_threshold(files, tmp_path):
    import anndata as ad

    proc = _run(files, tmp_path / "cluster.h5ad", "--in-process-max", "0")
    assert "tile" in proc.stderr  # the progress bar over the tiles
    t = _check(files, tmp_path / "cluster.h5ad")
    assert t.uns["carspatial"]["quantify"]["scheduler"].startswith("LocalCluster")
    small = tmp_path / "small.h5ad"
    _run(files, small)
    s = ad.read_h5ad(small)
    np.testing.assert_array_equal(s.X, t.X)  # one block in-process == tiles on the cluster
    np.testing.assert_allclose(s.obsm["spatial"], t.obsm["spatial"], rtol=1e-13)  # tile means combined
