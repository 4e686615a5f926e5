"""Transcripts on the slide, interactive at 10 million points. No Qt.

A napari Points layer holding every molecule of a slide (10 M points) takes tens of seconds to
build, gigabytes of memory and seconds per frame. So nothing here gives napari all the points:

* **overview**: a *density image*, the number of transcripts per spatial bin of the
  :class:`~napari_carspatial.model.points.Transcripts` table (64 level-0 px), as one multiscale
  Image layer (:data:`ROLE_DENSITY`). Level ``k`` is the mean over 2**k x 2**k bins, so every
  level has the same contrast limits; values are transcripts per 100 µm² (per bin when the pixel
  size is unknown). Without a quality filter it is a sum over the table's (bins x genes) count
  matrix and reads no row (ms at 10 M); with one it streams the rows once.
* **zoomed in**: the points in view only (:data:`ROLE_POINTS`), read through
  :meth:`Transcripts.query` for the view box plus a margin, at most :data:`MAX_POINTS` (a random
  subset beyond that, and the note says so). Panning inside the margin reads nothing.
* **which of the two**: the number of transcripts in the view is known without reading a row
  (a summed-area table of the bin counts of the genes shown), so the choice costs
  microseconds: points when at most ``max_points`` are in view and they would not cover the
  screen (:data:`MIN_SCREEN_PX_PER_POINT`), else the density.

The work is split so a dock can run the slow part off the GUI thread:

* :class:`TranscriptFilter`, :func:`density_levels`, :func:`estimate_in_view`,
  :func:`fetch_points`: pure functions of the table (thread-safe, no layer, no viewer);
* :class:`TranscriptsView`: one sample's two layers in one viewer. :meth:`TranscriptsView.request`
  says what the camera needs (nothing, the density, or a :class:`PointsRequest` to fetch);
  :meth:`TranscriptsView.show_points` / :meth:`TranscriptsView.show_density` apply a result on the
  main thread; :meth:`TranscriptsView.refresh` does all of it synchronously (scripts, tests).

The layers carry only the sample id and their role in ``metadata`` (see :mod:`.session`).

One module (582 lines) because :class:`TranscriptsView` and the pure functions it calls (filters,
density levels, in-view estimate, fetch) are one rendering strategy: the density/points switch, the
summed-area estimate and the fetch margin must agree on the same bins and limits, and the pure half
is kept beside the view, its only user in the package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..model import Sample

log = logging.getLogger(__name__)

#: ``layer.metadata`` roles
ROLE_DENSITY = "transcripts_density"
ROLE_POINTS = "transcripts_points"
#: default cap of points given to napari at once (a Points layer update of 50 k points is ~0.1 s)
MAX_POINTS = 50_000
#: points are shown only when each would have at least this many screen pixels on average
MIN_SCREEN_PX_PER_POINT = 16.0
#: the box read around the view: this fraction of the view's size on each side
MARGIN = 0.25
#: display modes
MODES = ("auto", "density", "points")
#: colour of the transcripts when no gene is chosen (all genes)
ALL_GENES_COLOR = "#e8e8e8"
#: diameter of a transcript dot in µm (in px when the pixel size is unknown: 8 px)
POINT_SIZE_UM = 0.8


# =========================================================================== pure half
@dataclass(frozen=True)
class TranscriptFilter:
    """Which transcripts are shown: ``genes`` (None = all) with ``quality >= min_quality``."""

    genes: tuple[str, ...] | None = None
    min_quality: float | None = None

    @classmethod
    def make(cls, genes: Iterable[str] | None = None, min_quality: float | None = None) -> TranscriptFilter:
        g = None if genes is None else tuple(sorted({str(x) for x in genes}))
        q = None if min_quality is None or not np.isfinite(min_quality) else float(min_quality)
        return cls(g, q)

    def describe(self) -> str:
        what = "all genes" if self.genes is None else ", ".join(self.genes[:6]) + (" …" if len(self.genes) > 6 else "")
        return what + (f", quality ≥ {self.min_quality:g}" if self.min_quality is not None else "")


def density_unit(points, pixel_size_um: float | None) -> tuple[float, str]:
    """(factor, unit): a level-0 bin count times ``factor`` is in ``unit``."""
    if pixel_size_um:
        bin_um2 = (points.bin_px * pixel_size_um) ** 2
        return 100.0 / bin_um2, "transcripts / 100 µm²"
    return 1.0, f"transcripts / bin of {points.bin_px:g} px"


def density_levels(points, flt: TranscriptFilter, *, pixel_size_um: float | None = None) -> list[np.ndarray]:
    """The density pyramid shown at overview zoom (float32, same unit on every level).

    :meth:`Transcripts.density_pyramid` sums 2 x 2 bins per level; here level ``k`` is divided
    by ``4**k`` (a mean per level-0 bin), so one set of contrast limits fits every level, then
    scaled to :func:`density_unit`. Reads no row without a quality filter.
    """
    genes = None if flt.genes is None else list(flt.genes)
    if genes is not None and not genes:
        ny, nx = points.bins_shape
        return [np.zeros((ny, nx), np.float32)]
    levels = points.density_pyramid(genes=genes, min_quality=flt.min_quality)
    factor, _ = density_unit(points, pixel_size_um)
    return [(lvl * np.float32(factor / 4**k)).astype(np.float32) for k, lvl in enumerate(levels)]


def summed_area(counts: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column (float64)."""
    sat = np.zeros((counts.shape[0] + 1, counts.shape[1] + 1), np.float64)
    np.cumsum(np.cumsum(counts, axis=0, dtype=np.float64), axis=1, out=sat[1:, 1:])
    return sat


