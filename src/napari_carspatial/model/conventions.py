"""Data conventions, each defined in exactly one place.

* Axis order: napari arrays and coordinates are (y, x) (row, column); ``obsm["spatial"]`` is
  (x, y) as in scverse. :func:`spatial_to_yx` / :func:`yx_to_spatial` are the only converters.
* ``obsm["spatial"]`` is in level-0 pixels; the pixel size in µm is stored in the table's ``uns``
  (:data:`UNS_KEY` ``["pixel_size_um"]``). Every distance shown to or typed by a user is in µm.
* The table links to the mask through an instance-id column declared the SpatialData way:
  ``uns["spatialdata_attrs"] = {"region": ..., "region_key": ..., "instance_key": ...}``.
* Categorical colours live in ``uns[f"{key}_colors"]`` aligned with the categories (scanpy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

#: default name of the instance-id (mask label) column in ``obs``
INSTANCE_KEY = "cell_id"
#: default name of the region column in ``obs`` (which labels element each row belongs to)
REGION_KEY = "region"
#: key in ``uns`` for this plugin's own metadata
UNS_KEY = "carspatial"
#: key under which centroids are stored
SPATIAL_KEY = "spatial"


def spatial_to_yx(xy: np.ndarray) -> np.ndarray:
    """Convert scverse ``obsm["spatial"]`` (x, y) coordinates to napari (y, x).

    Parameters
    ----------
    xy
        An (n, 2) or wider array of (x, y) coordinates; extra columns are dropped.

    Returns
    -------
    numpy.ndarray
        A new (n, 2) array of (y, x) coordinates.

    Raises
    ------
    ValueError
        If ``xy`` is not an (n, >=2) array.
    """
    xy = np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ValueError(f"expected an (n, 2) array of (x, y) coordinates, got shape {xy.shape}")
    return xy[:, 1::-1].copy()


def yx_to_spatial(yx: np.ndarray) -> np.ndarray:
    """Convert napari (y, x) coordinates to scverse (x, y) for ``obsm["spatial"]``.

    Parameters
    ----------
    yx
        An (n, 2) or wider array of (y, x) coordinates; extra columns are dropped.

    Returns
    -------
    numpy.ndarray
        A new (n, 2) array of (x, y) coordinates.

    Raises
    ------
    ValueError
        If ``yx`` is not an (n, >=2) array.
    """
    yx = np.asarray(yx)
    if yx.ndim != 2 or yx.shape[1] < 2:
        raise ValueError(f"expected an (n, 2) array of (y, x) coordinates, got shape {yx.shape}")
    return yx[:, 1::-1].copy()


def set_table_link(adata: AnnData, *, region: str, instance_key: str = INSTANCE_KEY, region_key: str = REGION_KEY) -> None:
    """Declare (in place) that ``adata`` annotates labels element ``region`` via ``instance_key``.

    Writes ``obs[region_key]`` (categorical) and ``uns["spatialdata_attrs"]`` exactly as
    SpatialData's ``TableModel`` expects, so napari-spatialdata and squidpy can read it.

    Parameters
    ----------
    adata
        The cell table (modified in place).
    region
        Name of the labels element (the mask) the rows annotate.
    instance_key
        ``obs`` column holding each row's mask label.
    region_key
        ``obs`` column to write ``region`` into.

    Raises
    ------
    KeyError
        If ``instance_key`` is not a column of ``adata.obs``.
    """
    import pandas as pd

    if instance_key not in adata.obs:
        raise KeyError(f"instance key column {instance_key!r} not in obs")
    adata.obs[region_key] = pd.Categorical([region] * adata.n_obs)
    adata.uns["spatialdata_attrs"] = {
        "region": region,
        "region_key": region_key,
        "instance_key": instance_key,
    }


def get_table_link(adata: AnnData) -> dict[str, Any]:
    """Return how ``adata`` links to its mask, with defaults when it is undeclared.

    Parameters
    ----------
    adata
        The cell table.

    Returns
    -------
    dict
        ``{"region", "region_key", "instance_key"}`` from ``uns["spatialdata_attrs"]``;
        ``region`` is ``None`` when undeclared.
    """
    attrs = dict(adata.uns.get("spatialdata_attrs", {}) or {})
    attrs.setdefault("instance_key", INSTANCE_KEY)
    attrs.setdefault("region_key", REGION_KEY)
    attrs.setdefault("region", None)
    return attrs


def instance_ids(adata: AnnData) -> np.ndarray:
    """Return the mask label of every table row, as int64.

    Parameters
    ----------
    adata
        The cell table; its instance-id column comes from :func:`get_table_link`.

    Returns
    -------
    numpy.ndarray
        One int64 label per row, in row order.

    Raises
    ------
    KeyError
        If the table has no instance-id column.
    """
    key = get_table_link(adata)["instance_key"]
    if key not in adata.obs:
        raise KeyError(f"the table has no instance-id column {key!r}")
    return np.asarray(adata.obs[key].to_numpy(), dtype=np.int64)   # np.asarray(Series) hashes obs_names (getattr)


def pixel_size_um(adata: AnnData, default: float | None = None) -> float | None:
    """Return the pixel size (µm per level-0 pixel) stored in the table, or ``default``.

    Parameters
    ----------
    adata
        The cell table (reads ``uns["carspatial"]["pixel_size_um"]``).
    default
        Returned when no pixel size is stored.

    Returns
    -------
    float or None
        The pixel size in µm, or ``default``.
    """
    meta = adata.uns.get(UNS_KEY, {}) or {}
    value = meta.get("pixel_size_um", default)
    return None if value is None else float(value)


def set_pixel_size_um(adata: AnnData, value: float | None) -> None:
    """Store the pixel size (µm per level-0 pixel) in ``adata.uns`` (in place).

    Parameters
    ----------
    adata
        The cell table (modified in place).
    value
        The pixel size in µm; ``None`` removes it.
    """
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    if value is None:
        meta.pop("pixel_size_um", None)
    else:
        meta["pixel_size_um"] = float(value)
    adata.uns[UNS_KEY] = meta


def colors_key(key: str) -> str:
    """Return scanpy's ``uns`` key for the colours of categorical column ``key``.

    Parameters
    ----------
    key
        An ``obs`` column name.

    Returns
    -------
    str
        ``f"{key}_colors"``.
    """
    return f"{key}_colors"
