"""Turn a ``Sample`` into napari layers (layer-data tuples) and back. No Qt.

* one image layer per channel, named by marker, a sensible colour per channel, additive blending,
  contrast limits from percentiles of the smallest pyramid level (level 0 is never read);
* the segmentation as a labels layer (outlines by default) whose hover shows cell id and type;
* layers are scaled to µm when the pixel size is known, so the scale bar and rulers read µm.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import pandas as pd

from ..model import Sample, instance_ids
from ..model import channels as _policy
from ..model.cell_types import find_cell_type_key
from .session import (
    META_CHANNEL,
    META_ROLE,
    META_SAMPLE,
    ROLE_IMAGE,
    ROLE_LABELS,
    SampleEntry,
    pending_entry,
    session_for,
)

log = logging.getLogger(__name__)

def channel_colormaps(names: list[str], visible: list[bool] | None = None) -> list[str]:
    """A napari colormap name per channel (:func:`napari_carspatial.model.channels.channel_colormaps`):
    known markers get their usual colour, the channels shown first distinct ones, and every
    colormap maps 0 to black, so additive blending never whitens the canvas."""
    return _policy.channel_colormaps(names, visible)


def default_visible(names: list[str], *, empty: list[bool] | None = None) -> list[bool]:
    """Which channels to show first: one nuclear channel plus up to three lineage markers;
    background / blank / all-zero channels never (see :mod:`napari_carspatial.model.channels`)."""
    return _policy.default_visible(names, empty=empty)


def contrast_limits(level, *, low: float = 1.0, high: float = 99.8,
                    max_values: int = 1_000_000) -> list[tuple[float, float]]:
    """Per-channel display limits of one (C, Y, X) pyramid level; robust for sparse counts.

    Call it with the *smallest* level: it is computed, so it must be small. See
    :func:`napari_carspatial.model.channels.contrast_limits`.
    """
    return _policy.contrast_limits(level, low=low, high=high, max_values=max_values)


#: at most this many (y, x) blocks of the smallest level are read for contrast limits
MAX_CONTRAST_BLOCKS = 16


def sampled_blocks(level, max_blocks: int = MAX_CONTRAST_BLOCKS):
    """The smallest pyramid level, or evenly spaced blocks of it when it has many.

    A real pyramid's smallest level is a few blocks and is used whole. A file without a pyramid
    gets its small levels by striding level 0, so each of their blocks reads level-0 chunks;
    sampling blocks bounds what opening the file reads.
    """
    if not hasattr(level, "blocks") or level.ndim != 3:
        return level
    ny, nx = level.numblocks[-2:]
    if ny * nx <= max_blocks:
        return level
    import dask.array as da

    k = int(np.ceil(np.sqrt(max_blocks)))
    ys = np.unique(np.linspace(0, ny - 1, min(k, ny)).round().astype(int))
    xs = np.unique(np.linspace(0, nx - 1, min(k, nx)).round().astype(int))
    rows = [da.concatenate([level.blocks[:, int(y), int(x)] for x in xs], axis=2) for y in ys]
    # blocks of the last row/column can be narrower: pad-free concatenation needs equal shapes
    widths = {r.shape[1] for r in rows}
    if len(widths) > 1:
        rows = [r[:, : min(widths)] for r in rows]
    heights = {r.shape[2] for r in rows}
    if len(heights) > 1:
        rows = [r[:, :, : min(heights)] for r in rows]
    return da.concatenate(rows, axis=1)


def channel_plan(sample: Sample, cache: dict | None = None) -> dict:
    """Colours, contrast limits and default visibility of every channel.

    Computed once per sample when ``cache`` (the sample's session cache,
    :meth:`ViewerSession.cache`) is given: it dies with the sample.
    """
    plan = None if cache is None else cache.get("channel_plan")
    if plan is None:
        names = sample.channel_names
        smallest = min(sample.image, key=lambda a: a.shape[-1] * a.shape[-2])
        small = np.asarray(sampled_blocks(smallest))
        empty = _policy.empty_channels(small)
        visible = default_visible(names, empty=empty)
        plan = {
            "colormap": channel_colormaps(names, visible),
            "contrast_limits": contrast_limits(small),
            "visible": visible,
            "empty": empty,
        }
        if cache is not None:
            cache["channel_plan"] = plan
    return plan


def _channel_indices(which, visible: list[bool]) -> list[int]:
    if which == "all":
        return list(range(len(visible)))
    if which == "visible":
        return [i for i, v in enumerate(visible) if v]
    if which == "hidden":
        return [i for i, v in enumerate(visible) if not v]
    return [int(i) for i in which]


def _scale(sample: Sample) -> tuple[float, float]:
    px = sample.pixel_size_um
    return (px, px) if px else (1.0, 1.0)


def _units(sample: Sample) -> tuple[str, str]:
    return ("um", "um") if sample.pixel_size_um else ("pixel", "pixel")


def hover_features(sample: Sample, *, type_key: str | None = None) -> pd.DataFrame | None:
    """Labels-layer features for hover: ``index`` (= mask label) and the cell type."""
    t = sample.table
    if t is None:
        return None
    feats = {"index": instance_ids(t)}
    key = type_key or find_cell_type_key(t)
    if key is not None:
        col = t.obs[key]
        # categorical columns stay categorical (codes, no 10^6 strings); others as text
        feats[key] = col.array.copy() if isinstance(col.dtype, pd.CategoricalDtype) else col.astype(str).to_numpy()
    if "acquisition" in t.obs and key != "acquisition":     # a montage: which tile a cell is in
        col = t.obs["acquisition"]
        feats["acquisition"] = col.array.copy() if isinstance(col.dtype, pd.CategoricalDtype) else col.astype(str).to_numpy()
    return pd.DataFrame(feats)


def sample_to_layer_data(
    sample: Sample, *, entry: SampleEntry | None = None, translate: tuple[float, float] = (0.0, 0.0),
    prefix: str | None = None, channels="all", labels: bool = True,
) -> list[tuple[Any, dict, str]]:
    """napari layer-data tuples for ``sample`` (image channels, then labels). No viewer needed.

    ``translate`` (world units) places the sample in a montage; ``prefix`` is put before channel
    names so several samples' layers stay distinguishable. ``channels`` is ``"all"``,
    ``"visible"`` (the ones shown first), ``"hidden"`` or a list of channel indices. ``entry``
    is the sample's session entry (default: a pending one, claimed by the session of the viewer
    the layers are added to). Layers carry only the sample id in their metadata.
    """
    entry = entry or pending_entry(sample)
    sid = entry.sid
    scale = _scale(sample)
    out: list[tuple[Any, dict, str]] = []
    if sample.image:
        plan = channel_plan(sample, entry.cache)
        idx = _channel_indices(channels, plan["visible"])
        names = [sample.channel_names[i] for i in idx]
        pyramid = sample.image if len(idx) == sample.n_channels else [lvl[idx] for lvl in sample.image]
        multiscale = len(pyramid) > 1
        if idx:
            meta = {
                "channel_axis": 0,
                "name": [f"{prefix}{n}" for n in names] if prefix else list(names),
                "colormap": [plan["colormap"][i] for i in idx],
                "contrast_limits": [plan["contrast_limits"][i] for i in idx],
                "blending": "additive",
                "visible": [plan["visible"][i] for i in idx],
                "scale": scale,
                "translate": tuple(translate),
                "units": _units(sample),
                "multiscale": multiscale,
                "metadata": [
                    {META_SAMPLE: sid, META_ROLE: "image", META_CHANNEL: n} for n in names
                ],
            }
            out.append((pyramid if multiscale else pyramid[0], meta, "image"))
    if sample.labels and labels:
        labels = sample.labels
        meta = {
            "name": f"{layer_label(sample)} cells",
            "scale": scale,
            "translate": tuple(translate),
            "units": _units(sample),
            "multiscale": len(labels) > 1,
            "opacity": CELLS_OPACITY,
            "blending": "translucent",
            "colormap": outline_colormap(),
            "metadata": {META_SAMPLE: sid, META_ROLE: "labels"},
        }
        feats = hover_features(sample)
        if feats is not None:
            meta["features"] = feats
        out.append((labels if len(labels) > 1 else labels[0], meta, "labels"))
    if sample.points is not None and len(sample.points):   # transcripts: their density (omicsgui)
        from .transcripts import density_layer_data

        out.append(density_layer_data(sample, sid, geometry=(scale, tuple(translate), _units(sample))))
    return out


def layer_label(sample: Sample) -> str:
    """A short sample label for layer names, so napari's layer list does not elide them:
    ``"20210305_NE (15 acquisitions)"`` -> ``"20210305_NE ×15"``."""
    import re

    return re.sub(r"\s*\((\d+) acquisitions\)$", r" ×\1", str(sample.name))


def montage_offsets(samples: list[Sample], *, gap_fraction: float = 0.12) -> list[tuple[float, float]]:
    """World (y, x) offsets that tile samples in a near-square grid, left to right, top to bottom."""
    if len(samples) <= 1:
        return [(0.0, 0.0)] * len(samples)
    sizes = []
    for s in samples:
        shp = s.shape_yx or (0, 0)
        sy, sx = _scale(s)
        sizes.append((shp[0] * sy, shp[1] * sx))
    from ..model.montage import row_gap

    cell_h = max(h for h, _ in sizes)
    cell_w = max(w for _, w in sizes)
    gap_y, gap = row_gap(cell_h, cell_w, len(samples), gap_fraction=gap_fraction)
    ncol = int(np.ceil(np.sqrt(len(samples))))
    return [((i // ncol) * (cell_h + gap_y), (i % ncol) * (cell_w + gap)) for i in range(len(samples))]


def short_names(names: list[str]) -> list[str]:
    """Sample names without the prefix they all share (``20210305_NE_mockData1_001`` -> ``mockData1_001``)."""
    import os

    if len(names) < 2:
        return list(names)
    common = os.path.commonprefix(names)
    cut = max(common.rfind(c) for c in "_- .") + 1 if common else 0
    short = [n[cut:] or n for n in names]
    return short if len(set(short)) == len(short) else list(names)


def _prefixes(samples: list[Sample]) -> list[str | None]:
    if len(samples) <= 1:
        return [None] * len(samples)
    return [f"{n}: " for n in _tile_names(samples)]


def prefixes(samples: list[Sample]) -> list[str | None]:
    """Layer-name prefixes of samples shown together (None for a single sample)."""
    return _prefixes(samples)


def tile_label_data(names: list[str], rects: list[tuple[float, float, float, float]], *, sid: str | None = None,
                    name: str = "acquisitions", units: tuple[str, str] | None = None) -> tuple[Any, dict, str]:
    """A Shapes layer-data tuple: one outlined rectangle per tile, its acquisition name written at its top left.

    ``rects`` are (y0, x0, y1, x1) in world units (µm when the pixel size is known).
    """
    from ..model.montage import LABEL_BAND_FRACTION

    extent = max(max(r[2] - r[0], r[3] - r[1]) for r in rects) if rects else 1.0
    total = (max(max(r[2] for r in rects) - min(r[0] for r in rects), max(r[3] for r in rects) - min(r[1] for r in rects))
             if rects else 1.0)
    # a title band above each tile holds its name, inside the tile's own outline (so it never runs into
    # the tile above: the rows' gap is made for it, model.montage.row_gap) and inside the layer's
    # extent (fitting the view never cuts the first row's names off); sized for the default zoom
    band = max(0.06 * extent, LABEL_BAND_FRACTION * total)
    data = [np.array([[y0 - band, x0], [y0 - band, x1], [y1, x1], [y1, x0]], dtype=float)
            for y0, x0, y1, x1 in rects]
    meta = {
        "name": name,
        "shape_type": "rectangle",
        "features": {"acquisition": list(names)},
        # napari centres an "upper_left" text vertically on that corner: moved half the band down,
        # the name sits in the band, between the outline and the tile's image
        "text": {"string": "{acquisition}", "anchor": "upper_left", "color": "white", "size": 10,
                 "translation": [0.5 * band, 0.015 * extent]},
        "face_color": "transparent",
        "edge_color": "#9a9a9a",
        "edge_width": max(extent * 0.006, 1e-6),
        "opacity": 0.9,
        "blending": "translucent_no_depth",
        "metadata": {META_ROLE: ROLE_TILES, **({META_SAMPLE: sid} if sid else {})},
    }
    if units is not None:
        meta["units"] = units
    return (data, meta, "shapes")


#: role of the layer outlining and naming the tiles of several acquisitions
ROLE_TILES = "tiles"


def _tile_names(samples: list[Sample]) -> list[str]:
    from ..model.montage import tile_names

    return tile_names(samples)


def _tile_rects_of_montage(m: Sample) -> list[tuple[float, float, float, float]]:
    sy, sx = _scale(m)
    return [(t["y0"] * sy, t["x0"] * sx, (t["y0"] + t["height"]) * sy, (t["x0"] + t["width"]) * sx)
            for t in m.metadata["tiles"]]


def _tile_rects(samples: list[Sample], offsets) -> list[tuple[float, float, float, float]]:
    rects = []
    for s, (y0, x0) in zip(samples, offsets, strict=True):
        sy, sx = _scale(s)
        h, w = s.shape_yx or (0, 0)
        rects.append((y0, x0, y0 + h * sy, x0 + w * sx))
    return rects


def _montage(samples: list[Sample], tile: bool) -> Sample | None:
    from ..model.montage import can_montage, montage

    return montage(samples) if tile and len(samples) > 1 and can_montage(samples) else None


def samples_to_layer_data(samples: list[Sample], *, tile: bool = True) -> list[tuple[Any, dict, str]]:
    """Layer data for one or several samples.

    Four or more small acquisitions with the same channels are tiled into one montage sample
    (``tile=True``, see :mod:`napari_carspatial.model.montage`: a few layers instead of one per
    channel per acquisition); otherwise each sample gets its own layers, side by side with
    prefixed names. Several samples also get a Shapes layer outlining and naming the tiles.
    """
    m = _montage(samples, tile)
    if m is not None:
        entry = pending_entry(m)
        out = sample_to_layer_data(m, entry=entry)
        out.append(tile_label_data(_tile_names(samples), _tile_rects_of_montage(m), sid=entry.sid,
                                   name=f"{m.name} tiles", units=_units(m)))
        return out
    out = []
    offsets = montage_offsets(samples)
    for s, off, pre in zip(samples, offsets, _prefixes(samples), strict=False):
        out.extend(sample_to_layer_data(s, translate=off, prefix=pre))
    if len(samples) > 1:
        out.append(tile_label_data(_tile_names(samples), _tile_rects(samples, offsets), units=_units(samples[0])))
    return out


def add_samples_layers(viewer, samples: list[Sample], *, tile: bool = True) -> list:
    """Add several samples: one tiled montage sample when they fit one (see
    :func:`samples_to_layer_data`), else side by side; the tiles are outlined and named."""
    m = _montage(samples, tile)
    if m is not None:
        layers = add_sample_layers(viewer, m)
        data, meta, _ = tile_label_data(_tile_names(samples), _tile_rects_of_montage(m),
                                        sid=session_for(viewer).register(m), name=f"{m.name} tiles",
                                        units=_units(m))
        layers.append(viewer.add_shapes(data, **meta))
        keep_edge_on_screen(viewer, layers[-1], TILE_EDGE_PX)
        viewer.reset_view()
        return layers
    layers = []
    offsets = montage_offsets(samples)
    for s, off, pre in zip(samples, offsets, _prefixes(samples), strict=False):
        layers.extend(add_sample_layers(viewer, s, translate=off, prefix=pre))
    if len(samples) > 1:
        data, meta, _ = tile_label_data(_tile_names(samples), _tile_rects(samples, offsets), units=_units(samples[0]))
        layers.append(viewer.add_shapes(data, **meta))
        keep_edge_on_screen(viewer, layers[-1], TILE_EDGE_PX)
        viewer.reset_view()   # napari only fits the first layer; show the whole montage
    return layers


def add_sample_layers(viewer, sample: Sample, *, translate=(0.0, 0.0), prefix: str | None = None,
                      channels="all", labels: bool = True) -> list:
    """Add ``sample`` to ``viewer`` (images, then cell outlines) and return the new layers.

    Channels added later (``channels="hidden"`` after ``"visible"``) are placed below the
    sample's cell outlines, so the layer order stays images-then-outlines.
    """
    session = session_for(viewer)
    layers = []
    sid = session.register(sample)
    entry = session.entry(sid)
    for data, meta, kind in sample_to_layer_data(sample, entry=entry, translate=translate, prefix=prefix,
                                                 channels=channels, labels=labels):
        if kind == "image":
            added = viewer.add_image(data, **meta)
            # the session puts an image inserted above the sample's cell layers under them
            layers.extend(added if isinstance(added, list) else [added])
        elif kind == "labels":
            lbl = viewer.add_labels(data, **meta)
            style_labels(lbl)
            session.mark_styled(lbl)
            layers.append(lbl)
    if sample.pixel_size_um:
        show_scale_bar(viewer)
    if labels and sample.labels:
        fade_outlines_with_zoom(viewer, sid)
    return layers


#: opacity of the grey cell outlines (the segmentation) at cell zoom
CELLS_OPACITY = 0.45


#: the first view is the stain: cells as thin outlines in their class colour (QuPath's default for
#: detections), never a filled class map over the fluorescence
FIRST_VIEW_MODE = "outline"
#: opacity of the class outlines in the first view
FIRST_VIEW_OPACITY = 0.85


def first_view_style(coloring) -> dict:
    """``mode`` / ``opacity`` for colouring by a category: the user's current choice once a column is
    shown, else the first-view style: outlines over the stain (:data:`FIRST_VIEW_MODE`,
    :data:`FIRST_VIEW_OPACITY`), or filled cells when the sample has no image (a mask and a table
    only: outlines over black are barely visible at slide zoom, and there is no stain to keep in view)."""
    if coloring.key is not None:
        return {"mode": coloring.mode, "opacity": coloring.opacity}
    sample = coloring.session.sample(coloring.sid)
    if sample is not None and not sample.image:
        return {"mode": "filled", "opacity": FIRST_VIEW_OPACITY}
    return {"mode": FIRST_VIEW_MODE, "opacity": FIRST_VIEW_OPACITY}


#: outline colour of the cell segmentation (RGBA): a quiet light grey, so markers stay readable
OUTLINE_RGBA = (0.85, 0.85, 0.85, 1.0)


def outline_colormap():
    """Every cell the same quiet grey, background transparent: a 2-entry cyclic colormap.

    Random per-cell colours turn 40,000 outlines into noise at slide zoom; colouring by cell type
    is the legend's job (``coloring.CellColoring``). Given at layer creation, so the labels are
    mapped to colours once.
    """
    from napari.utils.colormaps import CyclicLabelColormap

    return CyclicLabelColormap(colors=np.array([(0.0, 0.0, 0.0, 0.0), OUTLINE_RGBA]), background_value=0)


def style_labels(layer) -> None:
    """Thin single-colour cell outlines, so the markers underneath stay readable."""
    layer.contour = 1


#: where the scale bar sits: bottom left, because napari's notifications pop up bottom right
SCALE_BAR_POSITION = "bottom_left"


def show_scale_bar(viewer) -> None:
    """Show the scale bar (its unit comes from the layers' ``units``, µm when known), bottom left,
    clear of napari's notifications."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    bar = getattr(overlays, "scale_bar", None) if overlays is not None else None
    if bar is None:  # napari < 0.9
        bar = viewer.scale_bar
    bar.visible = True
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        bar.position = SCALE_BAR_POSITION


def apply_marker_panel(session, sid: str, markers: list[str], colors: dict[str, str] | None = None
                       ) -> tuple[list[str], list[str]]:
    """Show exactly the channels ``markers`` of sample ``sid`` (case-insensitive), in distinct colours.

    Saved panel ``colors`` (channel -> napari colormap) win; the other shown channels get the
    channel policy's colours for the shown set
    (:func:`napari_carspatial.model.channels.channel_colormaps`), so no two shown channels look
    alike. Returns (channels shown, panel markers the sample lacks). Headless: no Qt.
    """
    layers = session.layers_of(sid, ROLE_IMAGE)
    names = [lyr.metadata.get(META_CHANNEL, lyr.name) for lyr in layers]
    low = {n.lower(): n for n in names}
    found = list(dict.fromkeys(low[m.lower()] for m in markers if m.lower() in low))
    missing = [m for m in markers if m.lower() not in low]
    saved = {k.lower(): v for k, v in (colors or {}).items()}
    policy = dict(zip(found, _policy.channel_colormaps(found, [True] * len(found)), strict=True))
    taken = {saved[n.lower()] for n in found if n.lower() in saved}
    free = [c for c in ("blue", *_policy.PALETTE) if c not in taken]
    shown = set(found)
    for lyr, name in zip(layers, names, strict=True):
        if name in shown:
            cmap = saved.get(name.lower())
            if cmap is None:
                cmap = policy[name] if policy[name] not in taken else next(iter(free), policy[name])
                taken.add(cmap)
                if cmap in free:
                    free.remove(cmap)
            if lyr.colormap.name != cmap:
                lyr.colormap = cmap
        if lyr.visible != (name in shown):
            lyr.visible = name in shown
    return found, missing


# --------------------------------------------------------------------------- lines of constant on-screen width
#: key in ``layer.metadata``: the Shapes layer's edges keep this width in screen pixels at any zoom
META_SCREEN_EDGE = "carspatial_screen_edge_px"
#: on-screen width of region borders, screen pixels: thin, so the margin cells under review stay visible
ROI_EDGE_PX = 1.5
#: on-screen width of the acquisition tile outlines, screen pixels
TILE_EDGE_PX = 1.0


def screen_edge_width(viewer, layer_scale, px: float = ROI_EDGE_PX) -> float:
    """The Shapes ``edge_width`` (data units) that is ``px`` screen pixels at the camera's zoom.

    napari's ``edge_width`` is in data units: world = data x ``layer_scale``, screen = world x zoom.
    """
    from .inspect import camera

    zoom = float(camera(viewer).zoom) or 1.0
    sc = float(np.asarray(layer_scale, dtype=float)[-1]) or 1.0
    return float(px) / (zoom * sc)


def keep_edge_on_screen(viewer, layer, px: float = ROI_EDGE_PX) -> None:
    """Keep the edges of Shapes ``layer`` ``px`` screen pixels wide whatever the zoom.

    Follows the camera's zoom through napari's public events (``camera.events.zoom``); new
    shapes drawn on the layer get the same width (``current_edge_width``). The follower lets go
    when the layer leaves the viewer.
    """
    from .inspect import camera

    first = META_SCREEN_EDGE not in layer.metadata
    layer.metadata[META_SCREEN_EDGE] = float(px)
    if first:
        cam = camera(viewer)

        def _follow(event=None):
            apply_screen_edge(viewer, layer)

        def _removed(event):
            if event.value is layer or event.value == layer:
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    cam.events.zoom.disconnect(_follow)
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    viewer.layers.events.removed.disconnect(_removed)

        # plain functions: napari's emitters hold them until the layer leaves the viewer
        cam.events.zoom.connect(_follow)
        viewer.layers.events.removed.connect(_removed)
    apply_screen_edge(viewer, layer)


def roi_text() -> dict:
    """Text of a regions layer: the region's name in the middle of its box (never at a corner
    that the canvas edge cuts off), white with a dark outline-free size that reads at any zoom."""
    return {"string": "{name}", "color": "white", "size": 10, "anchor": "center"}


def apply_screen_edge(viewer, layer) -> None:
    """Set the edge width of every shape of ``layer`` to its on-screen width at the current zoom."""
    px = layer.metadata.get(META_SCREEN_EDGE)
    if px is None:
        return
    w = screen_edge_width(viewer, layer.scale, px)
    if len(layer.data):
        cur = np.asarray(layer.edge_width, dtype=float)
        if cur.size and np.allclose(cur, w, rtol=1e-3):
            layer.current_edge_width = w
            return
        layer.edge_width = [w] * len(layer.data)
    layer.current_edge_width = w


# --------------------------------------------------------------------------- outlines fade at slide zoom
#: cells smaller than this on screen (diameter, px): outlines start to fade (they would hide the stain)
FADE_FROM_PX = 12.0
#: ... fully faded (to :data:`FADE_MIN`) at this diameter
FADE_TO_PX = 4.0
#: the faintest outline, as a fraction of its opacity
FADE_MIN = 0.2


def outline_fade(cell_diameter_screen_px: float) -> float:
    """Opacity factor of cell outlines for cells this big on screen: 1 at cell zoom, down to
    :data:`FADE_MIN` when cells are a few pixels (slide zoom: a mesh of outlines would hide the stain)."""
    d = float(cell_diameter_screen_px)
    t = (d - FADE_TO_PX) / (FADE_FROM_PX - FADE_TO_PX)
    return float(min(1.0, max(FADE_MIN, FADE_MIN + (1 - FADE_MIN) * t)))


#: (table id, number of rows, sum of the areas) -> median area of the last table asked about
_MEDIAN_AREA: dict = {}


def _median_area(t) -> float | None:
    """Median of the table's positive finite ``obs["area"]`` (None without one), kept while the
    column sums to the same: every zoom step and edit asks (a median of 10^6 values: ~15 ms)."""
    area = pd.to_numeric(t.obs["area"], errors="coerce").to_numpy(dtype=float)
    total = float(np.sum(area))
    if total != total:   # NaN areas (unmeasured cells): their count and the sum of the others
        total = (float(np.nansum(area)), int(np.count_nonzero(np.isnan(area))))
    key = (id(t), area.size, total)
    if key not in _MEDIAN_AREA:
        ok = area[np.isfinite(area) & (area > 0)]
        _MEDIAN_AREA.clear()
        _MEDIAN_AREA[key] = float(np.median(ok)) if ok.size else None
    return _MEDIAN_AREA[key]


def cell_diameter_world(sample: Sample, scale: float) -> float:
    """Median cell diameter in world units (from ``obs["area"]`` in px², else 10 µm)."""
    t = sample.table
    if t is not None and "area" in t.obs and t.n_obs:
        med = _median_area(t)
        if med is not None:
            return float(2 * np.sqrt(med / np.pi) * scale)
    return 10.0 if sample.pixel_size_um else 20.0 * scale


#: layer-metadata flag: the outline fade follows the camera for this sample
META_FADE = "carspatial_outline_fade"


def fade_outlines_with_zoom(viewer, sid: str) -> None:
    """Outline layers of sample ``sid`` (the grey segmentation, the class outlines) fade at slide
    zoom and are crisp at cell zoom; follows ``camera.events.zoom``. Installed once per sample
    (the flag is in the metadata of the sample's cell-outline layer, which dies with it)."""
    from .inspect import camera

    session = session_for(viewer)
    lab = session.labels_layer(sid)
    if lab is None:
        return
    if lab.metadata.get(META_FADE):
        apply_outline_fade(viewer, sid)
        return
    lab.metadata[META_FADE] = True
    cam = camera(viewer)

    def _follow(event=None):
        if session.sample(sid) is None:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                cam.events.zoom.disconnect(_follow)
            return
        apply_outline_fade(viewer, sid)

    cam.events.zoom.connect(_follow)
    apply_outline_fade(viewer, sid)


def apply_outline_fade(viewer, sid: str) -> float:
    """Set the outline layers' opacity for the current zoom; returns the fade factor."""
    from .inspect import camera

    session = session_for(viewer)
    sample = session.sample(sid)
    lab = session.labels_layer(sid)
    if sample is None or lab is None:
        return 1.0
    d = cell_diameter_world(sample, float(lab.scale[-1])) * float(camera(viewer).zoom)
    f = outline_fade(d)
    for lyr in session.layers_of(sid, ROLE_LABELS):
        want = round(CELLS_OPACITY * f, 3)
        if abs(lyr.opacity - want) > 1e-3:
            lyr.opacity = want
    if session.has_coloring(sid):
        col = session.coloring(sid)
        layer = col.category_layer
        if layer is not None and col.kind == "categorical" and col.mode == "outline":
            want = round(col.opacity * f, 3)
            if abs(layer.opacity - want) > 1e-3:
                layer.opacity = want
    return f


# =========================================================================== warming napari's kernels
#: dtypes of the labels data our layers hand napari: uint8 class codes (colouring, selection,
#: below 255 classes) and uint32 cell ids (the mask); napari compiles (numba) a typed dictionary per
#: data dtype the first time it draws one, ~1-3 s each, not cached on disk
WARM_DTYPES = (np.uint8, np.uint32)
_warm: dict = {"thread": None, "edit_thread": None, "seconds": None, "shape_seconds": None}


def warm_label_kernels() -> float:
    """Compile, once per process, what napari draws our labels layers with, through its public
    colormap API (``DirectLabelColormap.map`` / ``label_colormap(n).map`` of a 2 x 2 array per
    dtype of :data:`WARM_DTYPES`): the first colouring of a sample then draws at once instead of
    compiling (~3 s at 10^6 cells, most of it numba's typed dictionary). Returns the seconds spent."""
    import time

    from napari.utils.colormaps import DirectLabelColormap, label_colormap

    t0 = time.perf_counter()
    tiny = np.array([[0, 1], [2, 3]])
    colors = {None: np.zeros(4), 0: np.zeros(4), 1: np.array([1.0, 0, 0, 1]), 2: np.array([0, 0, 1.0, 1])}
    for dt in WARM_DTYPES:
        try:
            DirectLabelColormap(color_dict=colors, background_value=0).map(tiny.astype(dt))
            label_colormap(49).map(tiny.astype(dt))
        except Exception:  # noqa: BLE001 - a warm-up: napari compiles on first use as before
            log.debug("warming napari's label kernels for %s failed", np.dtype(dt).name, exc_info=True)
    return time.perf_counter() - t0


#: mask dtypes a segmentation edit layer can hold (ours uint32; steinbock's and others' masks
#: uint16 or int32)
WARM_EDIT_DTYPES = (np.uint16, np.uint32, np.int32)


def warm_contour_edit_kernels() -> None:
    """An edit of a labels layer drawn with contours (a segmentation edit region, napari's own
    paint brush) recolours the edited block through a numba kernel specialised for a strided
    2-D view, compiled on first use (~0.6-0.9 s on the GUI thread, in the first split of a fresh
    install); here through napari's public API: a ``napari.layers.Labels`` never added to a
    viewer, ``contour=1``, a block set with ``data_setitem``, for each of :data:`WARM_EDIT_DTYPES`."""
    try:
        from napari.layers import Labels
    except ImportError:
        return
    yy, xx = np.mgrid[2:6, 2:7]
    for dt in WARM_EDIT_DTYPES:
        try:
            layer = Labels(np.zeros((12, 12), dtype=dt))
            layer.contour = 1
            layer.data_setitem((yy.ravel(), xx.ravel()), 3)
        except Exception:  # noqa: BLE001 - a warm-up: napari compiles on first use as before
            log.debug("warming napari's contour kernels for %s failed", np.dtype(dt).name, exc_info=True)


#: the shape types our layers draw (a lasso or region polygon, the segmentation edit frame, the
#: Regions tab's rectangle and ellipse tools, paths): each triangulates through its own numba
#: specialisations in napari
WARM_SHAPE_TYPES = ("polygon", "rectangle", "ellipse", "path")


def warm_shape_kernels() -> float:
    """Compile (or load from numba's disk cache), once per process, what napari triangulates shapes
    with, through its public layer API: a ``napari.layers.Shapes`` never added to a viewer, one
    shape of each of :data:`WARM_SHAPE_TYPES` in float64 world coordinates, as a lasso or a drawn
    region arrives. napari's own warm-up (run in ``Shapes.__init__``) compiles other signatures
    than a drawn polygon uses: on a fresh install the first lasso compiled for ~10 s on the GUI
    thread and the Curation dock's drawing layer ~7 s; with numba's cache on disk, ~1.4 s at the
    first Shapes layer of every session. Returns the seconds spent."""
    import time

    t0 = time.perf_counter()
    try:
        from napari.layers import Shapes

        layer = Shapes(ndim=2)
        square = np.array([[0.0, 0.0], [0.0, 5.0], [5.0, 5.0], [6.0, 1.0]])
        for kind in WARM_SHAPE_TYPES:
            layer.add([square if kind in ("polygon", "path") else square[[0, 2]]], shape_type=kind)
    except Exception:  # noqa: BLE001 - a warm-up: napari compiles on first use as before
        log.debug("warming napari's shape kernels failed", exc_info=True)
    return time.perf_counter() - t0


def _start_thread(key: str, name: str, work) -> bool:
    """Run ``work`` in a daemon thread, once per process under ``key`` of :data:`_warm`."""
    import atexit
    import threading

    if _warm.get(key) is not None:
        return False
    th = threading.Thread(target=work, name=name, daemon=True)
    _warm[key] = th
    th.start()
    # never let the interpreter shut down under a numba compile (napari closed within seconds)
    atexit.register(th.join, 60.0)
    return True


def start_kernel_warm_up() -> bool:
    """Run :func:`warm_label_kernels` in a daemon thread, once per process (our docks start it
    when the widgets load, while the user picks a file: the first sample then draws without
    compiling). Returns True when this call started it. numba compiles under its own lock and
    LLVM runs without the GIL: a layer drawn meanwhile waits for the kernel it needs at most,
    never compiles it twice. The kernels needed later are :func:`start_edit_kernel_warm_up`'s."""
    def run():
        _warm["seconds"] = warm_label_kernels()
        log.debug("napari's label kernels warmed in %.2f s", _warm["seconds"])

    return _start_thread("thread", "carspatial-warm-label-kernels", run)


def start_edit_kernel_warm_up() -> bool:
    """Run :func:`warm_shape_kernels` then :func:`warm_contour_edit_kernels` in a daemon thread,
    once per process: what a first lasso, drawn region or segmentation edit needs. Started once
    the first sample is on screen (or the user has been idle a while): on a fresh install these
    compiles take ~15 s of mostly GIL-bound work, which slowed an open running beside them
    (10.7 -> 16.3 s, round 8); with numba's disk cache ~1.5 s. Returns True when this call
    started it."""
    def run():
        _warm["shape_seconds"] = warm_shape_kernels()
        warm_contour_edit_kernels()
        log.debug("napari's shape and edit kernels warmed (shapes %.2f s)", _warm["shape_seconds"])

    return _start_thread("edit_thread", "carspatial-warm-edit-kernels", run)

