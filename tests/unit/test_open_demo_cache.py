"""The demo is cached after its first generation (issue 14: the second ``carspatial demo`` reaches
its first frame in seconds): the cell means and small pyramid levels, which render the whole
image, are read back, equal to a fresh rendering, and only for the same parameters and code."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.datasets import _render, demo, demo_sample


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / demo.MEANS_CACHE_KIND


def _no_render(monkeypatch):
    def refuse(self, **kw):
        raise AssertionError("rendered again")

    monkeypatch.setattr(_render.Renderer, "cell_means", refuse)


def test_second_demo_reads_the_means_back(cache, monkeypatch):
    first = demo_sample(size=256, seed=3)
    assert len(list(cache.glob("*.npz"))) == 1
    _no_render(monkeypatch)
    again = demo_sample(size=256, seed=3)
    np.testing.assert_array_equal(np.asarray(again.table.X), np.asarray(first.table.X))
    np.testing.assert_array_equal(np.asarray(again.labels[0]), np.asarray(first.labels[0]))


def test_small_levels_round_trip(cache):
    rng = np.random.default_rng(0)
    X = rng.random((50, len(demo.CHANNELS)), dtype=np.float32)
    small = {4: rng.random((len(demo.CHANNELS), 8, 9), dtype=np.float32), 8: rng.random((len(demo.CHANNELS), 4, 4),
                                                                                        dtype=np.float32)}
    demo._store_means("k", X, small)
    X2, small2 = demo._cached_means("k", 50, (4, 8))
    np.testing.assert_array_equal(X2, X)
    assert set(small2) == {4, 8} and all(np.array_equal(small2[f], small[f]) for f in small)
    assert demo._cached_means("k", 51, (4, 8)) is None         # another cell count: not this demo's
    assert demo._cached_means("k", 50, (4,)) is None


def test_other_parameters_render(cache, monkeypatch):
    demo_sample(size=256, seed=3)
    _no_render(monkeypatch)
    with pytest.raises(AssertionError, match="rendered again"):
        demo_sample(size=256, seed=4)
    with pytest.raises(AssertionError, match="rendered again"):
        demo_sample(size=256, seed=3, timepoint="pre")


def test_planted_demos_are_never_cached(cache):
    demo_sample(size=256, seed=3, plant=lambda types, **kw: types)
    assert not list(cache.glob("*.npz"))


def test_a_changed_generator_renders_again(cache, monkeypatch):
    demo_sample(size=256, seed=3)
    monkeypatch.setattr(demo, "_code_hash", lambda: "another generator")
    _no_render(monkeypatch)
    with pytest.raises(AssertionError, match="rendered again"):
        demo_sample(size=256, seed=3)
