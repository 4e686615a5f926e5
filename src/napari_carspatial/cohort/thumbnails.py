"""Sample thumbnails whose colours can be compared across a cohort.

A thumbnail is a 3-channel composite of the image's smallest pyramid level next to a cell-type
map. Set per sample, the contrast stretches an empty channel's background to bright (a
pre-infusion biopsy without CAR T cells looks CAR-positive), so pre and post cannot be compared.
Here each marker gets **one** display range for the whole cohort:

* every worker saves its sample's channels (``overview.npz``: the three chosen channels at the
  smallest level, float32) and its cell-type map (``celltypes.png``), and draws a first
  ``thumbnail.png`` with its own range (a sample run alone still gets a thumbnail);
* after the batch, :func:`refresh_cohort_thumbnails` pools a fixed-size random sample of pixels
  of every finished sample per marker (each sample weighs the same), takes the 1st and 99.5th
  percentiles of the pool as black and white (the white point at least 8x the pooled lower
  quartile's signal above black, so a marker that is dim everywhere stays dim), redraws every
  ``thumbnail.png`` with those ranges and writes them to ``RESULTS/thumbnail_contrast.json``
  (shown in the report).

Headless: matplotlib's Agg backend; no napari, no Qt.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..model.atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from anndata import AnnData

    from ..model import Sample

log = logging.getLogger(__name__)

#: pixels drawn from each sample per marker for the cohort's display range
POOL_PER_SAMPLE = 20_000
OVERVIEW = "overview.npz"
CELLTYPES = "celltypes.png"
THUMBNAIL = "thumbnail.png"
CONTRAST_FILE = "thumbnail_contrast.json"


def pick_channels(names: list[str], wanted: Sequence[str] | None = None) -> list[int]:
    """Indices of up to three channels: tumour, T / CAR, myeloid markers (or ``wanted``).

    Parameters
    ----------
    names
        The sample's channel names.
    wanted
        Channel names to use instead of the marker groups.

    Returns
    -------
    list of int
    """
    low = [n.lower() for n in names]
    out: list[int] = []
    for group in (wanted or [("panck", "ecad", "e-cadherin", "krt", "msln"), ("car", "cd3", "cd8"),
                             ("cd68", "cd163", "cd11b")]):
        group = (group,) if isinstance(group, str) else group
        for g in group:
            if g.lower() in low and low.index(g.lower()) not in out:
                out.append(low.index(g.lower()))
                break
    for i in range(len(names)):
        if len(out) >= 3:
            break
        if i not in out and low[i] not in ("dapi", "hoechst"):
            out.append(i)
    return out[:3]


def display_range(values: np.ndarray) -> tuple[float, float]:
    """(black, white): 1st and 99.5th percentiles, white at least 8x the lower quartile's signal above black.

    Parameters
    ----------
    values
        Pixel values of one channel.

    Returns
    -------
    tuple of float
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, q25, hi = np.percentile(v, [1, 25, 99.5])
    hi = max(hi, lo + 8.0 * max(q25 - lo, 1e-6))
    return float(lo), float(hi)


