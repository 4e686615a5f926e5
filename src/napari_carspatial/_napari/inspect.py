"""Cell inspection without Qt: which cell is under the cursor, what we know about it, stepping.

Everything works on the sample's table (vectorised); the only per-cell work is for the one cell
being shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..model import Sample, instance_ids, spatial_to_yx
from ..model.cell_types import find_cell_type_key

#: neighbours shown for an inspected cell: this many nearest cells within NEIGHBOUR_RADIUS_UM
N_NEIGHBORS = 10
NEIGHBOR_RADIUS_UM = 30.0


@dataclass
class CellInfo:
    """What the inspector shows for one cell."""

    cell_id: int
    row: int
    types: dict[str, str]
    area_px: float | None
    area_um2: float | None
    centroid_um: tuple[float, float] | None  # (x, y)
    centroid_px: tuple[float, float]  # (x, y)
    markers: pd.Series
    neighbor_types: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))
    neighbor_ids: list[int] = field(default_factory=list)


class CellIndex:
    """Fast lookups on one sample's table: id -> row, KD-tree of centroids, rows by category."""

    def __init__(self, sample: Sample):
        self.sample = sample
        t = sample.table
        if t is None:
            raise ValueError(f"sample {sample.name!r} has no cell table")
        self.ids = instance_ids(t)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]
        self.xy = np.asarray(t.obsm["spatial"], dtype=float)[:, :2]
        self._tree = None

    def row_of(self, cell_id: int) -> int | None:
        i = int(np.searchsorted(self._sorted, cell_id))
        if i < len(self._sorted) and self._sorted[i] == cell_id:
            return int(self._order[i])
        return None

    @property
    def tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.xy)
        return self._tree

    def _x_sorted(self):
        if getattr(self, "_xs", None) is None:
            self._xorder = np.argsort(self.xy[:, 0], kind="stable")
            self._xs = self.xy[self._xorder, 0]
        return self._xorder, self._xs

    def neighbors(self, row: int, *, k: int = N_NEIGHBORS, radius_px: float | None = None) -> np.ndarray:
        """Rows of up to ``k`` nearest other cells (within ``radius_px`` when given), nearest first.

        With a radius, the cells of the band ``|x - x0| < radius`` (cells sorted by x once, ~0.1 s
        at 10^6 cells) are searched directly: the first pin no longer waits ~1 s for a KD-tree
        of every cell. Without one, the KD-tree (:attr:`tree`, the reference; a test compares
        both).
        """
        n = len(self.ids)
        if n <= 1:
            return np.empty(0, int)
        if radius_px is not None and self._tree is None:
            order, xs = self._x_sorted()
            x0, y0 = self.xy[row]
            lo, hi = np.searchsorted(xs, [x0 - radius_px, x0 + radius_px], side="left")
            cand = order[lo:hi]
            d = np.hypot(self.xy[cand, 0] - x0, self.xy[cand, 1] - y0)
            keep = (cand != row) & (d < radius_px)
            cand, d = cand[keep], d[keep]
            pick = np.argsort(d, kind="stable")[:k]
            return cand[pick]
        dist, idx = self.tree.query(self.xy[row], k=min(k + 1, n),
                                    distance_upper_bound=np.inf if radius_px is None else radius_px)
        idx = np.atleast_1d(idx)
        dist = np.atleast_1d(dist)
        keep = (idx != row) & np.isfinite(dist) & (idx < n)
        return idx[keep][:k]

    def rows_of_category(self, key: str, category: str) -> np.ndarray:
        """Rows whose ``obs[key] == category``, in reading order (top to bottom, left to right)."""
        col = self.sample.table.obs[key]
        if isinstance(col.dtype, pd.CategoricalDtype):   # compare codes: no string copy of the column
            cats = [str(c) for c in col.cat.categories]
            code = cats.index(str(category)) if str(category) in cats else -2
            rows = np.flatnonzero(col.cat.codes.to_numpy() == code)
        else:
            rows = np.flatnonzero(col.astype(str).to_numpy() == str(category))
        # reading order: bands of ~50 µm (or 100 px) from the top, then left to right
        band = 50.0 / self.sample.pixel_size_um if self.sample.pixel_size_um else 100.0
        y, x = self.xy[rows, 1], self.xy[rows, 0]
        order = np.lexsort((x, np.floor(y / band)))
        return rows[order]

    def step(self, key: str, category: str, current_id: int | None, direction: int = 1) -> int | None:
        """The id of the next (``direction=1``) or previous (``-1``) cell of ``category``; cycles."""
        found = self.step_position(key, category, current_id, direction)
        return None if found is None else found[0]

    def step_position(self, key: str, category: str, current_id: int | None,
                      direction: int = 1) -> tuple[int, int, int] | None:
        """Like :meth:`step`, with the new cell's 1-based position and the number of such cells."""
        rows = self.rows_of_category(key, category)
        if rows.size == 0:
            return None
        ids = self.ids[rows]
        hit = np.flatnonzero(ids == current_id) if current_id is not None else np.empty(0, int)
        if hit.size == 0:
            pos = 0 if direction >= 0 else ids.size - 1
        else:
            pos = (int(hit[0]) + direction) % ids.size
        return int(ids[pos]), pos + 1, int(ids.size)


