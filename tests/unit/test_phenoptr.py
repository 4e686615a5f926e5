"""phenoptr's definitions: count_touching_cells, find_nearest_distance, count_within.

Published expectations come from phenoptr's own tests on its inForm field FIHC4__0929309_HP_IM3_2
(``tests/data/phenoptr``, see its README). The touching-cell algorithm is also checked against a
line-by-line transcription of phenoptr's ``count_touching_cells`` (flood fill of the cells from the
membrane map, EBImage grey dilation with diamond brushes, unique pairs) written with plain loops.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_carspatial.analysis import count_touching, count_within, nearest_distances
from napari_carspatial.analysis.contact import contact_pairs

FIELD = Path(__file__).resolve().parents[1] / "data" / "phenoptr" / "FIHC4__0929309_HP_IM3_2_cells.csv"


def _table(types, xy, ids=None, key="Phenotype", px=None):
    ids = np.arange(1, len(types) + 1) if ids is None else np.asarray(ids)
    obs = pd.DataFrame({"cell_id": ids, key: pd.Categorical([str(t) for t in types])},
                       index=[f"c{i}" for i in ids])
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.asarray(xy, dtype=np.float64)
    if px is not None:
        a.uns["carspatial"] = {"pixel_size_um": float(px)}
    return a


@pytest.fixture(scope="module")
def field():
    """phenoptr's test field as an inForm user would open it: Phenotype column, pixels, 0.5 µm/px."""
    df = pd.read_csv(FIELD)
    return _table(df["Phenotype"], df[["Cell X Position", "Cell Y Position"]], ids=df["Cell ID"], px=0.5), df


# --------------------------------------------------------------------------- published numbers
def test_count_within_reproduces_phenoptr_published_numbers(field):
    a, _ = field
    # phenoptr tests/testthat/test_average_counts.R: count_within(d, 'Helper T', 'Cytotoxic T', 40)
    # == c(40, 15, 6, 8, 23/15); the Phenotype column is found without being named
    r = count_within(a, pairs=[("Helper T", "Cytotoxic T")], radius=40)
    assert r.attrs["params"]["cluster_key"] == "Phenotype"
    row = r.iloc[0]
    np.testing.assert_allclose([row.radius, row.from_count, row.to_count, row.from_with, row.within_mean],
                               [40, 15, 6, 8, 23 / 15], rtol=1e-12)
    # "count_within works with no data": an absent phenotype gives 0 counts and NA within_mean
    r = count_within(a, pairs=[("other", "B"), ("Helper T", "other")], radius=15)
    assert list(r.from_count) == [0, 15] and list(r.to_count) == [249, 0] and list(r.from_with) == [0, 0]
    assert r.within_mean.isna().all() and all(r.note.str.contains("no other cells"))
    # several radii: one row each, more neighbours at the larger radius
    r = count_within(a, pairs=[("B", "Helper T")], radius=[15, 30])
    assert list(r.radius) == [15, 30] and r.within_mean.iloc[1] > r.within_mean.iloc[0]


def test_nearest_distances_reproduce_phenoptr_spot_checks(field):
    a, df = field
    nd = nearest_distances(a)
    assert list(nd.index) == list(a.obs_names)  # one row per cell, table order
    assert [c for c in nd.columns if c.startswith("Distance")] == \
        ["Distance to B", "Distance to Cytotoxic T", "Distance to Helper T"]
    xy = df[["Cell X Position", "Cell Y Position"]].to_numpy() / 2.0  # phenoptr: pixels / 2 = µm
    ph = df["Phenotype"].to_numpy()
    # phenoptr tests/testthat/test_distance_funcs.R: pairs whose nearest neighbours are clear
    for i1, i2 in [(64, 118), (16, 30), (187, 214), (209, 215)]:
        i1, i2 = i1 - 1, i2 - 1
        d = float(np.linalg.norm(xy[i1] - xy[i2]))
        assert nd.iloc[i1][f"Distance to {ph[i2]}"] == pytest.approx(d, rel=1e-12)
        assert nd.iloc[i2][f"Distance to {ph[i1]}"] == pytest.approx(d, rel=1e-12)
        assert nd.iloc[i1][f"Cell ID {ph[i2]}"] == df["Cell ID"][i2]
    # a phenotype that is not there: all NA (phenoptr's 'Distance to other')
    other = nearest_distances(a, types=["B", "other"])
    assert other["Distance to other"].isna().all() and (other["Cell ID other"] == -1).all()


