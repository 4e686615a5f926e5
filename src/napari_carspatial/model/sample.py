"""The ``Sample``: one tissue section (or one IMC/MIBI ROI) with everything that belongs to it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .conventions import (
    INSTANCE_KEY,
    SPATIAL_KEY,
    get_table_link,
    pixel_size_um,
    set_pixel_size_um,
    set_table_link,
    yx_to_spatial,
)
from .errors import SampleError
from .roi import ROI

log = logging.getLogger(__name__)

#: metadata keys that are clinical (hidden in blinded review)
CLINICAL_KEYS = ("patient", "trial", "indication", "timepoint", "response", "toxicity")
#: cell-table columns that name the image a row belongs to, in the order they are tried
#: (``io.tables`` cuts multi-image tables with them; validation names them)
IMAGE_COLUMNS = ("ImageName", "MaskName", "Image", "image", "image_name", "ImageFile", "FileName_Image",
                 "Image Name", "Sample Name", "sample_id", "fov", "library_id")


def several_images(obs) -> tuple[str, list[str]] | None:
    """``(column, image names)`` when an image column (:data:`IMAGE_COLUMNS`) of a cell table's
    ``obs`` names more than one image, else ``None``."""
    import pandas as pd

    for col in IMAGE_COLUMNS:
        if col in obs.columns:
            names = [str(v) for v in pd.unique(obs[col].astype(str))]
            if len(names) > 1:
                return col, names
    return None


def _as_dask(arr, name: str):
    import dask.array as da

    if isinstance(arr, da.Array):
        return arr
    return da.from_array(arr, chunks="auto", name=False) if not isinstance(arr, np.ndarray) else da.from_array(arr, name=False)


@dataclass
class Sample:
    """Image pyramid, channel names, pixel size, labels pyramid, cell table, ROIs and metadata.

    Attributes
    ----------
    name
        Sample identifier (file stem or acquisition name).
    image
        Image pyramid: list of lazy dask arrays, each (C, Y, X), level 0 first. May be empty for a
        table-only sample.
    channel_names
        One name per channel (marker), unique.
    pixel_size_um
        Micrometres per level-0 pixel, or ``None`` when unknown.
    labels
        Segmentation pyramid: list of (Y, X) integer dask arrays, level 0 first, or ``None``.
    table
        AnnData with one row per cell, linked to ``labels`` by the instance-id column declared in
        ``uns["spatialdata_attrs"]``; ``obsm["spatial"]`` holds (x, y) level-0 pixel centroids.
    rois
        Named polygons with a class.
    metadata
        Free-form: ``patient``, ``timepoint``, ``response``, ... (see :data:`CLINICAL_KEYS`).
    paths
        Where each part came from: ``{"image": ..., "mask": ..., "table": ...}``.
    points
        Transcripts (spatial transcriptomics), or ``None``: a lazy
        :class:`~napari_carspatial.model.points.Transcripts` table with ``x``, ``y`` in level-0
        pixels, ``gene``, ``cell_id`` (mask label, 0 = no cell) and ``quality``.
    """

    name: str
    image: list = field(default_factory=list)
    channel_names: list[str] = field(default_factory=list)
    pixel_size_um: float | None = None
    labels: list | None = None
    table: Any = None
    rois: list[ROI] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    points: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def shape_yx(self) -> tuple[int, int] | None:
        """(Y, X) of level 0 (from the image, else from the labels)."""
        if self.image:
            return tuple(int(s) for s in self.image[0].shape[-2:])
        if self.labels:
            return tuple(int(s) for s in self.labels[0].shape[-2:])
        return None

    @property
    def n_channels(self) -> int:
        return int(self.image[0].shape[0]) if self.image else 0

    @property
    def n_cells(self) -> int:
        return 0 if self.table is None else int(self.table.n_obs)

    @property
    def instance_key(self) -> str:
        return get_table_link(self.table)["instance_key"] if self.table is not None else INSTANCE_KEY

    def _where(self, part: str) -> str | None:
        return self.paths.get(part) or self.paths.get("folder")

    # ------------------------------------------------------------------ validation
    def validate(self, *, check_ids: bool = True) -> Sample:
        """Check the parts fit together; fill in what can be derived. Returns ``self``.

        Raises :class:`SampleError` naming the file and the problem when the image and mask
        shapes differ, channel names do not match the channels, the mask is not integer, the
        table has duplicate ids, or table ids and mask ids disagree (with counts and examples).
        When the table has no coordinates, centroids are computed from the mask.
        """
        self._validate_image()
        self._validate_labels()
        if self.table is not None:
            self._validate_table(check_ids=check_ids)
        return self

    def _validate_image(self) -> None:
        if not self.image:
            return
        self.image = [_as_dask(a, "image") for a in self.image]
        for i, lvl in enumerate(self.image):
            if lvl.ndim != 3:
                raise SampleError(
                    f"image level {i} has {lvl.ndim} dimensions {tuple(lvl.shape)}; expected 3 (channel, y, x).",
                    path=self._where("image"),
                )
        c = self.image[0].shape[0]
        if not self.channel_names:
            self.channel_names = [f"channel_{i}" for i in range(c)]
        if len(self.channel_names) != c:
            raise SampleError(
                f"{len(self.channel_names)} channel names for {c} channels "
                f"(names: {', '.join(map(str, self.channel_names[:8]))}{', ...' if len(self.channel_names) > 8 else ''}).",
                path=self._where("image"),
                hint="Check the panel file: it needs one row per image channel, in channel order.",
            )
        self.channel_names = _unique_names([str(n) for n in self.channel_names])
        if self.pixel_size_um is not None and not (np.isfinite(self.pixel_size_um) and self.pixel_size_um > 0):
            raise SampleError(f"pixel size {self.pixel_size_um!r} µm is not a positive number.", path=self._where("image"))

    def _validate_labels(self) -> None:
        if not self.labels:
            self.labels = None
            return
        self.labels = [_as_dask(a, "labels") for a in self.labels]
        lab = self.labels[0]
        if lab.ndim != 2:
            raise SampleError(
                f"mask has shape {tuple(lab.shape)}; expected a 2-D (y, x) label image.",
                path=self._where("mask"),
            )
        if not np.issubdtype(lab.dtype, np.integer):
            raise SampleError(
                f"mask has dtype {lab.dtype}; a segmentation mask must hold integer cell ids (0 = background).",
                path=self._where("mask"),
                hint="Export the mask as an integer (uint16/uint32) label image, not a probability map.",
            )
        if self.image and tuple(lab.shape) != tuple(self.image[0].shape[-2:]):
            raise SampleError(
                f"mask shape {tuple(lab.shape)} (y, x) differs from image shape "
                f"{tuple(self.image[0].shape[-2:])} (y, x) of {self._where('image') or 'the image'}.",
                path=self._where("mask"),
                hint="Image and mask must be the same acquisition at the same resolution.",
            )

    def _validate_table(self, *, check_ids: bool) -> None:
        from .mask_stats import label_stats

        adata = self.table
        where = self._where("table")
        link = get_table_link(adata)
        key = link["instance_key"]
        if key not in adata.obs:
            raise SampleError(
                f"the cell table has no instance-id column {key!r} linking rows to mask labels "
                f"(columns: {', '.join(map(str, list(adata.obs.columns)[:10]))}).",
                path=where,
            )
        ids = adata.obs[key].to_numpy()
        if ids.dtype.kind == "u" and ids.size and int(ids.max()) > np.iinfo(np.int64).max:
            raise SampleError(f"instance ids in {key!r} reach {int(ids.max())}, at or above 2^63; ids up to "
                              f"{np.iinfo(np.int64).max} are supported.", path=where,
                              hint="Relabel the segmentation and its table with smaller ids.")
        try:
            ids_int = ids.astype(np.int64)
        except (TypeError, ValueError):
            raise SampleError(f"instance-id column {key!r} holds non-integer values, e.g. {ids[:3].tolist()}.", path=where) from None
        if not np.array_equal(ids_int, ids.astype(float)):
            raise SampleError(f"instance-id column {key!r} holds non-integer values.", path=where)
        adata.obs[key] = ids_int
        uniq, counts = np.unique(ids_int, return_counts=True)
        dup = uniq[counts > 1]
        if dup.size and (multi := several_images(adata.obs)) is not None:
            col, names = multi
            shown = ", ".join(os.path.splitext(n)[0] for n in names[:3]) + (", ..." if len(names) > 3 else "")
            raise SampleError(
                f"the table holds the cells of {len(names)} images (column {col!r}: {shown}), so its cell ids "
                f"in {key!r} repeat ({dup.size} ids more than once); a sample is one image.", path=where,
                hint="Open one image with this table (the image file with --table / table= keeps that image's "
                     "rows), or pass image_column=.")
        if dup.size:
            raise SampleError(
                f"{dup.size} cell id(s) appear more than once in the table, e.g. {dup[:5].tolist()}; each mask label needs exactly one row.",
                path=where,
                hint="Is it a table of several images (a column naming the image of each row)? Open one image "
                     "with its table.",
            )
        if link["region"] is None:
            set_table_link(adata, region=f"{self.name}_labels", instance_key=key, region_key=link["region_key"])
        if self.pixel_size_um is None:
            self.pixel_size_um = pixel_size_um(adata)
        set_pixel_size_um(adata, self.pixel_size_um)

        stats = None
        if self.labels is not None and check_ids:
            from .mask_ids import mask_ids as _mask_ids

            # one pass, cached by file identity (issue 14)
            mask_ids = _mask_ids(self.labels[0], source=self.paths.get("mask"))
            if mask_ids.size and mask_ids[0] < 0:
                raise SampleError(
                    f"mask holds negative label ids (e.g. {mask_ids[mask_ids < 0][:3].tolist()}) or ids at or above "
                    "2^63; labels are 0 (background) or positive cell ids.", path=self._where("mask"))
            not_in_mask = np.setdiff1d(uniq, mask_ids, assume_unique=True)
            not_in_table = np.setdiff1d(mask_ids, uniq, assume_unique=True)
            problems = []
            if not_in_mask.size:
                problems.append(
                    f"{not_in_mask.size} of {uniq.size} table ids are not in the mask (e.g. {not_in_mask[:5].tolist()})"
                )
            if not_in_table.size:
                problems.append(
                    f"{not_in_table.size} of {mask_ids.size} mask ids have no table row (e.g. {not_in_table[:5].tolist()})"
                )
            if problems:
                raise SampleError(
                    "; ".join(problems) + f" [mask: {self._where('mask') or 'in memory'}].",
                    path=where,
                    hint="Are the table and mask from the same image and segmentation?",
                )

        xy = adata.obsm.get(SPATIAL_KEY) if SPATIAL_KEY in adata.obsm else None
        if xy is not None:
            xy = np.asarray(xy, dtype=float)
            if xy.shape != (adata.n_obs, 2) and not (xy.ndim == 2 and xy.shape[0] == adata.n_obs and xy.shape[1] >= 2):
                raise SampleError(f"obsm['spatial'] has shape {xy.shape}; expected ({adata.n_obs}, 2).", path=where)
            if not np.all(np.isfinite(xy[:, :2])):
                bad = int((~np.isfinite(xy[:, :2])).any(axis=1).sum())
                if self.labels is None:
                    raise SampleError(f"{bad} cells have NaN or infinite coordinates and there is no mask to recompute them from.", path=where)
                log.warning("%s: %d cells have NaN coordinates; recomputing centroids from the mask", where, bad)
                xy = None
        if xy is None:
            if self.labels is None:
                raise SampleError("the cell table has no coordinates (obsm['spatial']) and there is no mask to compute them from.", path=where)
            if stats is None:
                stats = label_stats(self.labels[0])
            s = stats.set_index("id").reindex(ids_int)
            adata.obsm[SPATIAL_KEY] = yx_to_spatial(s[["y", "x"]].to_numpy())
            if "area" not in adata.obs:
                adata.obs["area"] = s["n"].to_numpy()

    # ------------------------------------------------------------------ helpers
    def public_metadata(self, *, blinded: bool = False) -> dict[str, Any]:
        """Metadata to show; clinical keys removed when ``blinded``."""
        if not blinded:
            return dict(self.metadata)
        return {k: v for k, v in self.metadata.items() if k not in CLINICAL_KEYS}

    def channel_index(self, name: str) -> int:
        try:
            return self.channel_names.index(name)
        except ValueError:
            raise KeyError(f"no channel {name!r} in sample {self.name!r}; channels: {', '.join(self.channel_names)}") from None

    def __repr__(self) -> str:  # short, never computes anything
        shp = self.shape_yx
        return (
            f"Sample({self.name!r}, {self.n_channels} channels, shape={shp}, levels={len(self.image)}, "
            f"labels={'yes' if self.labels else 'no'}, cells={self.n_cells}, rois={len(self.rois)})"
        )


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def fspath(p) -> str | None:
    return None if p is None else os.fspath(p)
