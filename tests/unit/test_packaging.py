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
