"""Cellular neighbourhoods on the demo: deterministic, meaningful, stored for the legend."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.analysis.niches import cellular_neighborhoods, store_niches


@pytest.fixture(scope="module")
def post():
    from napari_carspatial.datasets import demo_sample

    return demo_sample(size=1200, timepoint="post", image=False).table


def test_niches_deterministic_and_named(post):
    r1 = cellular_neighborhoods(post, k=10, n_niches=6, seed=0)
    r2 = cellular_neighborhoods(post, k=10, n_niches=6, seed=0)
    np.testing.assert_array_equal(np.asarray(r1.labels), np.asarray(r2.labels))
    assert len(r1.labels) == post.n_obs and len(r1.labels.categories) == 6
    assert list(r1.sizes) == sorted(r1.sizes, reverse=True)
    assert all(c.startswith(f"CN{i + 1} ") for i, c in enumerate(r1.labels.categories))
    np.testing.assert_allclose(r1.composition.sum(axis=1), 1.0)
    assert "niche" not in post.obs  # not stored unless asked


def test_niches_find_tumor_and_car_t_neighborhoods(post):
    r = cellular_neighborhoods(post, k=10, n_niches=6, seed=0)
    comp = r.composition
    tum = comp["Tumor"] + comp["Tumor (antigen-neg)"]
    assert tum.max() > 0.8  # a tumour-nest niche
    car_niche = comp["CAR T"].idxmax()
    assert comp.loc[car_niche, "CAR T"] > 2 * (post.obs["cell_type"] == "CAR T").mean()
    # the CAR T niche sits at the invasive margin (ground truth compartment)
    in_car = np.asarray(r.labels) == car_niche
    assert (post.obs["compartment"].to_numpy()[in_car] == "Invasive margin").mean() > 0.6


def test_store_niches_with_region_mask(post):
    a = post.copy()
    m = np.zeros(a.n_obs, bool)
    m[: a.n_obs // 2] = True
    sub = a[m].copy()
    r = cellular_neighborhoods(sub, k=6, n_niches=3, seed=1)
    store_niches(a, r, mask=m)
    assert a.obs["niche"].cat.categories[-1] == "outside"
    assert (a.obs["niche"][~m] == "outside").all()
    assert len(a.uns["niche_colors"]) == 4
    with pytest.raises(ValueError):
        store_niches(a, r)
