"""The demo is cached after its first generation (issue 14: the second ``carspatial demo`` reaches
its first frame in seconds): the whole generated sample (mask tiles, cells, rendered means, small
pyramid levels, ROIs) is read back, equal to a fresh generation, and only for the same parameters
and code, from the user cache (never the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_carspatial.datasets import _cells, _render, demo, demo_sample


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / demo.CACHE_KIND


def _no_generation(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("generated again")

    monkeypatch.setattr(_render.Renderer, "cell_means", refuse)
    monkeypatch.setattr(_cells, "rasterize_tiled", refuse)


def _same(a, b):
    assert len(a.labels) == len(b.labels) and len(a.image) == len(b.image)
    for la, lb in zip(a.labels, b.labels, strict=True):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    for la, lb in zip(a.image[1:], b.image[1:], strict=True):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    np.testing.assert_array_equal(np.asarray(a.image[0]), np.asarray(b.image[0]))   # level 0 renders from the mask
    np.testing.assert_array_equal(np.asarray(a.table.X), np.asarray(b.table.X))
    assert a.table.obs.equals(b.table.obs)
    np.testing.assert_array_equal(a.table.obsm["spatial"], b.table.obsm["spatial"])
    assert [(r.name, r.cls, r.id) for r in a.rois] == [(r.name, r.cls, r.id) for r in b.rois]
    for ra, rb in zip(a.rois, b.rois, strict=True):
        np.testing.assert_array_equal(ra.polygon_yx, rb.polygon_yx)


def test_second_demo_is_read_back_equal(cache, monkeypatch):
    first = demo_sample(size=256, seed=3)
    assert len(list(cache.glob("*.npz"))) == 1
    _no_generation(monkeypatch)
    again = demo_sample(size=256, seed=3)
    _same(first, again)
    assert again.name == first.name and again.table.uns == first.table.uns


def test_cache_equals_a_fresh_generation_without_a_cache(cache, monkeypatch, tmp_path):
    demo_sample(size=256, seed=5, timepoint="pre")
    cached = demo_sample(size=256, seed=5, timepoint="pre")
    monkeypatch.setattr(demo, "_cache_key", lambda **kw: None)     # no cache at all: the reference
    fresh = demo_sample(size=256, seed=5, timepoint="pre")
    _same(fresh, cached)


def test_a_cached_sample_is_its_own(cache):
    demo_sample(size=256, seed=3)
    a = demo_sample(size=256, seed=3)
    a.table.obs["cell_type"] = a.table.obs["cell_type"].cat.rename_categories(lambda c: f"x{c}")
    a.table.X[:] = -1
    b = demo_sample(size=256, seed=3)
    assert not str(b.table.obs["cell_type"].iloc[0]).startswith("x")
    assert float(np.asarray(b.table.X).min()) >= 0


def test_other_parameters_generate(cache, monkeypatch):
    demo_sample(size=256, seed=3)
    _no_generation(monkeypatch)
    for kw in ({"seed": 4}, {"timepoint": "pre"}, {"size": 320}, {"chunk": 128}, {"pixel_size_um": 0.4}):
        with pytest.raises(AssertionError, match="generated again"):
            demo_sample(**{"size": 256, "seed": 3, **kw})


def test_planted_and_imageless_demos_are_never_cached(cache):
    demo_sample(size=256, seed=3, plant=lambda types, **kw: types)
    demo_sample(size=256, seed=3, image=False)
    assert not list(cache.glob("*.npz"))


def test_a_changed_generator_generates_again(cache, monkeypatch):
    demo_sample(size=256, seed=3)
    monkeypatch.setattr(demo, "_code_hash", lambda: "another generator")
    _no_generation(monkeypatch)
    with pytest.raises(AssertionError, match="generated again"):
        demo_sample(size=256, seed=3)


def test_a_broken_entry_is_ignored(cache, monkeypatch):
    first = demo_sample(size=256, seed=3)
    (f,) = cache.glob("*.npz")
    f.write_bytes(f.read_bytes()[:1000])
    again = demo_sample(size=256, seed=3)       # generated again, and the entry rewritten
    _same(first, again)
    _no_generation(monkeypatch)
    demo_sample(size=256, seed=3)


def test_the_cache_is_in_the_user_cache_never_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("CARSPATIAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = demo.cache_path("k")
    assert path.is_relative_to(tmp_path / "xdg")
    repo = Path(demo.__file__).resolve().parents[3]
    demo_sample(size=256, seed=3)
    assert list((tmp_path / "xdg").rglob("*.npz"))
    assert not list(repo.rglob(f"{demo.CACHE_KIND}/*.npz"))