def bins_of_box(points, bbox) -> tuple[int, int, int, int] | None:
    """(r0, c0, r1, c1) inclusive bin rows / columns overlapping ``bbox`` (level-0 px), or None."""
    ny, nx = points.bins_shape
    y0, x0, y1, x1 = (float(v) for v in bbox)
    if y1 < y0 or x1 < x0:
        return None
    r0, c0 = (int(np.floor((v + 0.5) / points.bin_px)) for v in (y0, x0))
    r1, c1 = (int(np.floor((v + 0.5) / points.bin_px)) for v in (y1, x1))
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, ny - 1), min(c1, nx - 1)
    if r0 > r1 or c0 > c1:
        return None
    return r0, c0, r1, c1


def estimate_in_view(points, bbox, sat: np.ndarray) -> int:
    """Transcripts in the bins overlapping ``bbox`` (an upper bound of those in the box: bins
    cut by its edge count whole, the quality filter is not applied). ``sat`` is the
    :func:`summed_area` of the level-0 bin counts of the genes shown. No row is read."""
    b = bins_of_box(points, bbox)
    if b is None:
        return 0
    r0, c0, r1, c1 = b
    return int(round(sat[r1 + 1, c1 + 1] - sat[r0, c1 + 1] - sat[r1 + 1, c0] + sat[r0, c0]))


@dataclass(frozen=True)
class PointsRequest:
    """The points to read for a view: a level-0 px box (the view plus a margin) and a filter."""

    bbox: tuple[float, float, float, float]
    flt: TranscriptFilter
    max_points: int = MAX_POINTS
    seed: int = 0


@dataclass
class PointsBatch:
    """What :func:`fetch_points` read for a :class:`PointsRequest`."""

    request: PointsRequest
    yx: np.ndarray        # (n, 2) float32, level-0 px
    gene: np.ndarray      # (n,) gene codes
    n_matching: int       # transcripts in the box passing the filter (before the cap)

    @property
    def capped(self) -> bool:
        return self.n_matching > len(self.gene)

    def __len__(self) -> int:
        return int(self.gene.size)


