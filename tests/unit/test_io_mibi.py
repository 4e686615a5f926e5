"""MIBI-TOF: MIBItiff files and ark / toffy FOV folders, on files written to the published layouts.

No shareable real MIBI file is here, so the tests write their own, following the layouts exactly:

* MIBItiff: IONpath's writer ``mibidata.tiff.write`` (mibitracker-client, ``IonpathMIBIv1.0``):
  one page per SIMS channel in target order, each written by ``TiffWriter.write`` with
  ``compression=8`` (Adobe deflate), ``resolution`` in pixels per centimetre (``shape * 1e4 /
  size_um``), extra tags 286/287 (x/y position in cm, as 2 x int32 fractions), 285 PageName
  ``"<target> (<mass>)"``, 340/341 min/max sample value, ``metadata`` = the ``mibi.*`` run fields
  plus ``image.type = "SIMS"``, ``channel.mass``, ``channel.target`` (tifffile stores it as JSON
  in ImageDescription), ``software="IonpathMIBIv1.0"``, ``rowsperstrip`` = image height; then an
  ``SED`` page (``metadata={"image.type": "SED"}``, PageName ``SED``) and an ``Optical`` RGB page.
* FOV folders: ark-analysis's layout: ``image_data/<fov>/<channel>.tiff`` (one 2-D TIFF per
  channel), ``segmentation/deepcell_output/<fov>_whole_cell.tiff`` and ``<fov>_nuclear.tiff``,
  ``segmentation/cell_table/cell_table_size_normalized.csv`` with the channel columns, then
  ``label``, ``cell_size``, the regionprops columns (``area``, ``eccentricity``,
  ``major_axis_length``, ``minor_axis_length``, ``perimeter``, ``centroid-0``, ``centroid-1``)
  and ``fov`` (ark's ``generate_cell_table``); toffy / mibi-bin-tools extraction output is the
  same per-FOV folder without the project around it.
"""

from __future__ import annotations

import datetime
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial.io import detect_format, read_sample

TARGETS = [("Au", 197), ("CD3", 159), ("CD8", 158), ("dsDNA", 89), ("Keratin", 165), ("Background", 181)]
SIZE_UM = 200.0
RUN = {"mibi.run": "20190411_run", "mibi.folder": "Point1/RowNumber0/Depth_Profile0", "mibi.fov_id": "FOV1",
       "mibi.fov_name": "R1C1", "mibi.dwell": 4, "mibi.scans": "", "mibi.mass_gain": 0.4, "mibi.mass_offset": 0.1,
       "mibi.time_resolution": 0.5, "mibi.miscalibrated": False, "mibi.check_reg": False,
       "mibi.description": "tonsil", "mibi.version": "alpha", "mibi.instrument": "MIBIscope1",
       "mibi.tissue": "Tonsil", "mibi.panel": "20190411_panel", "mibi.aperture": "300um"}


def _cm(um):
    f = Fraction(float(um) / 1e4).limit_denominator(1000000)
    return f.numerator, f.denominator


def write_mibitiff(path, data, targets, *, sed=True, optical=True):
    """IONpath's ``mibidata.tiff.write(..., multichannel=True)`` layout (see module docstring)."""
    h, w, _ = data.shape
    resolution = (h * 1e4 / SIZE_UM, w * 1e4 / SIZE_UM)
    coords = [(286, "2i", 1, _cm(1000.0)), (287, "2i", 1, _cm(-2000.0))]
    order = sorted(range(len(targets)), key=lambda i: targets[i][0].lower())   # util.sort_channel_names
    with tifffile.TiffWriter(path) as tw:
        for i in order:
            target, mass = targets[i]
            md = dict(RUN)
            md.update({"image.type": "SIMS", "channel.mass": int(mass), "channel.target": target})
            tags = coords + [(285, "s", 0, f"{target} ({mass})".encode()), (340, "I", 1, 0),
                             (341, "I", 1, int(data[..., i].max()))]
            tw.write(data[..., i], compression=8, resolution=resolution, resolutionunit="CENTIMETER",
                     extratags=tags, metadata=md, datetime=datetime.datetime(2019, 4, 11, 10, 0, 0),
                     software="IonpathMIBIv1.0", rowsperstrip=h)
        if sed:
            tw.write(np.full((h, w), 7, np.uint16), compression=8, resolution=resolution,
                     resolutionunit="CENTIMETER", extratags=coords + [(285, "s", 0, "SED")],
                     metadata={"image.type": "SED"}, software="IonpathMIBIv1.0", rowsperstrip=h)
        if optical:
            opt = np.zeros((40, 50, 3), np.uint8)
            tw.write(opt, compression=8, software="IonpathMIBIv1.0", metadata={"image.type": "Optical"},
                     rowsperstrip=40)
    return [targets[i] for i in order], order


