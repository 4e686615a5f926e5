"""The synthetic demo sample: determinism, consistency with the model, and the biology it encodes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_carspatial.datasets import (
    CELL_TYPE_COLORS,
    CELL_TYPES,
    CHANNELS,
    demo_pair,
    demo_sample,
    write_demo,
)
from napari_carspatial.model import Sample, get_table_link, instance_ids, pixel_size_um

SIZE = 1536


@pytest.fixture(scope="module")
def pair() -> tuple[Sample, Sample]:
    return demo_pair(size=SIZE, seed=0)


@pytest.fixture(scope="module")
def post(pair) -> Sample:
    return pair[1]


@pytest.fixture(scope="module")
def pre(pair) -> Sample:
    return pair[0]


def _types(s: Sample) -> np.ndarray:
    return s.table.obs["cell_type"].astype(str).to_numpy()


# ----------------------------------------------------------------------------- structure
def test_deterministic_for_a_seed():
    a = demo_sample(size=512, seed=3, image=False)
    b = demo_sample(size=512, seed=3, image=False)
    c = demo_sample(size=512, seed=4, image=False)
    np.testing.assert_array_equal(np.asarray(a.labels[0]), np.asarray(b.labels[0]))
    np.testing.assert_array_equal(a.table.X, b.table.X)
    assert a.table.obs.equals(b.table.obs)
    assert not np.array_equal(np.asarray(a.labels[0]), np.asarray(c.labels[0]))


def test_pixels_deterministic():
    a = demo_sample(size=300, seed=1, chunk=128)
    b = demo_sample(size=300, seed=1, chunk=128)
    np.testing.assert_array_equal(a.image[0][[0, 6]].compute(), b.image[0][[0, 6]].compute())
    np.testing.assert_array_equal(a.table.X, b.table.X)


def test_validates_and_links(post):
    post.validate(check_ids=True)  # every mask id has exactly one row and vice versa
    ids = instance_ids(post.table)
    mask_ids = np.unique(np.asarray(post.labels[0]))
    np.testing.assert_array_equal(np.sort(ids), mask_ids[mask_ids > 0])
    assert len(np.unique(ids)) == len(ids)
    assert ids.max() > len(ids)  # non-consecutive ids, like real masks
    link = get_table_link(post.table)
    assert link["instance_key"] == "cell_id" and link["region"] == f"{post.name}_labels"
    assert pixel_size_um(post.table) == 0.5 == post.pixel_size_um
    assert post.metadata["patient"] == "DEMO-001" and post.metadata["timepoint"] == "post"
    assert post.metadata["indication"] == "pancreatic adenocarcinoma"
    assert post.table.uns["carspatial"]["demo"]["seed"] == 0


def test_channels_and_pyramids(post):
    assert post.channel_names == list(CHANNELS) and len(CHANNELS) == 14
    assert list(post.table.var_names) == list(CHANNELS)
    assert post.table.X.dtype == np.float32
    lvl0 = post.image[0]
    assert lvl0.shape == (14, SIZE, SIZE) and lvl0.dtype == np.float32
    assert [tuple(x.shape[1:]) for x in post.image] == [(SIZE, SIZE), (SIZE // 2, SIZE // 2)]
    assert [tuple(x.shape) for x in post.labels] == [(SIZE, SIZE), (SIZE // 2, SIZE // 2)]
    assert post.labels[0].dtype == np.uint32
    # the 2x level is the mean of level 0
    crop0 = post.image[0][2, :64, :64].compute()
    crop1 = post.image[1][2, :32, :32].compute()
    np.testing.assert_allclose(crop1, crop0.reshape(32, 2, 32, 2).mean(axis=(1, 3)), rtol=1e-5)
    np.testing.assert_array_equal(post.labels[1][:50, :50].compute(), post.labels[0][:100:2, :100:2].compute())


def test_type_counts_and_colors(pre, post):
    obs = post.table.obs
    assert list(obs["cell_type"].cat.categories) == list(CELL_TYPES)
    colors = post.table.uns["cell_type_colors"]
    assert len(colors) == len(CELL_TYPES) == len(set(colors))
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors)
    frac = obs["cell_type"].value_counts(normalize=True)
    assert 0.2 < frac["Tumor"] + frac["Tumor (antigen-neg)"] < 0.7
    assert 0.02 < frac["CAR T"] < 0.15
    assert 0.02 < frac["Macrophage"] < 0.2
    assert frac["Stroma"] > 0.1
    for t in ("CD8 T", "CD4 T", "B cell", "Other"):
        assert frac[t] > 0.003, t
    # more macrophages after infusion, and more of them PD-L1+
    mac_pre = (_types(pre) == "Macrophage").mean()
    assert frac["Macrophage"] > 1.2 * mac_pre
    ipdl1 = CHANNELS.index("PD-L1")

    def pdl1_pos(s):
        m = _types(s) == "Macrophage"
        return (s.table.X[m, ipdl1] > 250).mean()

    assert pdl1_pos(post) > pdl1_pos(pre) + 0.15
    # density: about 8-12 µm cells
    area_um2 = obs["area"].to_numpy() * 0.25
    assert 40 < np.median(area_um2) < 150


def test_marker_profiles(post):
    X = post.table.X
    t = _types(post)

    def med(ct, ch):
        return float(np.median(X[t == ct, CHANNELS.index(ch)]))

    assert med("CAR T", "CAR") > 5 * med("CD8 T", "CAR")
    assert med("CAR T", "CD3") > 4 * med("Tumor", "CD3")
    assert med("CD8 T", "CD8") > 4 * med("CD4 T", "CD8")
    assert med("Tumor", "MSLN") > 5 * med("Tumor (antigen-neg)", "MSLN")
    assert med("Tumor (antigen-neg)", "PanCK") > 5 * med("Stroma", "PanCK")
    assert med("Macrophage", "CD68") > 5 * med("Tumor", "CD68")
    assert med("B cell", "CD20") > 5 * med("CD4 T", "CD20")
    assert med("Stroma", "SMA") > 5 * med("Tumor", "SMA")
    car = t == "CAR T"
    assert (X[car, CHANNELS.index("CD8")] > 300).mean() > 0.5  # mostly CD8+
    assert 0.15 < (X[car, CHANNELS.index("PD-1")] > 250).mean() < 0.8  # some PD-1+


# ----------------------------------------------------------------------------- biology
def _signed_distance_um(s: Sample, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (µm, negative inside) to the boundary of the tumour cells, per cell, and
    the zone areas it implies; computed from the mask, independently of the generator."""
    lab = np.asarray(s.labels[0])[::step, ::step]
    obs = s.table.obs
    tum_ids = obs["cell_id"].to_numpy()[obs["cell_type"].astype(str).str.startswith("Tumor").to_numpy()]
    tumor = np.isin(lab, tum_ids)
    r = int(round(12 / (s.pixel_size_um * step)))
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
    tumor = ndi.binary_opening(ndi.binary_closing(tumor, disk), disk)
    px = s.pixel_size_um * step
    dist = np.where(tumor, -ndi.distance_transform_edt(tumor), ndi.distance_transform_edt(~tumor)) * px
    xy = s.table.obsm["spatial"]
    iy = np.clip((xy[:, 1] / step).astype(int), 0, lab.shape[0] - 1)
    ix = np.clip((xy[:, 0] / step).astype(int), 0, lab.shape[1] - 1)
    return dist[iy, ix], dist


