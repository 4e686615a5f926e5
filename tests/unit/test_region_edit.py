"""One open segmentation region with its own undo stack (editing/region_edit.py), without Qt:
every Segmentation-dock action (merge, delete, grow, shrink, split by line / seeds, new cell,
paint) is one step that undo / redo restore exactly; commit names the operations."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.editing import RegionEdit, SegmentationEditor
from napari_carspatial.editing import segmentation as se
from napari_carspatial.model import Sample, get_log


def _sample():
    lab = np.zeros((60, 80), np.uint32)
    lab[5:25, 5:25] = 1
    lab[5:25, 25:45] = 2          # touches 1
    lab[35:55, 10:50] = 3         # one wide cell to split
    lab[40:45, 60:65] = 4         # debris
    ids = [1, 2, 3, 4]
    obs = pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(["Tumor", "Tumor", "CAR T", "Other"])},
                       index=[str(i) for i in ids])
    t = ad.AnnData(X=np.ones((4, 1), np.float32), obs=obs)
    t.var_names = ["DAPI"]
    t.obsm["spatial"] = np.array([[15, 15], [35, 15], [30, 45], [62, 42]], float)
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region", "region": "r"}
    img = np.ones((1, 60, 80), np.float32)
    return Sample("edit", image=[img], channel_names=["DAPI"], labels=[lab], table=t)


@pytest.fixture
def edit():
    s = _sample()
    ed = SegmentationEditor(s, reviewer="r")
    return RegionEdit(ed, ed.region(0, 60, 0, 80))


def test_each_operation_is_one_exact_undo_step(edit):
    start = edit.data.copy()
    states = [start]
    edit.select([1, 2])
    assert edit.merge() is not None
    states.append(edit.data.copy())
    assert edit.delete([4]) == [4]
    states.append(edit.data.copy())
    assert edit.grow([3], n=2) == [3]
    states.append(edit.data.copy())
    assert edit.shrink([3], n=1) == [3]
    states.append(edit.data.copy())
    out = edit.split_by_line([[30, 30], [58, 30]])       # crosses cell 3 (vertical cut)
    assert out is not None
    assert 3 in out
    states.append(edit.data.copy())
    new = edit.draw([[[50, 60], [50, 70], [58, 70], [58, 60]]])
    assert new is not None
    states.append(edit.data.copy())
    assert [s.name for s in edit.undo_stack] == ["merge_cells", "delete_cells", "grow_cell", "shrink_cell",
                                                 "split_cell_by_line", "draw_cell"]
    for expected in reversed(states[:-1]):
        edit.undo()
        np.testing.assert_array_equal(edit.data, expected)
    assert edit.undo() is None
    for expected in states[1:]:
        edit.redo()
        np.testing.assert_array_equal(edit.data, expected)
    assert edit.redo() is None


def test_paint_strokes_are_steps_and_a_new_step_clears_redo(edit):
    edit.data[0:3, 0:3] = 7                      # napari painting into the crop
    assert edit.can_undo
    assert edit.record_paint()
    assert not edit.record_paint()               # nothing new since
    edit.data[0:2, 70:72] = 8
    assert edit.undo() == "paint"                # the unrecorded stroke first
    assert not (edit.data == 8).any()
    assert (edit.data == 7).any()
    edit.merge([1, 2])                           # a new step: redo is gone
    assert not edit.can_redo


def test_split_by_seeds_and_selection_rules(edit):
    with pytest.raises(ValueError, match="at least 2"):
        edit.merge([1])
    with pytest.raises(ValueError, match="crosses no cell"):
        edit.split_by_line([[0, 60], [2, 79]])
    assert edit.toggle(3) == [3]
    out = edit.split_by_seeds([[45, 15], [45, 45]])  # the selected cell, two seeds
    assert out is not None
    assert len(out) == 2
    assert edit.selection == []
    assert edit.cell_at(45, 15) != edit.cell_at(45, 45)
    edit.select([1, 999])
    assert edit.selection == [1]                 # ids not in the crop are dropped


def test_commit_names_the_operations_and_updates_the_table(edit):
    t = edit.editor.sample.table
    assert edit.commit() is None                 # nothing to write
    edit.merge([1, 2])
    edit.delete([4])
    res = edit.commit()
    assert res is not None
    assert 4 in res.removed
    assert len(set(res.removed) & {1, 2}) == 1      # the smaller of the merged pair is gone
    assert not edit.dirty
    assert edit.pending == []
    t = edit.editor.sample.table
    log = get_log(t)
    commits = log[log["action"] == "segmentation.edit"]
    assert len(commits) == 1
    assert "merge_cells, delete_cells" in commits["note"].iloc[0]
    assert log["action"].iloc[-1] == "segmentation.merge_type"   # the merged cell's type, audited
    se.check_consistency(np.asarray(edit.editor.sample.labels[0]), t)
    edit.grow([3], n=1)
    res = edit.commit()
    assert get_log(edit.editor.sample.table)["action"].iloc[-1] == "segmentation.grow_cell"
    assert res.updated == [3]
