"""``carspatial quantify`` on the demo written to files (local Dask cluster, progress bar)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_cli_quantify(tmp_path):
    import anndata as ad

    from napari_carspatial.datasets import write_demo

    files = write_demo(tmp_path, size=384)
    out = tmp_path / "table.h5ad"
    proc = subprocess.run([sys.executable, "-m", "napari_carspatial.cli", "quantify", str(files["image"]),
                           str(files["mask"]), "-o", str(out), "--tile", "128", "--statistics", "mean,median"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tile" in proc.stderr  # the progress bar
    t = ad.read_h5ad(out)
    ref = ad.read_h5ad(files["table"])
    assert np.array_equal(np.sort(t.obs["cell_id"].to_numpy()), np.sort(ref.obs["cell_id"].to_numpy()))
    r = ref[ref.obs["cell_id"].astype(str).to_numpy()].copy() if False else ref
    order = np.argsort(r.obs["cell_id"].to_numpy())
    np.testing.assert_allclose(t.X, np.asarray(r.X)[order], rtol=1e-4, atol=1e-4)
    assert "median" in t.layers and t.uns["spatialdata_attrs"]["instance_key"] == "cell_id"