def test_car_t_enriched_at_margin_not_core(post):
    d_cell, d_map = _signed_distance_um(post)
    px_area_mm2 = (post.pixel_size_um * 4 / 1000) ** 2
    car = _types(post) == "CAR T"
    margin = (d_cell > -50) & (d_cell < 100)
    core = d_cell < -50
    area_margin = ((d_map > -50) & (d_map < 100)).sum() * px_area_mm2
    area_core = (d_map < -50).sum() * px_area_mm2
    assert area_core > 0.02 and area_margin > 0.05
    dens_margin = (car & margin).sum() / area_margin
    dens_core = (car & core).sum() / area_core
    assert dens_margin > 4 * dens_core, (dens_margin, dens_core)
    # also as a fraction of cells in the zone
    assert car[margin].mean() > 3 * car[core].mean()
    # macrophages sit close to CAR T cells at the margin
    from scipy.spatial import cKDTree

    xy = post.table.obsm["spatial"]
    mac = _types(post) == "Macrophage"
    d_mac, _ = cKDTree(xy[car]).query(xy[mac & margin])
    d_oth, _ = cKDTree(xy[car]).query(xy[margin & ~mac & ~car])
    assert np.median(d_mac) < np.median(d_oth)


def test_no_car_t_before_infusion(pre, post):
    assert (_types(pre) == "CAR T").sum() == 0
    icar = CHANNELS.index("CAR")
    car_post = np.median(post.table.X[_types(post) == "CAR T", icar])
    assert np.percentile(pre.table.X[:, icar], 99.9) < 0.2 * car_post  # CAR channel is background only


