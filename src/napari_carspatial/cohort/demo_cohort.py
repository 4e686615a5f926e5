"""A synthetic trial cohort with planted effects, built on the demo generator.

``write_demo_cohort(out)`` writes ``n_patients`` patients, each with a ``pre`` and a ``post``
biopsy (own tissue layout per patient, shared by its two biopsies), a manifest, an analysis
config and a gating file. Cell types are planted *before* cell shapes, the mask and marker
expression are generated, so mask, table ``X``, image and types always agree.

What is planted (``post`` biopsies only; every ``pre`` biopsy is the unmodified demo ``pre``:
no CAR T cells, ~5 % antigen-negative tumour cells in one clustered patch):

``responder`` (CR / PR)
    CAR T cells infiltrate: every tumour cell inside the nests (signed distance < 0) becomes a
    CAR T cell with probability ``p_infiltrate`` (0.08-0.14 per patient), on top of the demo's
    margin-enriched CAR T cells (so the tumour cell density inside the nests is ~10 % lower:
    CAR T cells take the place of tumour cells). Antigen kept: the antigen-negative fraction of
    tumour cells is set back to the ``pre`` level (5 %, the same clustered patch).
``antigen_loss`` (non-responder, SD / PD)
    Antigen escape: the antigen-negative fraction of tumour cells grows to ``neg_fraction``
    (0.45-0.65 per patient), as contiguous patches (the demo's subclone field, so it clusters).
    CAR T cells as in the plain demo ``post`` (margin-enriched, sparse in the core).
``myeloid_barrier`` (non-responder, SD / PD)
    Macrophage barrier: stroma / other / T cells 0-40 µm outside the tumour boundary become
    macrophages with probability 0.6; every CAR T cell closer than 40 µm to the tumour (or inside
    it) is moved out: it takes the type its position would otherwise hold (tumour inside, stroma
    outside) and the same number of stroma cells 60-160 µm outside become CAR T cells.
    Antigen-negative fraction 10-15 % (partial loss).

Not planted (identical generating process in every group): tissue layout statistics, CAR T PD-1
positivity (45 %), PD-L1 on macrophages, every ``pre`` biopsy (so responders vs non-responders
before infusion is a null comparison), and the CRS / ICANS grades (a fixed list, unrelated to the
profiles).

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model.atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from ..analysis.gating import GatingScheme
    from ..model import Sample

log = logging.getLogger(__name__)

TRIAL = "CARSPATIAL-DEMO-01 (synthetic)"
INDICATION = "pancreatic adenocarcinoma"
PROFILES = ("responder", "antigen_loss", "myeloid_barrier")
_CRS = (2, 1, 3, 0, 1, 2, 0, 2, 1, 1, 3, 0)
_ICANS = (0, 0, 1, 0, 0, 1, 0, 0, 2, 0, 1, 0)


def cohort_design(n_patients: int = 10, seed: int = 0) -> list[dict]:
    """Patients of the demo cohort: id, profile, response, toxicity and planted parameters.

    Half (rounded up) are responders (CR, PR alternating); the non-responders alternate
    antigen loss (PD) and myeloid barrier (SD).

    Parameters
    ----------
    n_patients
        Number of patients.
    seed
        Seed of the planted parameters.

    Returns
    -------
    list of dict
        One dict per patient.
    """
    if n_patients < 2:
        raise ValueError("a demo cohort needs at least 2 patients")
    rng = np.random.default_rng([seed, 99])
    n_r = (n_patients + 1) // 2
    out = []
    for i in range(n_patients):
        if i < n_r:
            prof, resp = "responder", ("CR", "PR")[i % 2]
        else:
            k = i - n_r
            prof, resp = (("antigen_loss", "PD"), ("myeloid_barrier", "SD"))[k % 2]
        out.append({
            "patient": f"P{i + 1:02d}", "profile": prof, "response": resp,
            "crs_grade": _CRS[i % len(_CRS)], "icans_grade": _ICANS[i % len(_ICANS)],
            "p_infiltrate": float(rng.uniform(0.08, 0.14)),
            "neg_fraction": float(rng.uniform(0.45, 0.65)) if prof == "antigen_loss" else
            float(rng.uniform(0.10, 0.15)) if prof == "myeloid_barrier" else 0.05,
            "layout_seed": int(seed * 1000 + i * 7 + 11),
        })
    return out


def plant(types: np.ndarray, dist_um: np.ndarray, patch: np.ndarray, yx_um: np.ndarray, patient: dict,
          rng: np.random.Generator) -> np.ndarray:
    """Apply a patient's profile to the ``post`` cell types.

    Parameters
    ----------
    types
        Cell-type codes into ``CELL_TYPES``.
    dist_um
        Signed distance of each cell to the tumour boundary (µm).
    patch
        Tumour patch index of each cell.
    yx_um
        Cell positions (µm).
    patient
        One entry of :func:`cohort_design`.
    rng
        Random generator.

    Returns
    -------
    numpy.ndarray
        The new codes.
    """
    from ..datasets._cells import T

    t = types.copy()
    prof = patient["profile"]
    tumorish = (t == T["Tumor"]) | (t == T["Tumor (antigen-neg)"])
    inside = dist_um < 0
    if prof == "responder":
        conv = np.flatnonzero(tumorish & inside)
        conv = conv[rng.random(conv.size) < patient["p_infiltrate"]]
        t[conv] = T["CAR T"]
    elif prof == "myeloid_barrier":
        ring = (dist_um > 0) & (dist_um < 40) & np.isin(t, [T["Stroma"], T["Other"], T["CD8 T"], T["CD4 T"]])
        ring = np.flatnonzero(ring)
        t[ring[rng.random(ring.size) < 0.6]] = T["Macrophage"]
        close = np.flatnonzero((t == T["CAR T"]) & (dist_um < 40))
        t[close] = np.where(inside[close], T["Tumor"], T["Stroma"])
        far = np.flatnonzero((t == T["Stroma"]) & (dist_um >= 60) & (dist_um <= 160))
        if far.size and close.size:
            t[rng.choice(far, size=min(close.size, far.size), replace=False)] = T["CAR T"]
    # antigen-negative fraction: top quantile of the subclone field among tumour cells (clustered)
    tum = np.flatnonzero((t == T["Tumor"]) | (t == T["Tumor (antigen-neg)"]))
    if tum.size:
        frac = patient["neg_fraction"]
        thr = np.quantile(patch[tum], 1 - frac)
        neg = patch[tum] >= thr
        u = rng.random(tum.size)
        neg = np.where(neg, u > 0.04, u < 0.005)
        t[tum] = np.where(neg, T["Tumor (antigen-neg)"], T["Tumor"])
    return t


def cohort_sample(patient: dict, timepoint: str, *, size: int = 1000, pixel_size_um: float = 1.0,
                  image: bool = True, chunk: int = 1024) -> Sample:
    """One biopsy of a demo-cohort patient.

    Mirrors :func:`napari_carspatial.datasets.demo_sample` with the patient's profile planted
    into the ``post`` cell types before shapes, mask and expression are generated.

    Parameters
    ----------
    patient
        One entry of :func:`cohort_design`.
    timepoint
        ``"pre"`` or ``"post"``.
    size
        Slide edge in pixels.
    pixel_size_um
        µm per pixel.
    image
        Also make the image (else mask and table only).
    chunk
        Dask chunk edge.

    Returns
    -------
    Sample
    """
    from ..datasets import demo_sample

    seed = patient["layout_seed"]
    rng = np.random.default_rng([seed, 8])

    def _plant(types, *, info, layout, yx_px, pixel_size_um):
        yx_um = yx_px * pixel_size_um
        patch = layout.sample("patch", yx_um[:, 0], yx_um[:, 1])
        return plant(types, info["dist_um"], patch, yx_um, patient, rng)

    name = f"{patient['patient']}-{timepoint}"
    return demo_sample(
        timepoint=timepoint, seed=seed, size=int(size), pixel_size_um=float(pixel_size_um), image=image,
        chunk=chunk, plant=_plant if timepoint == "post" else None, name=name,
        metadata={"patient": patient["patient"], "trial": TRIAL, "response": patient["response"],
                  "profile": patient["profile"]},
        params={"profile": patient["profile"]},
    )


def write_cohort_sample(s: Sample, folder: Path) -> dict[str, Path]:
    """Write one sample: mask TIFF, ``.h5ad`` table and (when it has one) a uint16 OME-TIFF.

    Parameters
    ----------
    s
        A sample of :func:`cohort_sample`.
    folder
        Output folder.

    Returns
    -------
    dict
        ``{"mask", "table", "image"}`` paths (``image`` only when written).
    """
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    ps = float(s.pixel_size_um)
    out = {"mask": folder / f"{s.name}_mask.tif", "table": folder / f"{s.name}.h5ad"}
    res = {"resolution": (1e4 / ps, 1e4 / ps), "resolutionunit": "CENTIMETER"}
    atomic_write(out["mask"], lambda t: tifffile.imwrite(t, np.asarray(s.labels[0].compute()), compression="zlib",
                                                    tile=(256, 256), **res))
    atomic_write(out["table"], lambda t: s.table.write_h5ad(t))
    if s.image:
        out["image"] = folder / f"{s.name}.ome.tif"
        img = np.clip(np.rint(np.asarray(s.image[0].compute())), 0, 65535).astype(np.uint16)
        meta = {"axes": "CYX", "Channel": {"Name": list(s.channel_names)}, "PhysicalSizeX": ps,
                "PhysicalSizeXUnit": "µm", "PhysicalSizeY": ps, "PhysicalSizeYUnit": "µm"}
        atomic_write(out["image"], lambda t: tifffile.imwrite(t, img, ome=True, metadata=meta, compression="zlib",
                                                         tile=(256, 256), photometric="minisblack", **res))
    return out


#: gating rules reproducing the demo's cell types from its markers (thresholds in raw units)
GATING_RULES = [
    ("CAR T", ["CD3+", "CAR+"]), ("CD8 T", ["CD3+", "CD8+"]), ("CD4 T", ["CD3+", "CD4+"]),
    ("B cell", ["CD20+"]), ("Macrophage", ["CD68+"]), ("Tumor (antigen-neg)", ["PanCK+", "MSLN-"]),
    ("Tumor", ["PanCK+", "MSLN+"]), ("Stroma", ["SMA+"]),
]


def demo_gating() -> GatingScheme:
    """A gating scheme for the demo panel (thresholds at ~1/4 of a positive cell's level).

    Returns
    -------
    GatingScheme
    """
    from ..analysis.gating import Gate, GatingScheme, PhenotypeRule
    from ..datasets._cells import LEVEL, C

    markers = sorted({c[:-1] for _, conds in GATING_RULES for c in conds})
    gates = {m: Gate(m, float(LEVEL[C[m]]) * 0.25, transform="asinh", cofactor=150.0) for m in markers}
    rules = [PhenotypeRule(name, conds, order=i) for i, (name, conds) in enumerate(GATING_RULES)]
    return GatingScheme(gates=gates, rules=rules, default="Other")


def write_demo_cohort(out: str | os.PathLike, *, n_patients: int = 10, size: int = 1000,
                      pixel_size_um: float = 1.0, image: bool = True, seed: int = 0,
                      curated: str | None = "P01-pre") -> dict[str, Path]:
    """Write the demo cohort: samples, ``manifest.csv``, ``analysis.yaml`` and ``gating.yaml``.

    Parameters
    ----------
    out
        Output folder (created).
    n_patients
        Patients (each pre + post).
    size
        Slide edge in pixels (square).
    pixel_size_um
        µm per pixel (1.0: a 1000 px slide is 1 mm x 1 mm, ~9,000 cells).
    image
        Also write a uint16 OME-TIFF per sample (the mask and table are always written).
    seed
        Seed of the cohort (layouts and planted parameters).
    curated
        Sample whose table gets the gating stored in ``uns`` (the "curated sample" the config's
        ``from_sample`` points at); ``None``: none.

    Returns
    -------
    dict
        ``{"manifest", "config", "gating", "folder"}`` paths.
    """
    import yaml

    from ..analysis.gating import export_gating, store_gating
    from .manifest import write_manifest

    out = Path(out)
    data = out / "samples"
    data.mkdir(parents=True, exist_ok=True)
    scheme = demo_gating()
    rows = []
    for pat in cohort_design(n_patients, seed):
        for tp in ("pre", "post"):
            s = cohort_sample(pat, tp, size=size, pixel_size_um=pixel_size_um, image=image)
            if curated and s.name == curated:
                store_gating(s.table, scheme, reviewer="demo curator")
            paths = write_cohort_sample(s, data)
            rows.append({"sample": s.name, "patient": pat["patient"], "trial": TRIAL, "indication": INDICATION,
                         "timepoint": tp, "response": pat["response"], "crs_grade": pat["crs_grade"],
                         "icans_grade": pat["icans_grade"],
                         "image": paths["image"].relative_to(out).as_posix() if "image" in paths else "",
                         "mask": paths["mask"].relative_to(out).as_posix(),
                         "table": paths["table"].relative_to(out).as_posix(), "regions": "",
                         "profile": pat["profile"]})
            log.info("demo cohort: %s (%s, %d cells)", s.name, pat["profile"], s.table.n_obs)
    manifest = write_manifest(rows, out / "manifest.csv")
    gating = export_gating(scheme, out / "gating.yaml")
    cfg = {
        "cell_type_key": "cell_type",
        "regions": {"mode": "auto", "core_depth_um": 50, "margin_um": 50},
        "metric_options": {"contact_radius_um": 12.0, "near_radius_um": 30.0},
        "thumbnail": {"channels": ["PanCK", "CAR", "CD68"]},
        "seed": 0,
    }
    config = out / "analysis.yaml"
    text = ("# Analysis of the demo cohort (see docs/cohorts.md).\n"
            "# cell_type_key: the demo's true cell types. To gate instead with the curated sample's rules:\n"
            f"#   from_sample: {curated or 'P01-pre'}\n#   cell_type_key: phenotype_gated\n"
            "# or with a gating file:  gating: gating.yaml\n" + yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_text(config, text)
    return {"manifest": manifest, "config": config, "gating": gating, "folder": out}