def categorical_columns(adata) -> list[str]:
    """obs columns that hold categories (cell types, phenotypes, niches...)."""
    out = []
    for k in adata.obs.columns:
        s = adata.obs[k]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_bool_dtype(s):
            if k in ("region",):
                continue
            out.append(k)
    return out


def cell_info(index: CellIndex, cell_id: int, *, type_key: str | None = None,
              markers: bool = True) -> CellInfo | None:
    """Everything the inspector shows for ``cell_id`` (None when the id has no table row).

    ``markers=False`` leaves ``CellInfo.markers`` empty: a gene panel shows the cell's top genes
    from its sparse row (:func:`~napari_carspatial.analysis.genes.top_genes`), never a dense row
    of every gene.
    """
    row = index.row_of(cell_id)
    if row is None:
        return None
    sample = index.sample
    t = sample.table
    px = sample.pixel_size_um
    types = {k: display_value(t.obs[k].iloc[row]) for k in categorical_columns(t)}
    area = float(t.obs["area"].iloc[row]) if "area" in t.obs else None
    if markers:
        x = t.X[row]
        x = np.asarray(x.todense() if hasattr(x, "todense") else x).ravel()
        values = pd.Series(x.astype(float), index=list(t.var_names), name=str(cell_id))
    else:
        values = pd.Series(dtype=float, name=str(cell_id))
    xy = tuple(float(v) for v in index.xy[row])
    nb_rows = index.neighbors(row, radius_px=(NEIGHBOR_RADIUS_UM / px) if px else None)
    key = type_key or find_cell_type_key(t)
    nb_types = (
        t.obs[key].iloc[nb_rows].astype(str).value_counts() if key is not None and nb_rows.size
        else pd.Series(dtype=int)
    )
    return CellInfo(
        cell_id=int(cell_id),
        row=row,
        types=types,
        area_px=area,
        area_um2=None if area is None or not px else area * px * px,
        centroid_um=(xy[0] * px, xy[1] * px) if px else None,
        centroid_px=xy,
        markers=values,
        neighbor_types=nb_types,
        neighbor_ids=[int(v) for v in index.ids[nb_rows]],
    )


def label_at(labels_layer, world_position) -> int | None:
    """The cell id under a world position on a (possibly multiscale) labels layer, or None."""
    val = labels_layer.get_value(world_position, world=True)
    if isinstance(val, tuple):  # multiscale: (level, value)
        val = val[1]
    if val is None:
        return None
    try:
        val = int(val)
    except (TypeError, ValueError):
        return None
    return val or None


def center_on(viewer, labels_layer, xy_px: tuple[float, float], *, zoom: float | None = None) -> None:
    """Centre the camera on a level-0 pixel position (x, y); optionally set the zoom."""
    yx = spatial_to_yx(np.array([xy_px]))[0]
    world = labels_layer.data_to_world(yx)
    cam = camera(viewer)
    cam.center = tuple(float(v) for v in world)
    if zoom is not None:
        cam.zoom = zoom


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def cell_zoom(sample: Sample, *, field_um: float = 120.0, canvas_px: int = 800) -> float:
    """A camera zoom that shows about ``field_um`` micrometres around a cell."""
    # world units are µm when the pixel size is known, else pixels
    world = field_um if sample.pixel_size_um else field_um / 0.5
    return canvas_px / world