def save_overview(sample: Sample, adata: AnnData, type_key: str, regions: dict, sdir: Path,
                  channels: Sequence[str] | None = None) -> None:
    """Write ``overview.npz`` (when there is an image), ``celltypes.png`` and a first ``thumbnail.png``.

    Parameters
    ----------
    sample
        The sample (its image's smallest level is used).
    adata
        Its cell table (after exclusions).
    type_key
        Cell-type column.
    regions
        Region name -> cell mask.
    sdir
        The sample's results folder.
    channels
        The three channels of the composite (default: :func:`pick_channels`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    sdir = Path(sdir)
    if sample.image:
        lvl = sample.image[-1]
        idx = pick_channels(list(sample.channel_names), channels)
        data = np.stack([np.asarray(lvl[i], dtype=np.float32) for i in idx])
        names = np.array([str(sample.channel_names[i]) for i in idx])
        shape0 = np.array(sample.image[0].shape[-2:])
        atomic_write(sdir / OVERVIEW, lambda tmp: np.savez_compressed(tmp, channels=data, names=names, shape0=shape0),
                     suffix=".npz")
    else:
        (sdir / OVERVIEW).unlink(missing_ok=True)
    _celltype_map(adata, type_key, regions, sdir / CELLTYPES)
    render_thumbnail(sdir, None)


def _celltype_map(adata, type_key: str, regions: dict, path: Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    from ..model import colors_key

    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    fig = Figure(figsize=(2.4, 2.4), dpi=80)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.89))
    cats = adata.obs[type_key]
    cats = cats if isinstance(cats.dtype, pd.CategoricalDtype) else cats.astype("category")
    cols = list(np.asarray(adata.uns.get(colors_key(type_key), [])).tolist())
    if len(cols) != len(cats.cat.categories):
        import matplotlib.cm as cm

        cols = [matplotlib.colors.to_hex(cm.tab10(i % 10)) for i in range(len(cats.cat.categories))]
    lut = np.array([matplotlib.colors.to_rgb(c) for c in cols] + [(0.5, 0.5, 0.5)])
    codes = cats.cat.codes.to_numpy()
    ax.set_facecolor("#1a1a1a")
    s = float(np.clip(6000.0 / max(len(xy), 1), 0.8, 6.0))
    ax.scatter(xy[:, 0], xy[:, 1], c=lut[codes], s=s, linewidths=0, rasterized=True)
    margin = regions.get("margin")
    if margin is not None and np.asarray(margin).any():
        ax.scatter(xy[margin, 0], xy[margin, 1], s=s * 0.3, c="#ffffff", alpha=0.18, linewidths=0)
    ax.set_xlim(0, xy[:, 0].max() if len(xy) else 1)
    ax.set_ylim(xy[:, 1].max() if len(xy) else 1, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("cell types" + (" (margin: light haze)" if margin is not None and np.asarray(margin).any() else ""),
                 fontsize=7)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, facecolor="white"))


def _load(sdir: Path):
    p = Path(sdir) / OVERVIEW
    if not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as z:
        return z["channels"], [str(n) for n in z["names"]], tuple(int(v) for v in z["shape0"])


def render_thumbnail(sdir: Path, limits: dict | None) -> None:
    """Draw ``thumbnail.png`` from ``overview.npz`` + ``celltypes.png``.

    Parameters
    ----------
    sdir
        The sample's results folder.
    limits
        ``{marker: (black, white)}`` (the cohort's); ``None``: the sample's own range.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    sdir = Path(sdir)
    ov = _load(sdir)
    cells = mpimg.imread(sdir / CELLTYPES) if (sdir / CELLTYPES).is_file() else None
    fig = Figure(figsize=(4.6 if ov is not None else 2.4, 2.4), dpi=80)
    axes = fig.subplots(1, 2 if ov is not None else 1, squeeze=False)[0]
    if ov is not None:
        data, names, (h0, w0) = ov
        rgb = np.zeros(data.shape[1:] + (3,), np.float32)
        for k, (ch, name) in enumerate(zip(data, names, strict=False)):
            lo, hi = (limits or {}).get(name) or display_range(ch)
            rgb[..., k] = np.clip((ch - lo) / max(hi - lo, 1e-9), 0, 1)
        ax = axes[0]
        ax.imshow(rgb, extent=(0, w0, h0, 0), interpolation="bilinear")
        ax.set_title(" / ".join(names) + " (R / G / B)", fontsize=7)
        ax.set_axis_off()
    ax = axes[-1]
    if cells is not None:
        ax.imshow(cells)
    ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.01, wspace=0.03)
    atomic_write(sdir / THUMBNAIL, lambda tmp: fig.savefig(tmp, dpi=80, facecolor="white"))


def cohort_limits(sample_dirs: Iterable[Path], *, per_sample: int = POOL_PER_SAMPLE,
                  seed: int = 0) -> dict[str, tuple[float, float]]:
    """One (black, white) per marker from pixels pooled over the samples (each weighs the same).

    Parameters
    ----------
    sample_dirs
        Results folders holding ``overview.npz``.
    per_sample
        Pixels drawn from each sample.
    seed
        Seed of the draw.

    Returns
    -------
    dict
        ``{marker: (black, white)}``.
    """
    rng = np.random.default_rng(seed)
    pools: dict[str, list[np.ndarray]] = {}
    for d in sample_dirs:
        ov = _load(d)
        if ov is None:
            continue
        data, names, _ = ov
        for ch, name in zip(data, names, strict=False):
            v = ch.ravel()
            v = v[np.isfinite(v)]
            if v.size > per_sample:
                v = v[rng.choice(v.size, per_sample, replace=False)]
            pools.setdefault(name, []).append(v)
    return {name: display_range(np.concatenate(vs)) for name, vs in pools.items()}


def refresh_cohort_thumbnails(out: str | os.PathLike, samples: Iterable[str], *,
                              sample_dir: Callable[[Any, str], Path]) -> dict[str, tuple[float, float]]:
    """Redraw the thumbnails of every finished sample with the cohort's display ranges.

    Parameters
    ----------
    out
        The batch results folder (``thumbnail_contrast.json`` is written there).
    samples
        Sample ids.
    sample_dir
        ``(out, sample) -> folder`` (:func:`~napari_carspatial.cohort.samples.sample_dir`).

    Returns
    -------
    dict
        The display ranges used, ``{marker: (black, white)}``.
    """
    dirs = [sample_dir(out, s) for s in samples]
    dirs = [d for d in dirs if (d / "done.json").is_file() and (d / CELLTYPES).is_file()]
    limits = cohort_limits(dirs)
    for d in dirs:
        try:
            render_thumbnail(d, limits)
        except Exception:  # noqa: BLE001 - a thumbnail never fails the batch
            log.warning("%s: thumbnail failed", d, exc_info=True)
    atomic_write_text(Path(out) / CONTRAST_FILE, json.dumps(
        {"method": "per marker over every finished sample: black = 1st, white = 99.5th percentile of pooled pixels "
                   f"({POOL_PER_SAMPLE} per sample), white >= black + 8 x (lower quartile - black)",
         "limits": {k: [round(a, 4), round(b, 4)] for k, (a, b) in limits.items()}, "samples": len(dirs)}, indent=1))
    return limits
