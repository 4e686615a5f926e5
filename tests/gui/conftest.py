"""GUI tests run napari under a real (virtual) X display.

In CI (``CARSPATIAL_REQUIRE_GUI=1``, set by ``make test``) a missing display is an error, never a
skip: the GUI tests must really run there.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DISPLAY"):
        return
    if os.environ.get("CARSPATIAL_REQUIRE_GUI"):
        raise pytest.UsageError(
            "CARSPATIAL_REQUIRE_GUI is set but there is no DISPLAY: run the tests with 'make test' "
            "(it starts Xvfb), or install xvfb and use xvfb-run."
        )
    skip = pytest.mark.skip(reason="no X display (run 'make test', which uses Xvfb)")
    for item in items:
        if "tests/gui" in str(item.fspath):
            item.add_marker(skip)
