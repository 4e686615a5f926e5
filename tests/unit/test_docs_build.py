"""The documentation site builds without a warning, and its API reference lists the public API.

``mkdocs build --strict`` (mkdocs + mkdocstrings, ``mkdocs.yml``) turns every warning into a
failure: a broken link or nav entry, a docstring parameter that is not in the signature, a
documented parameter without a type, an unresolvable cross-reference. The build runs in this
process (the package is imported once), into a temporary folder.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["model", "io", "analysis", "datasets", "review", "editing"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        config = load_config(str(ROOT / "mkdocs.yml"), strict=True, site_dir=str(out))
        build(config)  # raises mkdocs.exceptions.Abort when strict mode saw a warning
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    assert warnings == []
    return out


def test_docs_build_strict(site):
    assert (site / "index.html").is_file()
    for page in ["architecture", "curation", "open-data", "review"]:
        assert (site / page / "index.html").is_file(), page


@pytest.mark.parametrize("package", PACKAGES)
def test_api_page_lists_every_public_name(site, package):
    pkg = importlib.import_module(f"napari_carspatial.{package}")
    page = (site / "api" / package / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(napari_carspatial[^"]*)"', page))
    shown = {i.rsplit(".", 1)[-1] for i in ids}
    constants = set(re.findall(r"<td><code>(\w+)</code></td>", page))
    missing = [name for name in pkg.__all__ if name not in shown and name not in constants]
    assert missing == [], f"api/{package}.md does not show {missing}"


def _hook(name):
    import sys

    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_sphinx_roles_become_optional_autorefs():
    hook = _hook("api_pages")
    html = (":func:<code>~napari_carspatial.io.tables.read_table</code> and :class:<code>Sample</code> "
            "and :mod:<code>.curation</code>")
    out = hook.ROLE.sub(lambda m: hook._role(m, "napari_carspatial.model"), html)
    assert out == ('<autoref identifier="napari_carspatial.io.tables.read_table" optional><code>read_table</code>'
                   '</autoref> and <autoref identifier="napari_carspatial.model.Sample" optional><code>Sample</code>'
                   '</autoref> and <code>curation</code>')


def test_known_warning_hook_filters_only_its_entries():
    hook = _hook("known_warnings")
    f = hook._DropKnown()
    known_file, known_text = hook.KNOWN[0]
    kept = logging.LogRecord("mkdocs.plugins.griffe", logging.WARNING, "", 0,
                             "griffe: src/napari_carspatial/io/tiff.py:1: Parameter 'op_name' does not appear", None, None)
    dropped = logging.LogRecord("mkdocs.plugins.griffe", logging.WARNING, "", 0,
                                f"griffe: {known_file}:127: Parameter {known_text} does not appear", None, None)
    assert f.filter(kept) is True
    assert f.filter(dropped) is False
