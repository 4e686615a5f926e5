"""The curation session's two hooks (``editing/curation.py``): a save target ("Save" writes where
another workflow says, e.g. a review read's working copy) and a read-only mode (frozen work)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.editing import CurationSession
from napari_carspatial.model import Sample, SampleError


def _sample(tmp_path):
    n = 20
    t = ad.AnnData(X=np.ones((n, 2), np.float32),
                   obs=pd.DataFrame({"cell_id": np.arange(1, n + 1), "cell_type": pd.Categorical(["Tumor"] * n)},
                                    index=[str(i) for i in range(n)]))
    t.obsm["spatial"] = np.column_stack([np.arange(n) * 3.0, np.arange(n) * 2.0])
    src = tmp_path / "source.h5ad"
    t.write_h5ad(src)
    return Sample("s", table=t, paths={"table": str(src)})


class Target:
    label = "Save read 1"
    reviewer = "alice"

    def __init__(self, path):
        self.path = path
        self.held = True
        self.saved = []

    def save(self, core):
        core.table.write_h5ad(self.path)
        self.saved.append(core.table.obs["cell_type_curated"].astype(str).tolist())
        return self.path

    def holds(self):
        return self.held


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))


def test_save_target_writes_pins_the_reviewer_and_discards_the_recovery_file(tmp_path):
    from napari_carspatial.io.write import recovery_path

    s = _sample(tmp_path)
    cs = CurationSession(s, reviewer="someone")
    with pytest.raises(SampleError, match="no save target"):
        cs.save_to_target()
    target = Target(tmp_path / "wc.h5ad")
    cs.set_save_target(target)
    assert cs.reviewer == "alice"
    cs.reviewer = "mallory"            # the dock sets the viewer's reviewer before each edit
    assert cs.reviewer == "alice"
    cs.select(np.arange(3))
    cs.assign("Macrophage")
    assert cs.audit()["reviewer"].tolist() == ["alice"]
    cs.autosaver.autosave_now()
    rec = recovery_path(s.paths["table"])
    assert rec.is_file() and cs.recovery.offer() == rec
    assert cs.save_to_target() == target.path
    assert target.saved[-1][:4] == ["Macrophage"] * 3 + ["Tumor"]
    assert not rec.exists() and cs.autosaver.pending == 0
    # a target that lost its lock: nothing offered (recovering there could not be saved)
    cs.assign("CAR T")
    cs.autosaver.autosave_now()
    target.held = False
    assert not cs.writable and cs.recovery.offer() is None
    target.held = True
    assert cs.writable and cs.recovery.offer() == rec
    cs.set_save_target(None)
    cs.reviewer = "bob"
    assert cs.reviewer == "bob"


def test_read_only_refuses_every_edit_and_offers_no_recovery(tmp_path):
    s = _sample(tmp_path)
    cs = CurationSession(s, reviewer="alice")
    cs.select(np.arange(4))
    cs.assign("Macrophage")
    cs.autosaver.autosave_now()
    before = s.table.obs["cell_type_curated"].astype(str).tolist()
    cs.set_read_only("both reads are done")
    assert cs.read_only and cs.read_only_reason == "both reads are done" and not cs.writable
    for fn in (lambda: cs.assign("Tumor"), lambda: cs.exclude("fold"), lambda: cs.include(),
               lambda: cs.confirm(), lambda: cs.add_roi([[0, 0], [0, 9], [9, 9]], name="r", cls="Stroma")):
        with pytest.raises(SampleError, match="read-only: both reads are done"):
            fn()
    assert cs.undo() is None and cs.redo() is None and not cs.can_undo
    assert s.table.obs["cell_type_curated"].astype(str).tolist() == before
    assert cs.recovery.offer() is None
    cs.set_read_only(None)
    assert cs.can_undo and cs.undo() is not None
