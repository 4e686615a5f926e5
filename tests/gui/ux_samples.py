"""Small samples for the look-and-layout GUI tests (issue 14)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.model import Sample

MARKERS = ["DAPI", "PanCK", "MSLN", "CD3", "CAR", "CD68", "CD20", "Ki-67", "PD-1", "CD163", "SMA", "PD-L1"]


def grid_sample(name="grid", n_side=6, cell=10, markers=MARKERS, pixel_size_um=1.0,
                types=("CAR T", "Tumor", "Macrophage")):
    """n_side x n_side square cells (ids 3, 6, 9, ...) with known types and marker means."""
    size = n_side * cell
    yy, xx = np.mgrid[0:size, 0:size]
    lab = ((yy // cell) * n_side + (xx // cell) + 1).astype(np.uint32) * 3
    ids = np.unique(lab)
    cell_types = np.array(types)[np.arange(ids.size) % len(types)]
    rng = np.random.default_rng(1)
    img = rng.random((len(markers), size, size), dtype=np.float32)
    idx = np.searchsorted(ids, lab.ravel())
    n = np.bincount(idx)
    X = np.stack([np.bincount(idx, weights=img[c].ravel()) / n for c in range(len(markers))], axis=1)
    yx = np.array([[(i // n_side) * cell + (cell - 1) / 2, (i % n_side) * cell + (cell - 1) / 2]
                   for i in range(ids.size)])
    t = ad.AnnData(X=X.astype(np.float32),
                   obs=pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(cell_types),
                                     "area": np.full(ids.size, float(cell * cell))},
                                    index=[f"c{i}" for i in ids]))
    t.var_names = list(markers)
    t.obsm["spatial"] = yx[:, ::-1].copy()
    return Sample(name, image=[img], channel_names=list(markers), pixel_size_um=pixel_size_um, labels=[lab],
                  table=t).validate()


@pytest.fixture(autouse=True)
def _private_user_dirs(monkeypatch, tmp_path):
    """Autosaves, recovery files and remembered settings of a test stay in its temporary folder."""
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CARSPATIAL_CONFIG_DIR", str(tmp_path / "config"))
