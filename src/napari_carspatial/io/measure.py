"""Measure on open: a sample with a mask and no cell table gets one from ``analysis.quantify``.

The most common output of a segmentation step is an image plus a mask, without a table.
:func:`read_sample` then measures the cells right away (in this process, local threads; never a
cluster), so the sample opens with its cells. :func:`store_measured_table` is the headless action
behind a "Measure cells" button; :func:`measure_cells` returns the table without touching the
sample.
"""

from __future__ import annotations

import time

from ..model import Sample, SampleError
from ._util import log

#: value of ``sample.metadata["table_source"]`` for a table measured from the mask
MEASURED = "measured from the mask"


def measure_cells(sample: Sample, *, scheduler="threads", progress: bool = False, solidity: bool = True):
    """Measure every cell of ``sample``'s mask on its image (the existing :func:`analysis.quantify`).

    Parameters
    ----------
    sample
        A sample with an image and a mask. Not modified.
    scheduler
        Passed to ``quantify`` (default: local threads, in this process).
    progress
        Show quantify's progress bar.
    solidity
        Also compute solidity (one more pass over cells that cross tile borders).

    Returns
    -------
    anndata.AnnData
        ``X`` = mean intensity per channel (``var_names`` = channel names), ``obs`` = ``cell_id``
        (the mask label) and shape columns, ``obsm["spatial"]`` = (x, y) centroids in level-0
        pixels, linked to ``<name>_labels``. Channel metadata (metal, mass, ...) of the sample,
        when it has any, becomes ``var`` columns.
    """
    from ..analysis.quantify import quantify

    if not sample.labels:
        raise SampleError("measuring cells needs a mask; this sample has none.", path=sample.paths.get("image"))
    if not sample.image:
        raise SampleError("measuring cells needs an image; this sample has only a mask.", path=sample.paths.get("mask"))
    t0 = time.perf_counter()
    adata = quantify(sample.image, sample.labels, channel_names=list(sample.channel_names),
                     pixel_size_um=sample.pixel_size_um, scheduler=scheduler, progress=progress,
                     solidity=solidity, region=f"{sample.name}_labels")
    for key, values in _channel_columns(sample).items():
        adata.var[key] = values
    adata.uns.setdefault("carspatial", {})["table_source"] = MEASURED
    log.debug("%s: measured %d cells x %d channels from the mask in %.2f s", sample.name, adata.n_obs,
             adata.n_vars, time.perf_counter() - t0)
    return adata


def store_measured_table(sample: Sample, **kwargs):
    """Measure ``sample``'s cells (:func:`measure_cells`) and set the result as ``sample.table``.

    Records ``metadata["table_source"]`` and ``paths["table"] = None`` (nothing on disk yet).
    Returns the table.
    """
    adata = measure_cells(sample, **kwargs)
    sample.table = adata
    sample.metadata["table_source"] = MEASURED
    sample.paths.pop("table", None)
    return adata


def _channel_columns(sample: Sample) -> dict:
    meta = sample.metadata.get("channel_metadata")
    if not meta or len(meta) != sample.n_channels:
        return {}
    keys = [k for k in meta[0] if k != "name" and all(isinstance(m, dict) and k in m for m in meta)]
    out = {}
    for k in keys:
        vals = [m[k] for m in meta]
        if all(v is None or isinstance(v, (str, int, float)) for v in vals):
            out[k] = [("" if v is None else v) if any(isinstance(x, str) for x in vals) else v for v in vals]
    return out
