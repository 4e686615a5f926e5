"""Transcripts: view queries and density images equal brute force; out-of-core build equals in-memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io.transcripts import ColumnSpec, build_transcripts, frame_chunks
from napari_carspatial.model import SampleError
from napari_carspatial.model.points import transcripts_from_arrays

GENES = [f"G{i}" for i in range(12)]


def _points(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.uniform(-0.5, 999.4, n), "y": rng.uniform(-0.5, 799.4, n),
                         "gene": rng.choice(GENES, n), "cell": rng.integers(0, 50, n),
                         "q": rng.uniform(0, 40, n).astype(np.float32), "comp": rng.choice(["Nuclear", "Membrane"], n)})


def _brute(df, bbox=None, genes=None, qmin=None):
    m = np.ones(len(df), bool)
    if bbox is not None:
        y0, x0, y1, x1 = bbox
        x, y = df["x"].to_numpy(np.float32), df["y"].to_numpy(np.float32)
        m &= (x >= np.float32(x0)) & (x <= np.float32(x1)) & (y >= np.float32(y0)) & (y <= np.float32(y1))
    if genes is not None:
        m &= df["gene"].isin(genes).to_numpy()
    if qmin is not None:
        m &= df["q"].to_numpy() >= qmin
    return df[m]


@pytest.fixture(scope="module")
def df():
    return _points()


@pytest.fixture(scope="module")
def tr(df):
    codes = pd.Index(GENES).get_indexer(df["gene"])
    return transcripts_from_arrays(df["x"], df["y"], codes, GENES, cell_id=df["cell"], quality=df["q"],
                                   shape_yx=(800, 1000), bin_px=64, quality_name="qv")


@pytest.mark.parametrize("bbox,genes,qmin", [
    ((100, 200, 300, 450), None, None),
    ((0, 0, 799, 999), ["G1", "G5"], 20.0),
    ((-50, -50, 63.5, 63.5), ["G0"], None),
    ((700.2, 900.7, 2000, 2000), None, 35.0),
    (None, ["G11"], 10.0),
    ((400, 400, 399, 500), None, None),  # empty box
])
def test_query_equals_brute_force(df, tr, bbox, genes, qmin):
    r = tr.query(bbox=bbox, genes=genes, min_quality=qmin, columns=("x", "y", "gene", "cell_id", "quality"))
    ref = _brute(df, bbox, genes, qmin)
    assert len(r["x"]) == len(ref)
    a = np.lexsort((r["y"], r["x"]))
    b = np.lexsort((ref["y"].to_numpy(np.float32), ref["x"].to_numpy(np.float32)))
    np.testing.assert_array_equal(r["x"][a], ref["x"].to_numpy(np.float32)[b])
    np.testing.assert_array_equal(tr.gene_names(r["gene"][a]), ref["gene"].to_numpy()[b])
    np.testing.assert_array_equal(r["cell_id"][a], ref["cell"].to_numpy()[b])


def test_query_budget_and_errors(tr):
    r = tr.query(max_points=100, seed=1)
    assert len(r["x"]) == 100
    with pytest.raises(KeyError, match="no gene 'IL18'"):
        tr.query(genes=["IL18"])
    with pytest.raises(KeyError, match="no transcript column"):
        tr.query(columns=["nope"])


def test_density_equals_histogram(df, tr):
    ny, nx = tr.bins_shape
    ey, ex = np.arange(ny + 1) * 64 - 0.5, np.arange(nx + 1) * 64 - 0.5
    h = np.histogram2d(df["y"], df["x"], bins=[ey, ex])[0]
    np.testing.assert_array_equal(tr.density(), h)
    sel = df["gene"].isin(["G2", "G3"])
    np.testing.assert_array_equal(tr.density(genes=["G2", "G3"]), np.histogram2d(df["y"][sel], df["x"][sel], bins=[ey, ex])[0])
    q = df["q"] >= 25
    np.testing.assert_array_equal(tr.density(min_quality=25, chunk_rows=777),
                                  np.histogram2d(df["y"][q], df["x"][q], bins=[ey, ex])[0])
    pyr = tr.density_pyramid(min_side=2)
    assert all(lv.sum() == len(df) for lv in pyr) and max(pyr[-1].shape) <= 2
    (s, _), (t, _) = tr.density_transform(1)
    assert s == 128 and t == 63.5
    assert tr.gene_counts() == df["gene"].value_counts().reindex(GENES, fill_value=0).to_dict()


def test_out_of_core_build_equals_in_memory(df, tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path))
    spec = ColumnSpec(x="x", y="y", gene="gene", cell_id="cell", quality="q", extra={"compartment": "comp"})
    calls = []

    def chunks():
        calls.append(1)
        return frame_chunks(df, rows=3001)()

    big = build_transcripts(chunks, spec, shape_yx=(800, 1000), genes=GENES, bin_px=64, quality_name="qv",
                            cache_key=["test", 1], in_memory_max_rows=0)
    small = build_transcripts(frame_chunks(df), spec, shape_yx=(800, 1000), genes=GENES, bin_px=64, quality_name="qv")
    assert isinstance(big.columns["x"], np.memmap) and not isinstance(small.columns["x"], np.memmap)
    for c in ("x", "y", "gene", "cell_id", "quality", "compartment"):
        np.testing.assert_array_equal(np.asarray(big.columns[c]), small.columns[c])
    np.testing.assert_array_equal(big.offsets, small.offsets)
    assert big.metadata["extra_categories"]["compartment"] == small.metadata["extra_categories"]["compartment"]
    n_calls = len(calls)
    again = build_transcripts(chunks, spec, shape_yx=(800, 1000), genes=GENES, bin_px=64, quality_name="qv",
                              cache_key=["test", 1], in_memory_max_rows=0)
    assert len(calls) == n_calls  # reused from the cache: the source was not read again
    np.testing.assert_array_equal(np.asarray(again.columns["x"]), small.columns["x"])
    counts = small.counts_per_cell([3, 7])
    sub = df[df["cell"].isin([3, 7])]
    assert counts.sum() == len(sub) and counts[0].sum() == (sub["cell"] == 3).sum()


def test_bad_coordinates(df):
    bad = df.copy()
    bad.loc[5, "x"] = np.nan
    spec = ColumnSpec(x="x", y="y", gene="gene")
    with pytest.raises(SampleError, match="missing or non-numeric coordinates"):
        build_transcripts(frame_chunks(bad), spec)
    with pytest.raises(SampleError, match="NaN or infinite"):
        transcripts_from_arrays([np.nan], [1.0], [0], ["G0"])