def _antigen_neg_fraction(s):
    t = _types(s)
    tum = (t == "Tumor") | (t == "Tumor (antigen-neg)")
    return (t == "Tumor (antigen-neg)").sum() / tum.sum()


def test_antigen_negative_fraction_grows_and_clusters(pre, post):
    f_pre, f_post = _antigen_neg_fraction(pre), _antigen_neg_fraction(post)
    assert 0.01 < f_pre < 0.12
    assert 0.2 < f_post < 0.45
    from scipy.spatial import cKDTree

    t = _types(post)
    tum = np.flatnonzero((t == "Tumor") | (t == "Tumor (antigen-neg)"))
    xy = post.table.obsm["spatial"][tum]
    neg = t[tum] == "Tumor (antigen-neg)"
    _, nn = cKDTree(xy).query(xy[neg], k=7)
    same = neg[nn[:, 1:]].mean()  # fraction of antigen-neg among the 6 nearest tumour neighbours
    assert same > 0.7 and same > 2 * f_post, same  # clustered, not salt-and-pepper


# ----------------------------------------------------------------------------- pixels
def test_x_is_the_mean_of_the_image_pixels():
    s = demo_sample(size=640, seed=2, chunk=256)  # cells straddle tile borders
    img = s.image[0].compute()
    lab = np.asarray(s.labels[0])
    obs = s.table.obs
    rng = np.random.default_rng(0)
    rows = rng.choice(s.n_cells, size=8, replace=False)
    # include a cell crossing the tile border at y = 256
    on_border = np.flatnonzero(np.isin(obs["cell_id"].to_numpy(), np.unique(lab[255:257, :])))
    rows = np.append(rows, on_border[:2])
    for r in rows:
        m = lab == obs["cell_id"].iloc[r]
        assert m.sum() == obs["area"].iloc[r]
        np.testing.assert_allclose(s.table.X[r], img[:, m].mean(axis=1), rtol=2e-5, atol=1e-3)
        yx = np.argwhere(m).mean(axis=0)
        np.testing.assert_allclose(s.table.obsm["spatial"][r], yx[::-1], atol=1e-6)
    assert np.all(img >= 0) and np.isfinite(img).all()
    # DAPI is brighter in nuclei than in the gaps between cells
    dapi = img[0]
    assert np.median(dapi[lab > 0]) > 3 * np.median(dapi[lab == 0])


def test_cells_are_irregular_not_squares(post):
    from skimage.measure import regionprops_table

    lab = np.asarray(post.labels[0][400:900, 400:900])
    p = regionprops_table(lab, properties=("area", "solidity", "extent", "eccentricity"))
    big = p["area"] > 30
    assert big.sum() > 200
    ecc, ext, sol, area = p["eccentricity"][big], p["extent"][big], p["solidity"][big], p["area"][big]
    assert ecc.std() > 0.1 and np.percentile(ecc, 90) > 0.8  # round lymphocytes and spindle stroma
    assert 0.5 < np.median(ext) < 0.85  # neither squares (1.0) nor lines
    assert np.median(sol) > 0.85 and sol.min() < 0.95
    assert area.std() / area.mean() > 0.3