def _find_nearest_distance_dist(xy, types, ids, phenos):
    """phenoptr's find_nearest_distance_dist, transcribed: distance matrix, min > 0, which.min."""
    dst = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    out = {}
    for p in phenos:
        cols = np.flatnonzero(types == p)
        dist, cid = [], []
        for row in dst[:, cols]:
            good = row > 0
            if not good.any():
                dist.append(np.nan)
                cid.append(-1)
                continue
            r = np.where(good, row, np.inf)
            j = int(np.argmin(r))  # first index of the minimum, as R's which.min
            dist.append(r[j])
            cid.append(ids[cols[j]])
        out[f"Distance to {p}"] = np.array(dist)
        out[f"Cell ID {p}"] = np.array(cid)
    return out


def test_nearest_distances_equal_phenoptr_transcription_with_ties_and_coincident_cells():
    rng = np.random.default_rng(3)
    n = 400
    xy = rng.integers(0, 40, size=(n, 2)).astype(float)  # integer positions: many ties and duplicates
    xy[10] = xy[11]  # two cells at the same place (phenoptr skips distance 0)
    types = rng.choice(np.array(["Tumor", "CD8 T", "Macrophage"]), size=n, p=[0.6, 0.3, 0.1])
    ids = rng.permutation(np.arange(1000, 1000 + n))
    a = _table(types, xy, ids=ids, key="cell_type", px=0.5)
    got = nearest_distances(a)
    ref = _find_nearest_distance_dist(xy * 0.5, types, ids, list(a.obs["cell_type"].cat.categories))
    for col, v in ref.items():
        np.testing.assert_array_equal(got[col].to_numpy(), v, err_msg=col)


def test_count_within_equals_brute_force_self_excluded():
    rng = np.random.default_rng(5)
    n = 300
    xy = rng.integers(0, 60, size=(n, 2)).astype(float)
    xy[7] = xy[8]
    types = rng.choice(np.array(["A", "B", "C"]), size=n)
    a = _table(types, xy, key="cell_type", px=1.0)
    got = count_within(a, radius=[3.0, 5.0, 10.0])
    dst = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    assert len(got) == 9 * 3
    for r in got.to_dict("records"):
        f, t = np.flatnonzero(types == r["from"]), np.flatnonzero(types == r["to"])
        w = (dst[np.ix_(f, t)] <= r["radius"]).sum(1) - np.isin(f, t)  # a cell does not count itself
        assert (r["from_count"], r["to_count"], r["from_with"]) == (f.size, t.size, int((w > 0).sum()))
        assert r["within_mean"] == pytest.approx(w.mean(), rel=1e-12)


# --------------------------------------------------------------------------- touching cells
def _ebimage_dilate(img, r):
    """EBImage::dilate(img, makeBrush(2r + 1, 'diamond')): grey-level maximum over |dy|+|dx| <= r
    (zero outside the image), written as one shifted maximum per brush pixel."""
    H, W = img.shape
    pad = np.zeros((H + 2 * r, W + 2 * r), img.dtype)
    pad[r:r + H, r:r + W] = img
    out = np.zeros_like(img)
    for dy in range(-r, r + 1):
        for dx in range(-r + abs(dy), r - abs(dy) + 1):
            out = np.maximum(out, pad[r + dy:r + dy + H, r + dx:r + dx + W])
    return out