#: shown for a missing value (never "nan")
MISSING = "–"


def display_value(value) -> str:
    """A table value as the inspector shows it: ``MISSING`` for NaN / None, "yes" / "no" for booleans."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    try:
        if pd.isna(value):
            return MISSING
    except (TypeError, ValueError):
        pass
    text = str(value)
    return MISSING if text.strip().lower() in ("", "nan", "none", "<na>") else text


def intensity_unit(sample: Sample) -> str:
    """Unit of a marker mean: ion counts for mass cytometry (IMC, MIBI), arbitrary units else."""
    platform = str((sample.metadata or {}).get("platform", "")).upper()
    return "counts" if platform in ("IMC", "MIBI") or "IMC" in platform else "a.u."


#: longest status line (napari shows its key hints to the right of it)
STATUS_MAX = 90


def status_line(info: CellInfo, *, type_key: str | None = None) -> str:
    """A short, labelled hover / status line: ``cell 40 · cell_type: CAR T · roi: Invasive margin``.

    Fields with a value only (no ``nan``, no ``False`` flags), the type column first, cut at
    :data:`STATUS_MAX` characters so it never runs into napari's key hints.
    """
    parts = [f"cell {info.cell_id}"]
    keys = ([type_key] if type_key in info.types else []) + [k for k in info.types if k != type_key]
    for k in keys:
        v = info.types[k]
        if v in (MISSING, "no"):
            continue
        parts.append(f"{k}: {v}" if v != "yes" else k)
    line = " · ".join(parts)
    return line if len(line) <= STATUS_MAX else line[: STATUS_MAX - 1] + "…"


def summarize_for_status(info: CellInfo) -> str:
    """Alias of :func:`status_line` (kept for callers of the old name)."""
    return status_line(info)




#: role of the pinned-cell marker layer
ROLE_PINNED = "pinned"


def ring_marker_layer(viewer, labels_layer, sid: str, info: CellInfo):
    """Create or move the "pinned cell" marker: an open yellow ring sized to the cell."""
    from .session import META_ROLE, META_SAMPLE

    yx = spatial_to_yx(np.array([info.centroid_px]))[0]
    area = info.area_px or 100.0
    diameter_px = 2.0 * np.sqrt(area / np.pi) * 1.8
    scale = np.asarray(labels_layer.scale[-2:], dtype=float)
    layer = next((lyr for lyr in viewer.layers if lyr.metadata.get(META_ROLE) == ROLE_PINNED
                  and lyr.metadata.get(META_SAMPLE) == sid), None)
    before = viewer.layers.selection.active
    if layer is None:
        layer = viewer.add_points(
            [yx], name="pinned cell", size=diameter_px, face_color="transparent",
            border_color="yellow", border_width=0.12, border_width_is_relative=True,
            scale=tuple(scale), translate=tuple(labels_layer.translate[-2:]),
            units=tuple(str(u) for u in labels_layer.units[-2:]),   # mixed units break the scale bar
            metadata={META_SAMPLE: sid, META_ROLE: ROLE_PINNED},
        )
    else:
        layer.data = [yx]
        if not np.allclose(np.asarray(layer.size, float), diameter_px):   # each change redraws the layer
            layer.size = diameter_px
        if not layer.visible:
            layer.visible = True
    safe_active_layer(viewer, sid, before)
    return layer


def safe_active_layer(viewer, sid: str | None, before=None):
    """After pinning or centring: an active layer with no edit one key away.

    The layer the reviewer was using stays active when it is an image (no paint, erase or add
    mode); never the cell mask (paint / erase are a key away there) nor the ring. Otherwise the
    sample's top visible channel is made active. Returns the active layer.
    """
    from .session import META_ROLE, META_SAMPLE

    def harmless(lyr) -> bool:
        return lyr is not None and lyr in viewer.layers and lyr.__class__.__name__ == "Image"

    if harmless(before):
        target = before
    else:
        images = [lyr for lyr in viewer.layers if harmless(lyr) and lyr.visible
                  and lyr.metadata.get(META_SAMPLE) == sid and lyr.metadata.get(META_ROLE) == "image"]
        target = images[-1] if images else None
    if target is None:
        viewer.layers.selection.clear()
    elif viewer.layers.selection.active is not target:
        viewer.layers.selection.active = target
    return viewer.layers.selection.active
