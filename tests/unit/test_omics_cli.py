"""``carspatial export`` and ``carspatial ligrec`` headless, on the demo and the real Xenium crop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.cli import main

spatialdata = pytest.importorskip("spatialdata")


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """The CosMx link folders and transcript indexes go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def test_export_demo_spatialdata_and_geojson(tmp_path):
    assert main(["export", "demo", "--size", "384", "-o", str(tmp_path)]) == 0
    zarrs = list(tmp_path.glob("*.zarr"))
    assert len(zarrs) == 1
    sdata = spatialdata.read_zarr(zarrs[0])
    from spatialdata.transformations import get_transformation

    img = next(iter(sdata.images.values()))
    m = get_transformation(img, "global").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    np.testing.assert_allclose(np.diag(m)[:2], [0.5, 0.5])  # the demo's 0.5 µm pixels
    assert sdata.tables["table"].uns["spatialdata_attrs"]["region"] in sdata.labels
    gj = list(tmp_path.glob("*_rois.geojson"))
    if gj:  # the demo carries ROIs: QuPath GeoJSON next to the store
        assert json.loads(gj[0].read_text())["type"] == "FeatureCollection"
    # exists -> refused without --overwrite (one ERROR line, exit 2)
    assert main(["export", "demo", "--size", "384", "-o", str(tmp_path), "--format", "spatialdata"]) == 2
    assert main(["export", "demo", "--size", "384", "-o", str(tmp_path), "--format", "spatialdata", "--overwrite"]) == 0


def test_export_xenium_crop(real_data_root, tmp_path):
    pytest.importorskip("spatialdata_io")
    args = ["export", str(real_data_root / "xenium_crop"), "-o", str(tmp_path), "--format", "spatialdata",
            "--image-pixel-size-um", "1.7", "--image-origin-um", "1000", "1000"]
    assert main(args) == 0
    sdata = spatialdata.read_zarr(tmp_path / "xenium_crop.sdata.zarr")
    assert len(sdata.points["xenium_crop_transcripts"]) == 5260
    assert sdata.tables["table"].n_obs == 526
    assert list(sdata.images["xenium_crop_image"]["scale0"]["image"].coords["c"].values) == ["morphology_focus", "morphology_mip"]


def test_ligrec_cli_demo_protein_panel(tmp_path):
    assert main(["ligrec", "demo", "--size", "640", "-o", str(tmp_path), "--test", "spatial", "--whole"]) == 0
    t = pd.read_csv(tmp_path / "ligrec_spatial.csv")
    assert {"ligand", "receptor", "source", "target", "sender", "receiver", "z", "pvalue_adj"} <= set(t.columns)
    row = t[(t["ligand"] == "CD274") & (t["receptor"] == "PDCD1")]
    assert not row.empty and set(row["source"]) == {"PD-L1"} and set(row["target"]) == {"PD-1"}  # protein names
    assert (tmp_path / "ligrec_spatial_whole.png").stat().st_size > 5000
    m = pd.read_csv(tmp_path / "ligrec_metrics.csv")
    assert "lr_n_tested" in set(m["metric"])


def test_ligrec_cli_cosmx_with_leiden_types(real_data_root, tmp_path):
    """Real mouse-brain CosMx panel: liana's mouse consensus resource, cells typed by Leiden."""
    pytest.importorskip("spatialdata_io")
    out = tmp_path / "o"
    args = ["ligrec", str(real_data_root / "cosmx_crop"), "--pixel-size-um", "0.18", "-o", str(out), "--cell-types",
            "leiden", "--resolution", "1.0", "--pairs", "mouseconsensus", "--test", "both", "--n-perms", "50",
            "--min-edges", "1", "--save-table", str(tmp_path / "t.h5ad")]
    assert main(args) == 0
    for f in ("ligrec_spatial.csv", "ligrec_cluster.csv", "params.json", "ligrec_cluster_whole.png"):
        assert (out / f).exists(), f
    t = pd.read_csv(out / "ligrec_cluster.csv")
    assert len(t) > 50 and t["pvalue"].notna().any()  # mouse gene symbols matched the resource
    import anndata as ad

    tab = ad.read_h5ad(tmp_path / "t.h5ad")
    assert "cell_type_rna" in tab.obs and "ligrec" in tab.uns["carspatial"]["analysis"]


def test_ligrec_cli_panel_without_pairs(real_data_root, tmp_path, caplog):
    """The Xenium crop's 30-gene test panel holds no ligand-receptor pair of any liana resource: one clear line."""
    pytest.importorskip("spatialdata_io")
    args = ["ligrec", str(real_data_root / "xenium_crop"), "-o", str(tmp_path), "--cell-types", "leiden",
            "--pairs", "consensus"]
    assert main(args) == 2
    assert "none of the ligand-receptor pairs has its genes in the panel" in caplog.text


def test_ligrec_cli_missing_cell_types(real_data_root, tmp_path, caplog):
    pytest.importorskip("spatialdata_io")
    assert main(["ligrec", str(real_data_root / "xenium_crop"), "-o", str(tmp_path)]) == 2
    assert "--cell-types leiden" in caplog.text