@pytest.fixture
def mibi_file(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(0.4, (64, 48, len(TARGETS))).astype(np.uint16)   # sparse counts, (y, x, c) as mibidata
    path = tmp_path / "Point1_R1C1.tiff"
    written, order = write_mibitiff(path, data, TARGETS)
    return path, data[..., order], written


def test_mibitiff_names_are_targets_mass_kept(mibi_file):
    path, data, written = mibi_file
    with tifffile.TiffFile(path) as tif:   # the layout really is what the old reader misnamed
        assert tif.pages[0].tags[285].value == f"{written[0][0]} ({written[0][1]})"
    assert detect_format(path) == "mibitiff"
    s = read_sample(path)
    assert s.channel_names == [t for t, _ in written]
    assert s.n_channels == len(TARGETS)                       # no SED / Optical page among the channels
    assert [m["mass"] for m in s.metadata["channel_metadata"]] == [m for _, m in written]
    assert s.metadata["mibi.fov_id"] == "FOV1" and s.metadata["platform"] == "MIBI"
    assert s.pixel_size_um == pytest.approx(SIZE_UM / 64)
    np.testing.assert_array_equal(s.image[0].compute(), np.moveaxis(data, -1, 0))


def test_mibitiff_first_view_shows_nuclear_and_markers_not_background(mibi_file):
    from napari_carspatial._napari.layers import channel_plan

    s = read_sample(mibi_file[0])
    plan = channel_plan(s)
    shown = [n for n, v in zip(s.channel_names, plan["visible"], strict=True) if v]
    assert shown == ["CD3", "dsDNA", "Keratin"]
    lo, hi = plan["contrast_limits"][s.channel_names.index("CD3")]
    ch = s.image[0][s.channel_names.index("CD3")].compute()
    from napari_carspatial.model.channels import SPARSE_HIGH

    assert lo == 0 and hi == np.percentile(ch[ch > 0], SPARSE_HIGH, method="lower")


def test_mibitiff_with_mask_opens_with_measured_table(mibi_file, tmp_path):
    path, data, written = mibi_file
    lab = np.zeros(data.shape[:2], np.uint32)
    lab[5:15, 5:15] = 4
    lab[30:50, 20:40] = 9
    mpath = tmp_path / "Point1_R1C1_whole_cell.tiff"
    tifffile.imwrite(mpath, lab)
    s = read_sample(path, mask=mpath)
    assert s.n_cells == 2
    cd3 = data[..., [t for t, _ in written].index("CD3")]
    assert float(s.table[s.table.obs["cell_id"] == 9, "CD3"].X[0, 0]) == pytest.approx(cd3[30:50, 20:40].mean())
    assert s.table.var.loc["CD3", "mass"] == 159


def _ark_project(root, fovs=("fov0", "fov1"), channels=("CD3", "CD8", "dsDNA", "Au", "Keratin"), with_mask=("fov0",)):
    rng = np.random.default_rng(1)
    truth = {}
    for fov in fovs:
        d = root / "image_data" / fov
        d.mkdir(parents=True)
        imgs = {}
        for c in channels:
            img = rng.poisson(2, (40, 30)).astype(np.float32)
            tifffile.imwrite(d / f"{c}.tiff", img, compression="zlib")
            imgs[c] = img
        truth[fov] = imgs
    seg = root / "segmentation" / "deepcell_output"
    seg.mkdir(parents=True)
    rows = []
    for fov in with_mask:
        lab = np.zeros((40, 30), np.int32)
        lab[2:10, 3:12] = 1
        lab[20:35, 5:25] = 2
        tifffile.imwrite(seg / f"{fov}_whole_cell.tiff", lab)
        tifffile.imwrite(seg / f"{fov}_nuclear.tiff", (lab > 0).astype(np.int32))
        for label in (1, 2):
            ys, xs = np.nonzero(lab == label)
            row = {c: float(truth[fov][c][lab == label].mean()) for c in channels}
            row.update({"label": label, "cell_size": len(ys), "area": len(ys), "eccentricity": 0.5,
                        "major_axis_length": 9.0, "minor_axis_length": 8.0, "perimeter": 30.0,
                        "centroid-0": ys.mean(), "centroid-1": xs.mean(), "fov": fov})
            rows.append(row)
    (root / "segmentation" / "cell_table").mkdir()
    pd.DataFrame(rows).to_csv(root / "segmentation" / "cell_table" / "cell_table_size_normalized.csv", index=False)
    return truth


def test_ark_project_opens_each_fov_with_mask_and_table(tmp_path):
    truth = _ark_project(tmp_path / "proj")
    assert detect_format(tmp_path / "proj") == "fov-folder"
    samples = read_sample(tmp_path / "proj")
    assert [s.name for s in samples] == ["fov0", "fov1"]
    s0, s1 = samples
    assert s0.channel_names == ["Au", "CD3", "CD8", "dsDNA", "Keratin"]        # natural order, as ark loads them
    np.testing.assert_array_equal(s0.image[0][1].compute(), truth["fov0"]["CD3"])
    assert s0.n_cells == 2 and s0.paths["table"].endswith("cell_table_size_normalized.csv")
    assert s0.table.uns["spatialdata_attrs"]["instance_key"] == "label"
    cd3 = s0.table[s0.table.obs["label"] == 2, "CD3"].X[0, 0]
    lab = tifffile.imread(tmp_path / "proj" / "segmentation" / "deepcell_output" / "fov0_whole_cell.tiff")
    assert cd3 == pytest.approx(truth["fov0"]["CD3"][lab == 2].mean())
    assert s1.labels is None and s1.n_cells == 0                               # no mask for fov1


def test_toffy_extracted_fov_folder_and_image_data_folder(tmp_path):
    _ark_project(tmp_path / "proj", with_mask=())
    one = read_sample(tmp_path / "proj" / "image_data" / "fov1")
    assert len(one) == 1 and one[0].name == "fov1" and one[0].n_channels == 5
    many = read_sample(tmp_path / "proj" / "image_data")
    assert [s.name for s in many] == ["fov0", "fov1"]


def test_fov_folder_of_mibitiff_pages_keeps_mass(tmp_path):
    """mibidata.tiff.write(..., multichannel=False): a folder of ``<target>.tiff``, one MIBItiff page each."""
    rng = np.random.default_rng(2)
    fov = tmp_path / "FOV1"
    fov.mkdir()
    for target, mass in TARGETS[:3]:
        md = dict(RUN)
        md.update({"image.type": "SIMS", "channel.mass": mass, "channel.target": target})
        tifffile.imwrite(fov / f"{target}.tiff", rng.poisson(1, (16, 16)).astype(np.uint16), metadata=md,
                         software="IonpathMIBIv1.0", resolution=(16 * 1e4 / SIZE_UM,) * 2, resolutionunit="CENTIMETER")
    s = read_sample(fov)[0]
    assert s.channel_names == ["Au", "CD3", "CD8"]
    assert [m["mass"] for m in s.metadata["channel_metadata"]] == [197, 159, 158]
    assert s.pixel_size_um == pytest.approx(SIZE_UM / 16)


def test_mask_folders_and_ome_tiff_folders_are_not_fov_folders(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for n in ("a_mask", "b_mask"):
        tifffile.imwrite(masks / f"{n}.tiff", np.zeros((8, 8), np.uint16))
    assert detect_format(masks) is None
    ome = tmp_path / "xenium_like"
    ome.mkdir()
    for n in ("morphology_focus", "morphology_mip"):
        tifffile.imwrite(ome / f"{n}.ome.tif", np.zeros((8, 8), np.uint16), ome=True)
    assert detect_format(ome) is None
