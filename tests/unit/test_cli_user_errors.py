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


def test_info_on_a_multi_image_table_names_the_real_cause(steinbock_dir, capsys):
    """QA M6: `carspatial info cells.h5ad` (steinbock, 15 images) said '42 cell id(s) appear more
    than once'; the cause is a table of several images."""
    assert main(["info", str(steinbock_dir / "cells.h5ad")]) == 2
    line = _one_error(capsys)
    assert "cells.h5ad" in line and "15 images" in line and "'Image'" in line
    assert "20210305_NE_mockData1_001" in line


def test_info_on_an_image_without_mask_says_no_table(cytomapper_dir, capsys):
    """QA M6: info on an image without a mask printed 'cells: 0'."""
    assert main(["info", str(cytomapper_dir / "images" / "E34_imc.tiff")]) == 0
    out = capsys.readouterr().out
    assert "cells:       no table (no mask either)" in out and "cells:       0" not in out
    assert main(["info", str(cytomapper_dir / "images" / "E34_imc.tiff"), "--mask",
                 str(cytomapper_dir / "masks" / "E34_mask.tiff")]) == 0
    assert "cells:       113 (measured from the mask)" in capsys.readouterr().out


def test_ligrec_finds_the_cell_type_column_by_name(cytomapper_dir, tmp_path, capsys):
    """QA low (demo names in product defaults): ligrec's --cell-type-key defaulted to the demo's
    'cell_type', so cytomapper's CellType table failed 'no cell-type column cell_type'. It is
    found by name now; this 5-marker IMC panel then fails for the real reason (no L-R genes)."""
    rc = main(["ligrec", *_real_e34(cytomapper_dir), "-o", str(tmp_path / "o")])
    assert rc == 2
    line = _one_error(capsys)
    assert "none of the ligand-receptor pairs has its genes in the panel" in line
    assert "'cell_type'" not in line