def fetch_points(points, req: PointsRequest) -> PointsBatch:
    """Read the transcripts of ``req`` (thread-safe: reads the table, touches no layer).

    Only the rows of the bins overlapping the box are read
    (:meth:`~napari_carspatial.model.points.Transcripts.query`); beyond ``max_points`` a uniform
    random subset (``seed``) is kept and :attr:`PointsBatch.n_matching` keeps the true number.
    """
    genes = None if req.flt.genes is None else list(req.flt.genes)
    if genes is not None and not genes:
        return PointsBatch(req, np.zeros((0, 2), np.float32), np.zeros(0, np.int32), 0)
    d = points.query(bbox=req.bbox, genes=genes, min_quality=req.flt.min_quality, columns=("x", "y", "gene"))
    n = int(d["x"].size)
    if n > req.max_points:
        idx = np.sort(np.random.default_rng(req.seed).choice(n, size=int(req.max_points), replace=False))
        d = {k: v[idx] for k, v in d.items()}
    yx = np.empty((d["x"].size, 2), np.float32)
    yx[:, 0] = d["y"]
    yx[:, 1] = d["x"]
    return PointsBatch(req, yx, np.asarray(d["gene"], dtype=np.int32), n)


@dataclass(frozen=True)
class DensityRequest:
    """The density pyramid of a filter is needed (the camera shows the overview)."""

    flt: TranscriptFilter
    reason: str = ""

    def compute(self, points, pixel_size_um: float | None = None) -> list[np.ndarray]:
        return density_levels(points, self.flt, pixel_size_um=pixel_size_um)


