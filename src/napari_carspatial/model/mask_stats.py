"""Chunk-wise label statistics (ids, pixel counts, centroids) that never load a whole mask.

Works on numpy or dask arrays of any integer dtype with non-consecutive ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _block_stats(block: np.ndarray, y0: int, x0: int) -> pd.DataFrame:
    flat = block.ravel()
    nz = np.flatnonzero(flat)
    if nz.size == 0:
        return pd.DataFrame({"id": np.empty(0, np.int64), "n": np.empty(0, np.int64),
                             "sy": np.empty(0), "sx": np.empty(0)})
    ids, inv, counts = np.unique(flat[nz], return_inverse=True, return_counts=True)
    rows, cols = np.divmod(nz, block.shape[1])
    sy = np.bincount(inv, weights=rows + y0, minlength=len(ids))
    sx = np.bincount(inv, weights=cols + x0, minlength=len(ids))
    return pd.DataFrame({"id": ids.astype(np.int64), "n": counts.astype(np.int64), "sy": sy, "sx": sx})


def label_stats(labels: np.ndarray) -> pd.DataFrame:
    """Per label id (> 0): pixel count ``n`` and centroid ``y``, ``x`` in pixel coordinates.

    Dask arrays are processed block by block so memory stays bounded by one block.

    Parameters
    ----------
    labels
        A 2-D integer label image (numpy or dask); 0 is background.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``n``, ``y``, ``x``, sorted by ``id``.

    Raises
    ------
    ValueError
        If ``labels`` is not 2-D or not of an integer dtype.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got {labels.ndim} dimensions")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label image must have an integer dtype, got {labels.dtype}")
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        da = None
    parts = []
    if da is not None and isinstance(labels, da.Array):
        import dask

        ychunks = np.concatenate([[0], np.cumsum(labels.chunks[0])])
        xchunks = np.concatenate([[0], np.cumsum(labels.chunks[1])])
        blocks = labels.to_delayed()
        tasks = []
        for i in range(blocks.shape[0]):
            for j in range(blocks.shape[1]):
                tasks.append(dask.delayed(_block_stats)(blocks[i, j], int(ychunks[i]), int(xchunks[j])))
        parts = list(dask.compute(*tasks))
    else:
        parts = [_block_stats(np.asarray(labels), 0, 0)]
    df = pd.concat(parts, ignore_index=True)
    if df.empty:
        return pd.DataFrame({"id": np.empty(0, np.int64), "n": np.empty(0, np.int64),
                             "y": np.empty(0), "x": np.empty(0)})
    g = df.groupby("id", sort=True).sum()
    out = pd.DataFrame({"id": g.index.to_numpy(np.int64), "n": g["n"].to_numpy(np.int64),
                        "y": (g["sy"] / g["n"]).to_numpy(), "x": (g["sx"] / g["n"]).to_numpy()})
    return out
