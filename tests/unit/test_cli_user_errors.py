"""User mistakes on real data reach the user as one ERROR line naming the problem, exit 2, no
traceback (QA1 M5 and M6 cases)."""

from __future__ import annotations

import pytest

from napari_carspatial.cli import main


def _real_e34(cytomapper_dir):
    return [str(cytomapper_dir / "images" / "E34_imc.tiff"), "--mask", str(cytomapper_dir / "masks" / "E34_mask.tiff"),
            "--table", str(cytomapper_dir / "cells.csv")]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("extra,expect", [
    (["--cell-type-key", "Nope"], "no column 'Nope' in the cell table"),           # was a KeyError traceback
    (["--roles", "{bad"], "the role mapping is not valid JSON"),                    # was a JSONDecodeError
    (["--stats", "cart,bogus"], "unknown statistic(s) bogus"),
])
def test_analyze_user_errors(cytomapper_dir, tmp_path, capsys, extra, expect):
    """QA M5, analyze part (fixed by the vocab merge's CLI hygiene; these are its tests on real data)."""
    rc = main(["analyze", *_real_e34(cytomapper_dir), "-o", str(tmp_path / "o"), "--no-progress", *extra])
    assert rc == 2
    assert expect in _one_error(capsys)