def _phenoptr_count_touching(cell_image, types_by_id, pairs, membrane_width):
    """phenoptr count_touching_cells on a cell image (membrane removed): the three numbers."""
    rows = []
    for p1, p2 in pairs:
        ids1 = {i for i, t in types_by_id.items() if t == p1}
        ids2 = {i for i, t in types_by_id.items() if t == p2}
        if not ids1 or not ids2:
            rows.append((len(ids1), len(ids2), 0, 0, 0))
            continue
        i1 = np.where(np.isin(cell_image, list(ids1)), cell_image, 0)
        i2 = np.where(np.isin(cell_image, list(ids2)), cell_image, 0)
        extra = 0 if membrane_width == 1 else 2
        b1 = _ebimage_dilate(i1, 1)                    # makeBrush(3, 'diamond')
        b2 = _ebimage_dilate(i2, (3 + extra) // 2)     # makeBrush(3 + extra_size, 'diamond')
        both = (b1 > 0.1) & (b2 > 0.1)
        pairs_found = {(int(u), int(v)) for u, v in zip(b1[both], b2[both], strict=True)}
        rows.append((len(ids1), len(ids2), len({u for u, _ in pairs_found}), len({v for _, v in pairs_found}),
                     len(pairs_found)))
    return rows


def _inform_field(seed, shape=(70, 90), n=45, membrane_width=1):
    """An inForm-style field: Voronoi cells split by a membrane line, nuclei at the seeds.

    Returns the membrane map (True on membrane), the nuclei map (cell ids) and the cell image that
    phenoptr's make_cell_image builds from them (flood fill from each nucleus, membrane removed).
    """
    rng = np.random.default_rng(seed)
    seeds = np.column_stack([rng.uniform(3, shape[0] - 3, n), rng.uniform(3, shape[1] - 3, n)])
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    d = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)
    vor = np.argmin(d, axis=-1) + 1
    edge = np.zeros(shape, bool)
    edge[:, :-1] |= vor[:, :-1] != vor[:, 1:]
    edge[:-1, :] |= vor[:-1, :] != vor[1:, :]
    if membrane_width == 2:
        edge = ndimage.binary_dilation(edge, structure=np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], bool))
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True  # phenoptr draws a border membrane
    ids = rng.permutation(np.arange(100, 100 + n))
    nuclei = np.zeros(shape, np.int64)
    for k, (y, x) in enumerate(seeds.astype(int)):
        nuclei[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = ids[k]
    nuclei[edge] = 0
    # make_cell_image: flood fill (4-connected) from the nucleus of each cell, then drop the membrane
    comp, _ = ndimage.label(~edge, structure=ndimage.generate_binary_structure(2, 1))
    cell = np.zeros(shape, np.int64)
    for cid in ids:
        at = np.argwhere(nuclei == cid)
        if len(at):
            cell[comp == comp[tuple(at[0])]] = cid
    cell[edge] = 0
    return cell, ids


@pytest.mark.parametrize("membrane_width", [1, 2])
def test_count_touching_equals_phenoptr_transcription_on_inform_style_fields(membrane_width):
    for seed in (0, 1):
        cell, ids = _inform_field(seed, membrane_width=membrane_width)
        rng = np.random.default_rng(seed + 10)
        types = rng.choice(np.array(["Helper T", "B", "Cytotoxic T", "Tumor"]), size=len(ids))
        present = ids[np.isin(ids, np.unique(cell))]
        yx = np.array([np.argwhere(cell == i).mean(0) for i in present])
        t_of = dict(zip(ids, types, strict=True))
        a = _table([t_of[i] for i in present], yx[:, ::-1], ids=present)
        pairs = [("Helper T", "B"), ("Helper T", "Cytotoxic T"), ("B", "Tumor"), ("Tumor", "Cytotoxic T")]
        got = count_touching(a, cell, pairs=pairs, membrane_width_px=membrane_width)
        ref = _phenoptr_count_touching(cell, {i: t_of[i] for i in present}, pairs, membrane_width)
        assert [tuple(r) for r in got[["total1", "total2", "p1_touch_p2", "p2_touch_p1", "touch_pairs"]]
                .itertuples(index=False)] == ref
        assert got.touch_pairs.sum() > 10  # a real test: many touching pairs
        # tiles (with their halo) do not change the counts
        tiled = count_touching(a, cell, pairs=pairs, membrane_width_px=membrane_width, tile=17)
        pd.testing.assert_frame_equal(tiled, got)


def test_count_touching_phenoptr_published_case_shape(field):
    """phenoptr's test pairs on its own table: the published totals, and 0s (plus a note) for FOO+."""
    a, df = field
    # a segmentation of the field (phenoptr's map is binary, not in the corpus): Voronoi cells of
    # the 270 cells with a one-pixel membrane, as inForm draws it
    xy = df[["Cell X Position", "Cell Y Position"]].to_numpy(float)
    H, W = 262, 350
    yy, xx = np.mgrid[:H, :W]
    from scipy.spatial import cKDTree

    _, near = cKDTree(xy[:, ::-1]).query(np.column_stack([yy.ravel(), xx.ravel()]))
    lab = df["Cell ID"].to_numpy()[near].reshape(H, W)
    edge = np.zeros((H, W), bool)
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    cell = np.where(edge, 0, lab)
    pairs = [("Helper T", "B"), ("Helper T", "Cytotoxic T"), ("Helper T", "FOO+")]
    tumor = (df["Tissue Category"] == "Tumor").to_numpy()  # phenoptr's categories='Tumor'
    got = count_touching(a, cell, pairs=pairs, region=tumor)
    # tests/testthat/test_count_touching_cells.R: total1 == 15, total2 == c(249, 6, 0), FOO+ all 0
    assert list(got.total1) == [15, 15, 15] and list(got.total2) == [249, 6, 0]
    assert tuple(got.iloc[2][["p1_touch_p2", "p2_touch_p1", "touch_pairs"]]) == (0, 0, 0)
    assert "no FOO+ cells" in got.note.iloc[2]
    ref = _phenoptr_count_touching(cell, dict(zip(df["Cell ID"], df["Phenotype"], strict=True)), pairs, 1)
    assert [tuple(r) for r in got[["total1", "total2", "p1_touch_p2", "p2_touch_p1", "touch_pairs"]]
            .itertuples(index=False)] == ref
    # mutual touches can exceed either one-sided count (one cell in several pairs)
    r0 = got.iloc[0]
    assert r0.touch_pairs >= max(r0.p1_touch_p2, r0.p2_touch_p1) > 0


def test_touching_documented_cases():
    # three cells in a row, each pair separated by a one-pixel membrane line: 1-2 and 2-3 touch
    m = np.zeros((7, 13), np.int64)
    m[1:6, 1:4], m[1:6, 5:8], m[1:6, 9:12] = 1, 2, 3
    a = _table(["A", "B", "A"], [[2, 3], [6, 3], [10, 3]])
    r = count_touching(a, m, pairs=[("A", "B")]).iloc[0]
    assert (r.total1, r.total2, r.p1_touch_p2, r.p2_touch_p1, r.touch_pairs) == (2, 1, 2, 1, 2)
    # a two-pixel membrane needs phenoptr's wider kernel (membrane_width_px=2)
    m2 = np.zeros((7, 10), np.int64)
    m2[1:6, 1:4], m2[1:6, 6:9] = 1, 2
    a2 = _table(["A", "B"], [[2, 3], [7, 3]])
    assert count_touching(a2, m2, pairs=[("A", "B")]).touch_pairs.iloc[0] == 0
    assert count_touching(a2, m2, pairs=[("A", "B")], membrane_width_px=2).touch_pairs.iloc[0] == 1
    # cells that meet only at a corner across the membrane (a checkerboard) do not touch
    c = np.zeros((9, 9), np.int64)
    c[1:4, 1:4], c[5:8, 5:8] = 1, 2
    a3 = _table(["A", "B"], [[2, 2], [6, 6]])
    assert count_touching(a3, c, pairs=[("A", "B")]).touch_pairs.iloc[0] == 0
    # same type on both sides: a cell never touches itself (phenoptr would pair every cell with itself)
    r = count_touching(_table(["A", "A", "A"], [[2, 3], [6, 3], [10, 3]]), m, pairs=[("A", "A")]).iloc[0]
    assert (r.p1_touch_p2, r.touch_pairs) == (3, 2) and "never touches itself" in r.note


def test_phenoptr_contact_rule_and_presets_on_real_masks(cytomapper_dir):
    import tifffile

    m = tifffile.imread(cytomapper_dir / "masks" / "G01_mask.tiff").astype(np.int64)
    got = {tuple(p) for p in contact_pairs(m)}  # default: phenoptr's rule, cells <= 2 px apart (L1)
    # brute force: per label, pixels within city-block distance 2 of it
    ref = set()
    for lab in np.unique(m[m > 0]):
        near = ndimage.binary_dilation(m == lab, structure=ndimage.generate_binary_structure(2, 1), iterations=2)
        for other in np.unique(m[near & (m != lab) & (m > 0)]):
            ref.add((min(lab, other), max(lab, other)))
    assert got == ref and len(got) >= 60  # 70 pairs among the 122 cells
    # the CellProfiler masks keep a background line between cells: touching masks alone find none,
    # steinbock's 4-px expansion finds more than phenoptr's rule
    assert len(contact_pairs(m, preset="expand", expand_px=0)) == 0
    assert len(contact_pairs(m, preset="steinbock_expansion")) > len(got)