def contains(outer, inner) -> bool:
    """Box ``outer`` (y0, x0, y1, x1) contains box ``inner``."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def grow(bbox, fraction: float = MARGIN) -> tuple[float, float, float, float]:
    """``bbox`` with ``fraction`` of its size added on every side."""
    y0, x0, y1, x1 = bbox
    dy, dx = (y1 - y0) * fraction, (x1 - x0) * fraction
    return (y0 - dy, x0 - dx, y1 + dy, x1 + dx)


def gene_colors(genes: Sequence[str], known: dict[str, str] | None = None) -> dict[str, str]:
    """A distinct colour per gene (kept colours win; new ones from the one palette policy)."""
    from ..model.palette import color_for

    out = dict(known or {})
    used = list(out.values())
    for g in genes:
        if g not in out:
            out[g] = color_for(g, used=used)
            used.append(out[g])
    return out


def fmt_count(n: int) -> str:
    return f"{int(n):,}"


# =========================================================================== viewer half
@dataclass
class ViewState:
    """What the view shows now (for the dock's note and for tests)."""

    mode: str = "none"              # "density" | "points" | "none"
    n_in_view: int = 0              # estimate (bins) for the view
    n_shown: int = 0                # points given to napari
    n_matching: int = 0             # points in the read box passing the filter
    capped: bool = False
    reason: str = ""
    bbox: tuple | None = None       # the box the points were read for
    flt: TranscriptFilter = field(default_factory=TranscriptFilter)

    def note(self) -> str:
        if self.mode == "density":
            return (f"Density of {fmt_count(self.n_in_view)} transcripts in view ({self.reason}). "
                    "Zoom in to see the molecules." if self.reason else "Density shown.")
        if self.mode == "points":
            if self.capped:
                return (f"Showing a random {fmt_count(self.n_shown)} of {fmt_count(self.n_matching)} transcripts "
                        f"around the view (cap {fmt_count(self.n_shown)}). Zoom in to see all of them.")
            return f"Showing all {fmt_count(self.n_shown)} transcripts around the view."
        return "No transcripts shown."


class TranscriptsView:
    """The transcripts of one sample in one viewer: a density layer and an in-view points layer.

    Parameters
    ----------
    session
        The viewer's :class:`~.session.ViewerSession`.
    sid
        The sample's id.

    Attributes
    ----------
    flt
        Genes and quality shown (:meth:`set_filter`).
    colors
        Gene -> hex colour of the genes chosen.
    mode
        ``"auto"`` (density when too many points are in view), ``"density"`` or ``"points"``.
    max_points
        Cap of points given to napari.
    """

    def __init__(self, session, sid: str):
        self.session = session
        self.viewer = session.viewer
        self.sid = sid
        s = session.sample(sid)
        if s is None or s.points is None:
            raise KeyError(f"sample {sid!r} has no transcripts")
        self.flt = TranscriptFilter()
        self.colors: dict[str, str] = {}
        self.mode = "auto"
        self.max_points = MAX_POINTS
        self.point_size_um = POINT_SIZE_UM
        self.state = ViewState()
        self._sat: dict[tuple | None, np.ndarray] = {}
        self._levels_key: TranscriptFilter | None = None

    # ------------------------------------------------------------------ sample, geometry
    @property
    def sample(self) -> Sample:
        return self.session.sample(self.sid)

    @property
    def points(self):
        return self.sample.points

    def _geometry(self):
        return self.session.geometry(self.sid)

    def view_bbox_px(self) -> tuple[float, float, float, float]:
        """The camera's view as a level-0 pixel box (y0, x0, y1, x1) of this sample."""
        from .coloring import visible_world_rect

        (sy, sx), (ty, tx), _ = self._geometry()
        y0, x0, y1, x1 = visible_world_rect(self.viewer)
        return ((y0 - ty) / sy, (x0 - tx) / sx, (y1 - ty) / sy, (x1 - tx) / sx)

    def canvas_px(self) -> float:
        h, w = self.viewer.canvas.size
        return float(max(h, 1) * max(w, 1))

    # ------------------------------------------------------------------ filter
    def set_filter(self, genes: Iterable[str] | None = None, min_quality: float | None = None) -> TranscriptFilter:
        """Show ``genes`` (None = all) with quality at least ``min_quality``; returns the filter.

        Unknown genes raise ``KeyError``; a quality threshold on a platform without one raises
        ``ValueError`` (it would hide every molecule).
        """
        if min_quality is not None and self.points.quality_name is None:
            raise ValueError(f"{self.sample.name}: these transcripts carry no quality value; "
                             "a quality threshold would hide every one.")
        flt = TranscriptFilter.make(genes, min_quality)
        if flt.genes is not None:
            self.points.gene_codes(list(flt.genes))   # raises KeyError naming unknown genes
            self.colors = gene_colors(flt.genes, {g: c for g, c in self.colors.items() if g in flt.genes})
        self.flt = flt
        return flt

    def sat(self) -> np.ndarray:
        """Summed-area table of the level-0 bin counts of the genes shown (cached per gene set)."""
        key = self.flt.genes
        got = self._sat.get(key)
        if got is None:
            genes = None if key is None else list(key)
            counts = (np.zeros(self.points.bins_shape, np.float32) if genes is not None and not genes
                      else self.points.density(genes=genes))
            got = self._sat[key] = summed_area(counts)
            if len(self._sat) > 16:
                self._sat.pop(next(iter(self._sat)))
        return got

    # ------------------------------------------------------------------ deciding
    def decide(self, bbox=None) -> tuple[str, int, str]:
        """(``"points"`` | ``"density"``, transcripts in view, why) for the view box ``bbox``."""
        bbox = bbox or self.view_bbox_px()
        n = estimate_in_view(self.points, bbox, self.sat())
        if self.mode == "density":
            return "density", n, "density chosen"
        if self.mode == "points":
            return "points", n, "points chosen"
        if n > self.max_points:
            return "density", n, f"more than {fmt_count(self.max_points)}"
        if n and self.canvas_px() / n < MIN_SCREEN_PX_PER_POINT:
            return "density", n, "too dense to tell apart at this zoom"
        return "points", n, ""

    def request(self, *, force: bool = False) -> PointsRequest | DensityRequest | None:
        """What the camera needs (cheap: no row is read):

        * a :class:`PointsRequest` to fetch (:func:`fetch_points`, then :meth:`show_points`);
        * a :class:`DensityRequest` when the density of the current filter is not computed yet
          (:meth:`DensityRequest.compute`, then :meth:`show_density` with the levels);
        * None: the density is shown, or the points already read cover the view.
        """
        view = self.view_bbox_px()
        mode, n, reason = self.decide(view)
        self.state.n_in_view = n
        if mode == "density":
            if not self.density_current():
                return DensityRequest(self.flt, reason)
            self.show_density(reason=reason)
            return None
        st = self.state
        if (not force and st.mode == "points" and st.bbox is not None and st.flt == self.flt
                and contains(st.bbox, view) and not (st.capped and _area(view) < 0.25 * _area(st.bbox))):
            return None   # panning inside what was read, or zooming in on a complete read
        # read a margin around the view (pans inside it read nothing), smaller when the margin
        # alone would exceed the cap (the view itself then stays complete)
        sat = self.sat()
        for m in (MARGIN, 0.1, 0.0):
            box = grow(view, m)
            if m == 0.0 or estimate_in_view(self.points, box, sat) <= self.max_points:
                break
        return PointsRequest(box, self.flt, max_points=int(self.max_points))

    def compute(self, req):
        """The result of a request (thread-safe: reads the table, touches no layer)."""
        if isinstance(req, DensityRequest):
            return req.compute(self.points, self.sample.pixel_size_um)
        return fetch_points(self.points, req)

    def apply(self, req, result) -> None:
        """Show the result of :meth:`compute` (main thread)."""
        if isinstance(req, DensityRequest):
            if req.flt == self.flt:
                self.show_density(levels=result, reason=req.reason)
        else:
            self.show_points(result)

    def refresh(self, *, force: bool = False) -> ViewState:
        """Bring the layers up to date with the camera, synchronously (scripts and tests)."""
        req = self.request(force=force)
        if req is not None:
            self.apply(req, self.compute(req))
        return self.state

    # ------------------------------------------------------------------ layers
    def _find(self, role: str):
        from .session import META_ROLE, META_SAMPLE

        for lyr in self.viewer.layers:
            md = lyr.metadata
            if md.get(META_SAMPLE) == self.sid and md.get(META_ROLE) == role:
                return lyr
        return None

    @property
    def density_layer(self):
        return self._find(ROLE_DENSITY)

    @property
    def points_layer(self):
        return self._find(ROLE_POINTS)

    def set_density_levels(self, levels: list[np.ndarray], flt: TranscriptFilter) -> None:
        """Show ``levels`` (from :func:`density_levels` for ``flt``) in the density layer (made
        when missing)."""
        data, meta, _ = density_layer_data(self.sample, self.sid, levels=levels, flt=flt, geometry=self._geometry())
        lyr = self.density_layer
        if lyr is None:
            meta["visible"] = self.state.mode != "points"
            lyr = self.viewer.add_image(data, **meta)
        else:
            lyr.data = data
            lyr.contrast_limits = meta["contrast_limits"]
            lyr.name = meta["name"]
        self._levels_key = flt

    def density_scale(self) -> str:
        """What the density colours mean (unit and range), or "" without a density layer."""
        d = self.density_layer
        if d is None:
            return ""
        _, unit = density_unit(self.points, self.sample.pixel_size_um)
        hi = float(d.contrast_limits[1])
        return f"Colour: {unit}, black 0 to yellow ≥ {hi:.3g} (inferno)."

    def density_current(self) -> bool:
        """The density layer shows the current filter."""
        return self.density_layer is not None and self._levels_key == self.flt

    def show_density(self, *, levels: list[np.ndarray] | None = None, reason: str = "") -> None:
        """Density on (``levels`` of the current filter, computed here when not given and not
        shown yet), points off (the points layer is emptied: napari keeps no points)."""
        if levels is not None:
            self.set_density_levels(levels, self.flt)
        elif not self.density_current():
            self.set_density_levels(density_levels(self.points, self.flt, pixel_size_um=self.sample.pixel_size_um),
                                    self.flt)
        d = self.density_layer
        if d is not None and not d.visible:
            d.visible = True
        p = self.points_layer
        if p is not None and len(p.data):
            p.data = np.zeros((0, 2), np.float32)
        if p is not None:
            p.visible = False
        self.state = ViewState(mode="density", n_in_view=self.state.n_in_view, reason=reason, flt=self.flt)

    def show_points(self, batch: PointsBatch) -> None:
        """Points of ``batch`` on, density off (main thread)."""
        from .session import META_ROLE, META_SAMPLE

        if batch.request.flt != self.flt:   # a stale read (the genes changed meanwhile)
            return
        colors = self._point_colors(batch.gene)
        lyr = self.points_layer
        (sy, sx), (ty, tx), units = self._geometry()
        px = self.sample.pixel_size_um
        size = self.point_size_um / px if px else 8.0
        if lyr is None:
            lyr = self.viewer.add_points(
                # a thin dark rim keeps a molecule visible over a cell colouring of a similar hue
                batch.yx, name=f"{self.sample.name} transcripts", size=size, face_color=colors,
                border_width=0.15, border_width_is_relative=True, border_color="#101010",
                scale=(sy, sx), translate=(ty, tx), units=units, blending="translucent_no_depth",
                canvas_size_limits=(4, 12),   # a lone molecule at overview stays visible (rim included)
                metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_POINTS},
            )
        else:
            # one redraw for data + colours (each setter alone re-sends every point to vispy)
            with lyr.events.set_data.blocker():
                lyr.data = batch.yx
                if len(batch):
                    lyr.face_color = colors
                if len(batch) and not np.isclose(float(np.asarray(lyr.size).flat[0]), size):
                    lyr.size = size
            lyr.refresh()
        if not lyr.visible:
            lyr.visible = True
        d = self.density_layer
        if d is not None and d.visible:
            d.visible = False
        self.state = ViewState(mode="points", n_in_view=self.state.n_in_view, n_shown=len(batch),
                               n_matching=batch.n_matching, capped=batch.capped, bbox=batch.request.bbox,
                               flt=batch.request.flt)

    def _point_colors(self, codes: np.ndarray) -> np.ndarray:
        from matplotlib.colors import to_rgba

        pts = self.points
        table = np.tile(np.asarray(to_rgba(ALL_GENES_COLOR), np.float32), (pts.n_genes, 1))
        for g, c in self.colors.items():
            if self.flt.genes is not None and g in self.flt.genes:
                table[pts.genes.index(g)] = to_rgba(c)
        return table[np.asarray(codes, dtype=np.int64)] if codes.size else np.zeros((0, 4), np.float32)

    def raise_layers(self) -> bool:
        """Move the transcript layers (density, points) to the top of the layer list, so a cell
        colouring added later (a gene, a cell type) does not paint over the molecules. Returns
        whether anything moved."""
        layers = self.viewer.layers
        mine = [lyr for lyr in (self.density_layer, self.points_layer) if lyr is not None]
        n = len(layers)
        if not mine or all(layers.index(lyr) >= n - len(mine) for lyr in mine):
            return False
        for lyr in mine:
            layers.move(layers.index(lyr), len(layers))
        return True

    def remove(self) -> None:
        """Take both layers out of the viewer."""
        for lyr in (self.points_layer, self.density_layer):
            if lyr is not None:
                self.viewer.layers.remove(lyr)


