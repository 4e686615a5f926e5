"""The plugin is installed as a valid npe2 plugin with a working console command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_npe2_validate_with_imports():
    res = subprocess.run([_bin("npe2"), "validate", "napari-carspatial", "--imports"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in (res.stdout + res.stderr).lower()


def test_manifest_lives_inside_package():
    import napari_carspatial

    manifest = Path(napari_carspatial.__file__).with_name("napari.yaml")
    assert manifest.is_file()
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(manifest)
    assert pm.name == "napari-carspatial"
    assert {r.command for r in pm.contributions.readers} == {"napari-carspatial.get_reader"}
    assert len(pm.contributions.sample_data) == 2


def test_headless_import_does_not_pull_napari_or_qt():
    code = ("import sys, napari_carspatial, napari_carspatial.io, napari_carspatial.analysis, "
            "napari_carspatial.datasets, napari_carspatial.model;"
            "bad=[m for m in ('napari','qtpy','PyQt5','magicgui') if m in sys.modules];"
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_cli_help_and_bad_path():
    res = subprocess.run([_bin("carspatial"), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "demo" in res.stdout
    res = subprocess.run([_bin("carspatial"), "info", "/nonexistent/sample.ome.tif"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "/nonexistent/sample.ome.tif" in res.stderr
    assert "Traceback" not in res.stderr


_BLOCK_GUI = """
import importlib.abc, sys
class _NoGui(importlib.abc.MetaPathFinder):
    BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt", "npe2")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not installed (blocked: headless install)")
        return None
sys.meta_path.insert(0, _NoGui())
from napari_carspatial.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_headless_cli_quantify_and_analyze_without_napari_or_qt(tmp_path, steinbock_dir, cytomapper_dir):
    """`pip install napari-carspatial` (no napari, no Qt) runs quantify and analyze on real data.

    napari, Qt, magicgui and vispy are made unimportable in the child process, as on a cluster node
    where only the core is installed (a fresh venv with `pip install .` was also checked by hand).
    """
    sb = steinbock_dir
    out = tmp_path / "q.h5ad"
    res = subprocess.run([sys.executable, "-c", _BLOCK_GUI, "quantify",
                          str(sb / "img" / "20210305_NE_mockData1_001.tiff"),
                          str(sb / "masks_deepcell" / "20210305_NE_mockData1_001.tiff"),
                          "--panel", str(sb / "panel.csv"), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    import anndata as ad
    import pandas as pd

    table = ad.read_h5ad(out)
    expected = pd.read_csv(sb / "intensities_deepcell" / "20210305_NE_mockData1_001.csv")
    assert table.n_obs == len(expected)

    cm = cytomapper_dir
    res = subprocess.run([sys.executable, "-c", _BLOCK_GUI, "analyze", str(cm / "images" / "E34_imc.tiff"),
                          "--mask", str(cm / "masks" / "E34_mask.tiff"), "--table", str(cm / "cells.csv"),
                          "--whole", "--cell-type-key", "CellType", "--stats", "cart,nhood,interactions",
                          "-o", str(tmp_path / "analysis")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "analysis" / "metrics.csv").is_file()