def test_n_cells_hits_its_target():
    for n in (3000, 12000):
        s = demo_sample(n_cells=n, image=False, seed=5)
        assert abs(s.n_cells - n) / n < 0.1, (s.n_cells, n)
        assert s.image == [] and s.table.uns["carspatial"]["demo"]["x_source"] == "model"
        s.validate(check_ids=True)


def test_rois_are_ground_truth(post):
    classes = {r.cls for r in post.rois}
    assert "Tumor core" in classes
    xy = post.table.obsm["spatial"]
    t = _types(post)
    inside = np.zeros(len(t), bool)
    for r in post.rois:
        assert r.polygon_yx.min() >= 0 and r.polygon_yx.max() <= SIZE - 1
        if r.cls == "Tumor core":
            inside |= r.contains(xy[:, ::-1])
    assert inside.sum() > 50
    assert np.isin(t[inside], ["Tumor", "Tumor (antigen-neg)"]).mean() > 0.8


def test_default_size():
    s = demo_sample(seed=0)
    assert s.shape_yx == (4000, 4000)
    assert 25_000 < s.n_cells < 70_000
    assert len(s.image) == 3 and max(s.image[-1].shape[1:]) <= 1024
    assert len(s.labels) == 3 and max(s.labels[-1].shape) <= 1024
    assert (s.table.obs["cell_type"] == "CAR T").sum() > 500


def test_write_demo(tmp_path):
    import anndata as ad
    import tifffile

    paths = write_demo(tmp_path / "démo", size=1200, seed=0, timepoint="pre")
    assert set(paths) == {"image", "mask", "table"} and all(p.exists() for p in paths.values())
    with tifffile.TiffFile(paths["image"]) as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert len(series.levels) == 2
        assert series.levels[0].shape == (14, 1200, 1200) and series.levels[1].shape == (14, 600, 600)
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.5"' in ome and 'Name="MSLN"' in ome and 'Name="PD-L1"' in ome
    mask = tifffile.imread(paths["mask"])
    assert mask.dtype == np.uint32 and mask.shape == (1200, 1200)
    table = ad.read_h5ad(paths["table"])
    assert set(np.unique(mask[mask > 0])) == set(table.obs["cell_id"].to_numpy())
    assert table.uns["cell_type_colors"][list(CELL_TYPES).index("CAR T")] == CELL_TYPE_COLORS[2]
    assert not list(tmp_path.rglob("*.tmp"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="timepoint"):
        demo_sample(timepoint="during")
    with pytest.raises(ValueError, match="too small"):
        demo_sample(size=10)


def test_other_pixel_size_keeps_physical_dimensions():
    s = demo_sample(size=400, pixel_size_um=1.0, seed=0)
    s.validate(check_ids=True)
    assert s.pixel_size_um == 1.0 and s.shape_yx == (400, 400)
    area_um2 = s.table.obs["area"].to_numpy() * 1.0
    assert 40 < np.median(area_um2) < 150
    assert np.isfinite(s.table.X).all()


def test_precomputed_small_levels_equal_lazy_coarsening():
    """The in-memory small pyramid levels equal mean-coarsening level 0 (no second render pass)."""
    import dask.array as da

    s = demo_sample(size=2100, seed=3)
    assert len(s.image) == 3
    lvl0 = s.image[0][:, :2048, :2048].compute()
    ref = lvl0.reshape(14, 512, 4, 512, 4).mean(axis=(2, 4))
    got = np.asarray(s.image[2][:, :512, :512])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    ref1 = da.coarsen(np.mean, s.image[0], {1: 2, 2: 2}, trim_excess=True)[:, :300, :300].compute()
    np.testing.assert_allclose(np.asarray(s.image[1][:, :300, :300]), ref1, rtol=1e-5, atol=1e-4)
