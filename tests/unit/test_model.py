"""Sample validation, conventions and chunked label statistics (headless)."""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_carspatial.model import (
    ROI,
    Sample,
    SampleError,
    get_table_link,
    label_stats,
    pixel_size_um,
    set_table_link,
    spatial_to_yx,
    yx_to_spatial,
)


def _mask():
    lab = np.zeros((40, 50), np.uint32)
    lab[2:6, 3:9] = 824          # non-consecutive ids, like real masks
    lab[10:20, 10:15] = 7
    lab[30:39, 40:49] = 100000
    return lab


def _table(ids, **obs):
    obs = {"cell_id": ids, **obs}
    return ad.AnnData(obs=pd.DataFrame(obs, index=[f"c{i}" for i in range(len(ids))]))


def test_axis_conversion_roundtrip():
    xy = np.array([[1.0, 2.0], [3.0, 4.0]])
    yx = spatial_to_yx(xy)
    np.testing.assert_array_equal(yx, [[2.0, 1.0], [4.0, 3.0]])
    np.testing.assert_array_equal(yx_to_spatial(yx), xy)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        spatial_to_yx(np.zeros(3))


def test_label_stats_numpy_equals_dask_equals_scipy():
    lab = _mask()
    a = label_stats(lab)
    b = label_stats(da.from_array(lab, chunks=(7, 11)))   # cells cut across chunks
    pd.testing.assert_frame_equal(a, b)
    ids = np.unique(lab)[1:]
    np.testing.assert_array_equal(a["id"], ids)
    np.testing.assert_array_equal(a["n"], ndimage.sum_labels(np.ones_like(lab), lab, ids))
    com = np.array(ndimage.center_of_mass(np.ones_like(lab), lab, ids))
    np.testing.assert_allclose(a[["y", "x"]].to_numpy(), com)


def test_validate_computes_centroids_and_declares_link():
    s = Sample("s1", image=[np.zeros((2, 40, 50), np.float32)], labels=[_mask()],
               table=_table([7, 824, 100000]), pixel_size_um=0.65).validate()
    t = s.table
    link = get_table_link(t)
    assert link == {"region": "s1_labels", "region_key": "region", "instance_key": "cell_id"}
    assert list(t.obs["region"].unique()) == ["s1_labels"]
    # cell 7 occupies rows 10..19, cols 10..14 -> centre (y 14.5, x 12); obsm is (x, y)
    np.testing.assert_allclose(t.obsm["spatial"][0], [12.0, 14.5])
    assert pixel_size_um(t) == pytest.approx(0.65)
    assert t.obs["area"].tolist() == [50, 24, 81]


def test_validate_shape_mismatch_names_both_files():
    s = Sample("s", image=[np.zeros((2, 41, 50))], labels=[_mask()],
               paths={"image": "/data/img.ome.tif", "mask": "/data/mask.tif"})
    with pytest.raises(SampleError) as e:
        s.validate()
    msg = str(e.value)
    assert "/data/mask.tif" in msg and "(40, 50)" in msg and "(41, 50)" in msg and "img.ome.tif" in msg


def test_validate_ids_not_matching_gives_counts_and_examples():
    s = Sample("s", labels=[_mask()], table=_table([7, 824, 5, 6]), paths={"table": "cells.csv", "mask": "m.tif"})
    with pytest.raises(SampleError) as e:
        s.validate()
    msg = str(e.value)
    assert msg.startswith("cells.csv: ")
    assert "2 of 4 table ids are not in the mask (e.g. [5, 6])" in msg
    assert "1 of 3 mask ids have no table row (e.g. [100000])" in msg


def test_validate_duplicate_ids():
    s = Sample("s", labels=[_mask()], table=_table([7, 7, 824, 100000]), paths={"table": "t.h5ad"})
    with pytest.raises(SampleError, match=r"t.h5ad: 1 cell id\(s\) appear more than once.*\[7\]"):
        s.validate()


def test_validate_float_mask_and_bad_channel_names():
    with pytest.raises(SampleError, match="integer cell ids"):
        Sample("s", labels=[_mask().astype(float)], paths={"mask": "m.tif"}).validate()
    with pytest.raises(SampleError, match="2 channel names for 3 channels"):
        Sample("s", image=[np.zeros((3, 4, 4))], channel_names=["a", "b"], paths={"image": "i.tif"}).validate()


def test_validate_nan_coordinates_recomputed_from_mask():
    t = _table([7, 824, 100000])
    t.obsm["spatial"] = np.array([[np.nan, 1.0], [5.0, 3.5], [44.0, 34.0]])
    s = Sample("s", labels=[_mask()], table=t).validate()
    np.testing.assert_allclose(s.table.obsm["spatial"][0], [12.0, 14.5])
    t2 = _table([7])
    t2.obsm["spatial"] = np.array([[np.nan, 1.0]])
    with pytest.raises(SampleError, match="NaN"):
        Sample("s", table=t2).validate()


def test_duplicate_channel_names_made_unique():
    s = Sample("s", image=[np.zeros((3, 4, 4))], channel_names=["CD3", "CD3", "DAPI"]).validate()
    assert s.channel_names == ["CD3", "CD3_1", "DAPI"]


