"""Named contact definitions against the published tools' own output on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.contact import CONTACT_PRESETS, contact_pairs, resolve_contact


@pytest.mark.parametrize("seg", ["deepcell", "ilastik"])
def test_steinbock_expansion_equals_steinbock_neighbor_lists(steinbock_dir, seg):
    """steinbock ``measure neighbors --type expansion --dmax 4`` wrote these lists (imcRtools reads them)."""
    import tifffile

    n_img = n_pairs = 0
    for f in sorted((steinbock_dir / f"masks_{seg}").glob("*.tiff")):
        m = tifffile.imread(f)
        nb = pd.read_csv(steinbock_dir / f"neighbors_{seg}" / f"{f.stem}.csv")
        want = {(min(a, b), max(a, b)) for a, b in zip(nb["Object"], nb["Neighbor"], strict=True)}
        got = {tuple(p) for p in contact_pairs(m, preset="steinbock_expansion", expand_px=4)}
        assert got == want, f.name
        n_img += 1
        n_pairs += len(got)
    assert n_img == 15 and n_pairs > 100


def test_presets_resolve_with_their_defaults():
    assert resolve_contact() == {"preset": "phenoptr", "membrane_width_px": 1}
    assert resolve_contact("steinbock_expansion") == {"preset": "steinbock_expansion", "expand_px": 4,
                                                      "connectivity": 1}
    # the earlier API (expand_px / connectivity alone) keeps its meaning and defaults
    assert resolve_contact(expand_px=2) == {"preset": "expand", "expand_px": 2, "connectivity": 2}
    assert resolve_contact(connectivity=1) == {"preset": "expand", "expand_px": 0, "connectivity": 1}
    for bad in ({"preset": "imcrtools"}, {"preset": "phenoptr", "membrane_width_px": 3}):
        with pytest.raises(ValueError):
            resolve_contact(**bad)
    assert all("reference" in v for v in CONTACT_PRESETS.values())


def test_phenoptr_rule_is_city_block_distance():
    m = np.zeros((5, 9), np.int64)
    m[2, 1], m[2, 3], m[2, 6], m[0, 4] = 1, 2, 3, 4  # 1-2: 2 px (L1); 2-3: 3 px; 2-4: 1 + 2 = 3
    np.testing.assert_array_equal(contact_pairs(m), [[1, 2]])
    np.testing.assert_array_equal(contact_pairs(m, membrane_width_px=2), [[1, 2], [2, 3], [2, 4]])
