"""The bad-input corpus: small malformed files and manifests, built at test time (nothing checked in).

Each :class:`Case` builds its files in a folder and returns the action a user would take on them
(open a table, read a manifest, run a batch, save over a source, ...). The action must end with
one clear line naming the file and the problem (a ``SampleError``), or for inputs that are read
anyway, a logged warning that does; nothing the user had may change.
``tests/unit/test_bad_input_corpus.py`` runs every case.

As a script it builds the corpus in a folder and prints the table (file, problem, message)::

    PYTHONPATH=src python tests/unit/bad_input_corpus.py /tmp/corpus
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Case:
    """One malformed input: ``build(folder) -> (action, named_file)``; ``action()`` raises or warns."""

    id: str
    problem: str
    expect: str
    build: Callable
    warns: bool = False


# --------------------------------------------------------------------------- small valid parts
def table(path: Path, n: int = 12, *, ids=None, pixel_size_um: float | None = 1.0, obs_names=None, type_key="cell_type"):
    import anndata as ad

    from napari_carspatial.model import set_pixel_size_um

    rng = np.random.default_rng(0)
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    n = len(ids)
    obs = pd.DataFrame({"cell_id": ids, type_key: pd.Categorical(rng.choice(["Tumor", "CAR T"], n))},
                       index=obs_names if obs_names is not None else [str(i) for i in range(n)])
    t = ad.AnnData(X=rng.random((n, 2)).astype(np.float32), obs=obs, var=pd.DataFrame(index=["CD3", "PanCK"]))
    t.obsm["spatial"] = rng.random((n, 2)) * 60
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region"}
    if pixel_size_um:
        set_pixel_size_um(t, pixel_size_um)
    t.write_h5ad(path)
    return path


def mask(path: Path, shape=(64, 64), n: int = 5, dtype=np.uint16) -> Path:
    import tifffile

    lab = np.zeros(shape, dtype)
    for i in range(n):
        lab[4 + 10 * i: 10 + 10 * i, 4:12] = i + 1
    tifffile.imwrite(path, lab)
    return path


def image(path: Path, shape=(64, 64), names=("DAPI", "CD3")) -> Path:
    import tifffile

    data = (np.arange(len(names) * shape[0] * shape[1]) % 251).astype(np.uint16).reshape(len(names), *shape)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": list(names)},
                                                    "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    return path


def text(path: Path, s: str, encoding="utf-8") -> Path:
    path.write_bytes(s.encode(encoding))
    return path


def manifest_csv(folder: Path, rows: list[str], header="sample,patient,timepoint,response,crs_grade,table",
                 name="manifest.csv") -> Path:
    table(folder / "t.h5ad")
    return text(folder / name, header + "\n" + "\n".join(rows) + "\n")


def fc(*features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def feat(coords, gtype="Polygon", name="core", cls="Tumor"):
    geom = None if coords is None else {"type": gtype, "coordinates": coords}
    return {"type": "Feature", "geometry": geom,
            "properties": {"objectType": "annotation", "name": name, "classification": {"name": cls}}}


SQUARE = [[[2, 2], [40, 2], [40, 40], [2, 40], [2, 2]]]


# --------------------------------------------------------------------------- actions
def _read_manifest(p):
    from napari_carspatial.cohort import read_manifest

    return lambda: read_manifest(p), p


def _read_config(p):
    from napari_carspatial.cohort.batch import load_config, resolve_metrics

    def run():
        cfg = load_config(p)
        resolve_metrics(cfg.metrics, source=cfg.source)
    return run, p


def _read_table(p):
    from napari_carspatial.io import read_table

    return lambda: read_table(p), p


def _read_mask(p):
    from napari_carspatial.io import read_mask

    return lambda: read_mask(p), p


def _read_image(p):
    from napari_carspatial.io import read_image

    return lambda: read_image(p), p


def _read_geojson(p):
    from napari_carspatial.io import read_geojson

    return lambda: read_geojson(p), p


def _read_sample(img, named, **kw):
    from napari_carspatial.io import read_sample

    return lambda: read_sample(img, **kw), named


def _quantify_cli(folder):
    import argparse

    from napari_carspatial.commands import quantify as cmd

    img = image(folder / "img.ome.tif")
    m = mask(folder / "mask.tif", shape=(60, 64))
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args([str(img), str(m), "-o", str(folder / "out.h5ad")])
    return lambda: cmd.run(args), m


def _batch_failure(folder):
    """The batch records the failure; the user reads it in failures.csv (and the CLI prints it)."""
    from napari_carspatial.cohort import run_batch
    from napari_carspatial.model import SampleError

    # vocab: a 'phenotype' column is found by name now; a column no rule knows is not a cell type
    table(folder / "t.h5ad", type_key="my_labels")
    man = text(folder / "manifest.csv", "sample,patient,timepoint,table\nS1,P1,pre,t.h5ad\n")
    out = folder.parent / f"{folder.name}-results"

    def run():
        res = run_batch(man, {"regions": "whole"}, out, scheduler="sequential", progress=False)
        r = res.failed.iloc[0]
        raise SampleError(f"stage {r['stage']}: {r['error']}")
    return run, folder / "t.h5ad"


def _write_over_source(folder):
    from napari_carspatial.io import read_table, write_table

    src = table(folder / "t.h5ad")
    t = read_table(src)
    return lambda: write_table(t, src, overwrite=True, paths={"table": src}), src


def _write_over_link(folder):
    from napari_carspatial.io import read_table, write_table

    (folder / "real").mkdir()
    src = table(folder / "real" / "t.h5ad")
    link = folder / "link.h5ad"
    link.symlink_to(src)
    t = read_table(table(folder / "other.h5ad"))   # another table: the link, not the read-source guard, refuses
    return lambda: write_table(t, link, overwrite=True), link


def _ome_13_of_14(folder):
    import tifffile

    p = image(folder / "img.ome.tif", names=[f"M{i}" for i in range(14)])
    xml = tifffile.tiffcomment(p).replace('SizeC="14"', 'SizeC="13"')
    xml = re.sub(r'<Channel ID="Channel:0:13"[^>]*?(/>|>.*?</Channel>)', "", xml, flags=re.S)
    xml = re.sub(r'<TiffData IFD="13"[^>]*?(/>|>.*?</TiffData>)', "", xml, flags=re.S)
    tifffile.tiffcomment(p, xml)
    return _read_image(p)


def _truncated(path: Path, frac: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])
    return path


def _zarr_empty(folder):
    (folder / "t.zarr").mkdir()
    return _read_table(folder / "t.zarr")


# --------------------------------------------------------------------------- the corpus
def _m(rows, header=None, name="manifest.csv"):
    def build(f):
        kw = {"name": name} if header is None else {"header": header, "name": name}
        return _read_manifest(manifest_csv(f, rows, **kw))
    return build


CASES: list[Case] = [
    # cohort manifests
    Case("manifest-empty", "manifest file of 0 bytes", r"manifest file is empty",
         lambda f: _read_manifest(text(f / "manifest.csv", ""))),
    Case("manifest-header-only", "header, no sample rows", r"no samples", _m([])),
    Case("manifest-no-timepoint", "required column missing", r"missing column timepoint",
         _m(["S1,P1,t.h5ad"], header="sample,patient,table")),
    Case("manifest-duplicate-id", "two rows with one sample id", r"duplicate sample id",
         _m(["S1,P1,pre,CR,0,t.h5ad", "S1,P2,post,CR,0,t.h5ad"])),
    Case("manifest-empty-id", "a row without sample id", r"empty sample id", _m([",P1,pre,CR,0,t.h5ad"])),
    Case("manifest-timepoint", "unknown timepoint", r"unknown timepoint 'later'", _m(["S1,P1,later,CR,0,t.h5ad"])),
    Case("manifest-response", "unknown response code", r"unknown response code 'XX'", _m(["S1,P1,pre,XX,0,t.h5ad"])),
    Case("manifest-grade", "CRS grade outside 0-4", r"crs_grade must be a grade 0-4 or empty, got '7'",
         _m(["S1,P1,pre,CR,7,t.h5ad"])),
    Case("manifest-missing-file", "table path that does not exist", r"table file not found: .*missing\.h5ad",
         _m(["S1,P1,pre,CR,0,missing.h5ad"])),
    Case("manifest-no-data", "neither table nor image + mask", r"needs a table, or an image and a mask",
         _m(["S1,P1,pre,CR,0,"])),
    Case("manifest-two-pre", "two 'pre' samples for one patient", r"patient 'P1': 2 'pre' samples",
         _m(["S1,P1,pre,CR,0,t.h5ad", "S2,P1,pre,CR,0,t.h5ad"])),
    Case("manifest-conflicting-response", "two response codes for one patient", r"conflicting response codes",
         _m(["S1,P1,pre,CR,0,t.h5ad", "S2,P1,post,PD,0,t.h5ad"])),
    Case("manifest-semicolon", "';'-separated CSV (European spreadsheet)", r"looks ';'-separated",
         lambda f: _read_manifest(text(f / "manifest.csv", "sample;patient;timepoint;table\nS1;P1;pre;t.h5ad\n"))),
    Case("manifest-latin1", "Windows-1252 text, not UTF-8", r"not UTF-8",
         lambda f: _read_manifest(text(f / "manifest.csv", "sample,patient,timepoint,table\nS1,Zoë,pre,t.h5ad\n",
                                       encoding="cp1252"))),
    Case("manifest-bad-quotes", "unterminated quote", r"cannot parse the CSV",
         lambda f: _read_manifest(text(f / "manifest.csv", 'sample,patient,timepoint,table\n"S1,P1,pre,t.h5ad\n'))),
    Case("manifest-yaml-syntax", "YAML that does not parse", r"not valid YAML",
         lambda f: _read_manifest(text(f / "manifest.yaml", "samples: [ {sample: S1, patient: P1\n"))),
    Case("manifest-yaml-scalar", "YAML that is not a list of samples", r"a YAML manifest is a list of samples",
         lambda f: _read_manifest(text(f / "manifest.yaml", "just a sentence\n"))),
    Case("manifest-xlsx", "Excel file instead of CSV", r"unknown manifest type '\.xlsx'",
         lambda f: _read_manifest(text(f / "manifest.xlsx", "PK\x03\x04"))),
    # analysis configs (trust boundary)
    Case("config-unknown-key", "misspelt config key", r"unknown config key celltype_key",
         lambda f: _read_config(text(f / "analysis.yaml", "celltype_key: cell_type\n"))),
    Case("config-yaml-syntax", "YAML that does not parse", r"not valid YAML",
         lambda f: _read_config(text(f / "analysis.yaml", "regions: {mode: auto\n"))),
    Case("config-python-tag", "YAML with a python object tag (yaml.safe_load refuses it)", r"not valid YAML",
         lambda f: _read_config(text(f / "analysis.yaml", "seed: !!python/object/apply:os.system ['true']\n"))),
    Case("config-metrics-module", "metrics naming an arbitrary module", r"'os:system' is not a registered metric",
         lambda f: _read_config(text(f / "analysis.yaml", "metrics: os:system\n"))),
    Case("config-regions-mode", "unknown regions mode", r"regions.mode must be one of",
         lambda f: _read_config(text(f / "analysis.yaml", "regions: {mode: polygons}\n"))),
    # cell tables
    Case("table-csv-empty", "CSV of 0 bytes", r"cell table file is empty",
         lambda f: _read_table(text(f / "cells.csv", ""))),
    Case("table-csv-header-only", "CSV header without rows", r"no rows",
         lambda f: _read_table(text(f / "cells.csv", "Object,centroid-0,centroid-1,CD3\n"))),
    Case("table-csv-semicolon", "';'-separated cell table", r"semicolon \(;\)-separated",
         lambda f: _read_table(text(f / "cells.csv", "Object;centroid-0;centroid-1;CD3\n1;2,5;3,5;0,1\n"))),
    Case("table-csv-no-id", "no column with the cell ids", r"cannot tell which column holds the cell",
         lambda f: _read_table(text(f / "cells.csv", "a,b\n1.5,2\n"))),
    Case("table-csv-uint64", "cell ids >= 2^63", r"at or above 2\^63",
         lambda f: _read_table(text(f / "cells.csv", "Object,x,y,CD3\n18446744073709551615,1,2,0.5\n1,3,4,0.2\n"))),
    Case("table-csv-negative", "negative cell ids", r"negative",
         lambda f: _read_table(text(f / "cells.csv", "Object,x,y,CD3\n-3,1,2,0.5\n1,3,4,0.2\n"))),
    Case("table-h5ad-0-rows", ".h5ad with 0 cells", r"no rows \(0 cells\)",
         lambda f: _read_table(table(f / "t.h5ad", ids=np.array([], int)))),
    Case("table-h5ad-truncated", ".h5ad cut in half (interrupted copy)", r"could not read AnnData table",
         lambda f: _read_table(_truncated(table(f / "t.h5ad", n=200)))),
    Case("table-h5ad-text", "a text file named .h5ad", r"could not read AnnData table",
         lambda f: _read_table(text(f / "t.h5ad", "cell_id,x,y\n1,2,3\n"))),
    Case("table-h5ad-uint64", ".h5ad with uint64 ids >= 2^63", r"at or above 2\^63",
         lambda f: _read_table(table(f / "t.h5ad", ids=np.array([2**63 + 5, 7], np.uint64)))),
    Case("table-h5ad-duplicate-rows", "repeated obs_names and repeated ids", r"row name\(s\) repeat",
         lambda f: _read_table(table(f / "t.h5ad", ids=[1, 1, 2], obs_names=["a", "a", "b"]))),
    Case("table-h5ad-duplicate-names", "repeated obs_names, unique ids (read, renamed in memory)",
         r"row name\(s\) \(obs_names\) repeat", lambda f: _read_table(table(f / "t.h5ad", ids=[1, 2, 3],
                                                                           obs_names=["a", "a", "b"])), warns=True),
    Case("table-zarr-empty", "an empty folder named .zarr", r"could not read AnnData table", _zarr_empty),
    Case("table-xlsx", "Excel table", r"unsupported table format '\.xlsx'",
         lambda f: _read_table(text(f / "cells.xlsx", "PK"))),
    # masks
    Case("mask-float", "probability map instead of labels", r"dtype float32",
         lambda f: _read_mask(mask(f / "mask.tif", dtype=np.float32))),
    Case("mask-empty", "every pixel 0", r"no cells", lambda f: _read_mask(mask(f / "mask.tif", n=0))),
    Case("mask-3-planes", "a 3-plane stack as mask", r"3 planes",
         lambda f: _read_mask(image(f / "mask.tif", names=("a", "b", "c")))),
    Case("mask-negative", "signed mask with negative ids", r"negative label ids",
         lambda f: _read_mask(_neg_mask(f))),
    Case("mask-uint64", "uint64 mask with ids >= 2^63", r"at or above 2\^63", lambda f: _read_mask(_huge_mask(f))),
    Case("mask-truncated", "TIFF cut short", r"truncated|damaged",
         lambda f: _read_mask(_truncated(mask(f / "mask.tif", shape=(256, 256)), 0.6))),
    Case("mask-not-tiff", "text file named .tif", r"could not read TIFF|not a TIFF|damaged",
         lambda f: _read_mask(text(f / "mask.tif", "not a tiff"))),
    # images
    Case("image-ome-13-of-14", "OME-XML with 13 channels, 14 planes", r"describes 13 image plane\(s\) but the "
         r"file holds 14", _ome_13_of_14),
    Case("image-truncated", "OME-TIFF cut short", r"truncated|damaged",
         lambda f: _read_image(_truncated(image(f / "img.ome.tif", shape=(256, 256)), 0.6))),
    # whole samples
    Case("sample-shape-mismatch", "mask 60 x 64, image 64 x 64", r"mask shape \(60, 64\).*differs from image",
         lambda f: _read_sample(image(f / "img.ome.tif"), f / "mask.tif", mask=mask(f / "mask.tif", shape=(60, 64)))),
    Case("sample-ids-mismatch", "table ids that are not in the mask", r"table ids are not in the mask",
         lambda f: _read_sample(image(f / "img.ome.tif"), f / "t.h5ad", mask=mask(f / "mask.tif"),
                                table=table(f / "t.h5ad", n=9))),
    Case("sample-duplicate-ids", "one cell id on two rows", r"appear more than once",
         lambda f: _read_sample(image(f / "img.ome.tif"), f / "t.h5ad", mask=mask(f / "mask.tif"),
                                table=table(f / "t.h5ad", ids=[1, 2, 3, 4, 5, 5]))),
    Case("quantify-shape-mismatch", "carspatial quantify, mask and image of different shapes",
         r"mask shape \(60, 64\).*differs from image", _quantify_cli),
    # regions (GeoJSON)
    Case("geojson-empty", "GeoJSON of 0 bytes", r"GeoJSON file is empty", lambda f: _read_geojson(text(f / "r.geojson", ""))),
    Case("geojson-not-json", "not JSON", r"not valid JSON", lambda f: _read_geojson(text(f / "r.geojson", "{type: x"))),
    Case("geojson-not-geojson", "JSON that is not GeoJSON", r"not GeoJSON",
         lambda f: _read_geojson(text(f / "r.geojson", '{"type": "Topology"}'))),
    Case("geojson-null-geometry", "every feature with geometry null", r"no usable polygon.*no geometry",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat(None))))),
    Case("geojson-empty-coordinates", "a Polygon with no coordinates", r"empty Polygon",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat([]))))),
    Case("geojson-two-points", "a ring of 2 points", r"needs at least 3",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat([[[1, 1], [5, 5]]]))))),
    Case("geojson-text-coordinates", "coordinates that are words", r"not a readable GeoJSON",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat([[["a", "b"], ["c", "d"], ["e", "f"]]]))))),
    Case("geojson-bow-tie", "self-intersecting polygon (read, repaired)", r"'core'.*make_valid",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat([[[0, 0], [40, 40], [40, 0], [0, 40], [0, 0]]])))),
         warns=True),
    Case("geojson-one-null", "one null geometry among good polygons (read, warned)", r"'lost'.*no geometry",
         lambda f: _read_geojson(text(f / "r.geojson", fc(feat(SQUARE), feat(None, name="lost")))), warns=True),
    # batch and saving
    Case("batch-stage", "a sample whose table lacks any cell-type column", r"stage cell types: .*no cell-type column",
         _batch_failure),
    Case("save-over-source", "write_table over the sample's source table", r"is the sample's source table",
         _write_over_source),
    Case("save-over-symlink", "write_table over a symbolic link", r"is a symbolic link", _write_over_link),
]


def _neg_mask(folder: Path) -> Path:
    import tifffile

    lab = np.zeros((32, 32), np.int32)
    lab[2:6, 2:6] = 1
    lab[10:14, 10:14] = -4
    tifffile.imwrite(folder / "mask.tif", lab)
    return folder / "mask.tif"


def _huge_mask(folder: Path) -> Path:
    import tifffile

    lab = np.zeros((32, 32), np.uint64)
    lab[2:6, 2:6] = 1
    lab[10:14, 10:14] = 2**63 + 11
    tifffile.imwrite(folder / "mask.tif", lab)
    return folder / "mask.tif"


def run_case(case: Case, folder: Path):
    """Build and run one case: ``(message, named_file, warned)``; the message is the error or the warnings."""
    from napari_carspatial.model import SampleError

    folder.mkdir(parents=True, exist_ok=True)
    action, named = case.build(folder)
    records: list[logging.LogRecord] = []

    class _H(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record)

    h = _H()
    logging.getLogger("napari_carspatial").addHandler(h)
    try:
        action()
        msg = " | ".join(r.getMessage() for r in records)
        return msg, named, True
    except SampleError as err:
        return str(err), named, False
    finally:
        logging.getLogger("napari_carspatial").removeHandler(h)


def main(out: str) -> None:
    rows = []
    for case in CASES:
        msg, named, warned = run_case(case, Path(out) / case.id)
        rows.append((case.id, Path(named).name, case.problem, ("warning: " if warned else "") + msg))
    print("| case | file | problem | message |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x).replace("|", "\\|").replace(str(out) + "/", "") for x in r) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bad_input_corpus")