def test_set_table_link_requires_column():
    t = _table([1, 2])
    with pytest.raises(KeyError):
        set_table_link(t, region="r", instance_key="nope")


def test_roi_contains_vectorised_and_validates():
    roi = ROI("core", [[0, 0], [0, 10], [10, 10], [10, 0]], cls="Tumor core")
    inside = roi.contains(np.array([[5, 5], [15, 5], [9.5, 0.5]]))
    assert inside.tolist() == [True, False, True]
    assert roi.area_px() == 100
    with pytest.raises(ValueError, match="at least 3"):
        ROI("bad", [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="NaN"):
        ROI("bad", [[0, 0], [1, np.nan], [2, 2]])


def test_blinded_metadata_hides_clinical_fields():
    s = Sample("s", metadata={"sample": "P1-post", "patient": "P1", "timepoint": "post", "response": "CR", "stain": "panel A"})
    assert s.public_metadata(blinded=True) == {"sample": "P1-post", "stain": "panel A"}


def test_short_sample_names_and_montage():
    from napari_carspatial._napari.layers import montage_offsets, short_names

    assert short_names(["20210305_NE_mockData1_001", "20210305_NE_mockData2_001"]) == ["mockData1_001", "mockData2_001"]
    assert short_names(["E34", "G01"]) == ["E34", "G01"]
    assert short_names(["only"]) == ["only"]
    samples = [Sample(f"s{i}", image=[np.zeros((1, 10, 20))]) for i in range(5)]
    offs = montage_offsets(samples)
    assert len(set(offs)) == 5 and offs[0] == (0.0, 0.0)
    assert offs[1][0] == 0 and offs[1][1] > 20          # same row, to the right, with a gap
    assert offs[3][0] > 10                               # 3 columns: 4th sample on the next row


def test_contrast_limits_histogram_equals_percentile():
    from napari_carspatial._napari.layers import contrast_limits

    rng = np.random.default_rng(0)
    a = rng.integers(0, 65535, (2, 200, 200)).astype(np.uint16)
    a[1] = rng.poisson(5, (200, 200))
    b = rng.integers(-500, 500, (1, 50, 50)).astype(np.int16)
    for arr in (a, b):
        got = contrast_limits(arr)
        ref = [tuple(float(v) for v in np.percentile(c, [1, 99.8], method="lower")) for c in arr]
        assert got == ref
    f = rng.random((1, 100, 100)).astype(np.float32)
    assert contrast_limits(f)[0] == pytest.approx(tuple(np.percentile(f[0], [1, 99.8])), abs=1e-6)
    const = np.full((1, 10, 10), 7, np.uint16)
    assert contrast_limits(const) == [(7.0, 8.0)]


def test_edit_log_appends_and_survives_h5ad(tmp_path):
    from napari_carspatial.model.edit_log import cell_ids_of, export_csv

    t = _table([7, 824, 100000])
    from napari_carspatial.model import get_log, record

    assert get_log(t).empty
    record(t, "relabel", cell_ids=np.array([7, 824]), column="cell_type_curated", old=["Tumor", "Tumor"],
           new="CAR T", note="CAR+ rim", reviewer="dr. ünïcode")
    record(t, "undo", cell_ids=[7, 824], column="cell_type_curated", old="CAR T", new=["Tumor", "Tumor"])
    log = get_log(t)
    assert list(log["action"]) == ["relabel", "undo"]
    assert cell_ids_of(log.iloc[0]) == [7, 824]
    assert log.iloc[0]["reviewer"] == "dr. ünïcode"
    t.write_h5ad(tmp_path / "t.h5ad")
    import anndata as ad2

    back = get_log(ad2.read_h5ad(tmp_path / "t.h5ad"))
    pd.testing.assert_frame_equal(back.reset_index(drop=True), log.reset_index(drop=True))
    export_csv(t, tmp_path / "log.csv")
    assert pd.read_csv(tmp_path / "log.csv").shape == (2, 8)


def test_contrast_reads_only_sampled_blocks_of_a_strided_level():
    import dask.array as da

    from napari_carspatial._napari.layers import sampled_blocks

    reads = []

    def count(block, block_info=None):
        reads.append(block_info[None]["chunk-location"])
        return block

    lvl0 = da.ones((2, 4096, 4096), chunks=(1, 256, 256), dtype=np.uint16).map_blocks(count, dtype=np.uint16)
    small = lvl0[:, ::4, ::4]              # a "pyramid" made by striding: 16 x 16 blocks of 64 px
    sub = sampled_blocks(small, max_blocks=16)
    assert sub.shape[0] == 2 and sub.shape[1] <= 4 * 64 and sub.shape[2] <= 4 * 64
    sub.compute()
    assert len(reads) == 2 * 16            # 16 sampled level-0 chunks per channel, not 256
    tiny = da.ones((2, 100, 100), chunks=(1, 100, 100))
    assert sampled_blocks(tiny) is tiny


def test_roi_with_hole():
    outer = [[0, 0], [0, 10], [10, 10], [10, 0]]
    hole = [[4, 4], [4, 6], [6, 6], [6, 4]]
    roi = ROI("ring", outer, holes_yx=[hole])
    assert roi.contains(np.array([[5, 5], [1, 1], [20, 20]])).tolist() == [False, True, False]
    assert roi.area_px() == 96