def _area(b) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def density_layer_data(sample: Sample, sid: str, *, levels: list[np.ndarray] | None = None,
                       flt: TranscriptFilter | None = None, geometry=None):
    """Layer data (``data``, ``meta``, ``"image"``) of the transcript density of ``sample``.

    ``geometry`` is the sample's ``(scale, translate, units)`` (default: its pixel size, no
    offset). The reader adds it with the sample's other layers (File > Open).
    """
    from .session import META_ROLE, META_SAMPLE

    pts = sample.points
    flt = flt or TranscriptFilter()
    if levels is None:
        levels = density_levels(pts, flt, pixel_size_um=sample.pixel_size_um)
    if geometry is None:
        px = sample.pixel_size_um
        geometry = (((px, px) if px else (1.0, 1.0)), (0.0, 0.0), (("um", "um") if px else ("pixel", "pixel")))
    (sy, sx), (ty, tx), units = geometry
    (dsy, dsx), (dty, dtx) = pts.density_transform(0)
    finite = levels[0][levels[0] > 0]
    hi = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    _, unit = density_unit(pts, sample.pixel_size_um)
    meta = {
        "name": f"{sample.name} transcript density ({flt.describe()}; {unit})",
        "scale": (dsy * sy, dsx * sx),
        "translate": (ty + dty * sy, tx + dtx * sx),
        "units": tuple(units),
        "colormap": "inferno",
        "contrast_limits": (0.0, max(hi, 1e-6)),
        "gamma": 0.7,
        "blending": "additive",
        "opacity": 0.9,
        "interpolation2d": "nearest",
        "multiscale": len(levels) > 1,
        "metadata": {META_SAMPLE: sid, META_ROLE: ROLE_DENSITY},
    }
    return (levels if len(levels) > 1 else levels[0]), meta, "image"
