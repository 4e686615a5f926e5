"""Keeping a cell table in step with mask edits, headless: row lookup, appending and dropping rows
fast (10^5-10^6 rows), categories of new cells, and the "stale analyses" flag.

Stale convention (for region analyses): ``uns["carspatial"]["stale"] = True`` and
``uns["carspatial"]["stale_regions"]`` = int64 array (n, 4) of level-0 pixel boxes
``(y0, x0, y1, x1)`` (end exclusive) edited since the flag was last cleared. Whoever recomputes
an analysis clears both (:func:`clear_stale`).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd

from ..io.mask_store import zarr_source  # noqa: F401 - re-exported (the editor reads crops with it)
from ..model import UNS_KEY, instance_ids
from ..model.palette import color_for

log = logging.getLogger(__name__)

#: the category new cells get (a split half, a drawn cell): named so that no plot or table can
#: take it for a cell type; grey like "unassigned"
UNASSIGNED = "unassigned (new cell)"
#: keys in ``uns["carspatial"]`` of the stale convention
STALE_KEY = "stale"
STALE_REGIONS_KEY = "stale_regions"


def set_category(t, col: str, pos: np.ndarray, value: str) -> None:
    s = t.obs[col]
    if value not in s.cat.categories:
        add_category(t, col, value)
        s = t.obs[col]
    vals = s.copy()
    vals.iloc[pos] = value
    t.obs[col] = vals


def add_category(t, col: str, value: str) -> None:
    s = t.obs[col]
    t.obs[col] = s.cat.add_categories([value])
    ck = f"{col}_colors"
    if ck in t.uns and len(t.uns[ck]) == len(s.cat.categories):
        used = [str(c) for c in np.asarray(t.uns[ck]).tolist()]
        name = "unassigned" if value == UNASSIGNED else value
        t.uns[ck] = np.asarray([*used, color_for(name, used=used)], dtype=object)


def set_block(X, rows: np.ndarray, cols: np.ndarray, values: np.ndarray):
    """``X[rows][:, cols] = values`` for a dense array (in place) or a scipy sparse matrix (a new
    CSR matrix, never densified: RNA tables of 10^6 x 5,000 stay sparse). Returns ``X``."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values)
    if not hasattr(X, "tocsr"):
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        X[np.ix_(rows, cols)] = values.astype(X.dtype, copy=False)
        return X
    import scipy.sparse as sp

    fmt = X.format
    coo = X.tocoo()
    # entries outside the block stay; the block's entries are replaced (NaN-safe: no arithmetic)
    hit = np.isin(coo.row, rows) & np.isin(coo.col, cols)
    r = np.repeat(rows, cols.size)
    c = np.tile(cols, rows.size)
    out = sp.csr_matrix((np.concatenate([coo.data[~hit], values.astype(X.dtype, copy=False).ravel()]),
                         (np.concatenate([coo.row[~hit], r]), np.concatenate([coo.col[~hit], c]))),
                        shape=X.shape, dtype=X.dtype)
    out.sort_indices()
    return out.asformat(fmt) if fmt != "csr" else out


def _is_sparse(a) -> bool:
    return hasattr(a, "tocsr") and hasattr(a, "nnz")


class RowIndex:
    """Row positions of instance ids: binary search when the ids are increasing (tables from
    :func:`quantify` are, and new ids are appended as max + 1, so they stay so), else a hash index.

    Building a ``pd.Index`` hash table of 10^5-10^6 ids costs ~10-30 ms per structural edit.
    """

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self._sorted = bool(self.ids.size < 2 or (self.ids[1:] > self.ids[:-1]).all())
        self._index = None if self._sorted else pd.Index(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def get_indexer(self, ids) -> np.ndarray:
        q = np.asarray(ids, dtype=np.int64).ravel()
        if self._index is not None:
            return self._index.get_indexer(q)
        if not self.ids.size:
            return np.full(q.shape, -1, dtype=np.intp)
        pos = np.searchsorted(self.ids, q)
        pos = np.minimum(pos, self.ids.size - 1)
        return np.where(self.ids[pos] == q, pos, -1).astype(np.intp)

    def __contains__(self, cell) -> bool:
        return bool(self.get_indexer([cell])[0] >= 0)

    def get_loc(self, cell) -> int:
        p = int(self.get_indexer([cell])[0])
        if p < 0:
            raise KeyError(cell)
        return p


def concat_obs(obs_b: pd.DataFrame, obs_r: pd.DataFrame, cat) -> pd.DataFrame | None:
    """Kept rows of ``obs_b`` + ``obs_r`` column by column with numpy (``cat``), or None when a
    column or the index has an extension dtype (then pandas concatenates)."""
    if not isinstance(obs_b.index.dtype, np.dtype) or not isinstance(obs_r.index.dtype, np.dtype):
        return None
    cols = {}
    for c in obs_b.columns:
        a, b = obs_b[c], obs_r[c]
        if isinstance(a.dtype, pd.CategoricalDtype):
            if a.dtype != b.dtype:
                return None
            # codes of two categoricals of this very dtype: valid by construction (validating them
            # is a pass over 10^6 codes per column per commit)
            cols[c] = pd.Categorical.from_codes(cat(a.cat.codes.to_numpy(), b.cat.codes.to_numpy()), dtype=a.dtype,
                                                validate=False)
        elif isinstance(a.dtype, np.dtype) and isinstance(b.dtype, np.dtype):
            dt = np.result_type(a.dtype, b.dtype) if object not in (a.dtype, b.dtype) else np.dtype(object)
            cols[c] = cat(a.to_numpy(), b.to_numpy(), dtype=dt)
        else:
            return None
    idx = pd.Index(cat(obs_b.index.to_numpy(), obs_r.index.to_numpy(), dtype=np.dtype(object)),
                   dtype=object, name=obs_b.index.name, copy=False)
    out = pd.DataFrame(cols, index=idx, copy=False)
    out.columns.name = obs_b.columns.name
    return out


def new_names_unique(base, rows, keep: np.ndarray | None = None) -> bool:
    """True when ``rows``' obs names are unique among themselves and none of them is a name of a
    kept row of ``base`` (one hashed pass over ``base``'s names against the few new ones: the
    names' string hashes are cached by Python, ~20 ms at 10^6 rows, where AnnData's own check
    of all names costs ~0.3-1 s)."""
    new = pd.Index(rows.obs_names)
    if new.hasnans or not new.is_unique:
        return False
    hit = base.obs.index.isin(new)
    if keep is not None:
        hit &= np.asarray(keep, bool)
    return not bool(hit.any())


def append_rows(base, rows, keep: np.ndarray | None = None, *, names_unique: bool = False):
    """``base[keep]`` + ``rows`` (same columns), categorical columns and their colours kept.

    Returns a new AnnData; ``base`` is not changed except for categories (and colours) added to
    its categorical columns. Spatial graphs (``obsp``) are dropped.

    ``names_unique``: the caller checked that the result's obs names are unique (``base``'s are,
    and :func:`new_names_unique`); then AnnData's check of all 10^6 names (which only warns) is
    skipped. The table is the same either way (``tests/unit/test_append_fast_table.py``
    compares it with the checked path and with ``anndata.concat``).
    """
    import warnings

    n0 = base.n_obs
    if keep is None:
        runs = [(0, n0)]
    else:  # kept rows as contiguous runs: slice copies (memcpy) instead of a gather
        d = np.diff(np.r_[0, np.asarray(keep, dtype=np.int8), 0])
        runs = list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=False))
    n_keep = sum(e - s for s, e in runs)
    obs_r = rows.obs.copy()
    for c in base.obs.columns:
        if isinstance(base.obs[c].dtype, pd.CategoricalDtype):
            cats = list(base.obs[c].cat.categories)
            extra = [v for v in pd.unique(obs_r[c].astype(object)) if not pd.isna(v) and v not in cats]
            for v in extra:
                add_category(base, c, str(v))
            obs_r[c] = pd.Categorical(obs_r[c].astype(object), dtype=base.obs[c].dtype)

    def cat(a, b, dtype=None):
        if _is_sparse(a):
            # sparse stays sparse (kept rows by row indexing, new rows appended as CSR)
            import scipy.sparse as sp

            kept = a.tocsr() if keep is None else a.tocsr()[np.flatnonzero(keep)]
            b = sp.csr_matrix(np.asarray(b.toarray() if _is_sparse(b) else b, dtype=a.dtype))
            return sp.vstack([kept, b], format=a.format if a.format in ("csr", "csc") else "csr")
        a = np.asarray(a)
        dtype = a.dtype if dtype is None else dtype
        b = np.asarray(b, dtype=dtype)
        out = np.empty((n_keep + b.shape[0],) + a.shape[1:], dtype=dtype)
        o = 0
        for s0, e0 in runs:
            out[o:o + e0 - s0] = a[s0:e0]
            o += e0 - s0
        out[o:] = b
        return out

    obs = concat_obs(base.obs, obs_r, cat)
    if obs is None:
        import warnings

        obs_b = base.obs if keep is None else base.obs.iloc[np.flatnonzero(keep)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            obs = pd.concat([obs_b, obs_r[obs_b.columns]], axis=0)

    X = None if base.X is None else cat(base.X, rows.X)
    obsm = {k: cat(base.obsm[k], rows.obsm[k]) for k in base.obsm}
    layers = {k: cat(base.layers[k], rows.layers[k]) for k in base.layers}

    import anndata as ad

    with ad.settings.override(check_uniqueness=False) if names_unique else contextlib.nullcontext():
        out = ad.AnnData(X=X, obs=obs, var=base.var.copy(), uns=dict(base.uns), obsm=obsm, layers=layers)
    for k in base.varm:
        out.varm[k] = base.varm[k]
    for k in base.varp:
        out.varp[k] = base.varp[k]
    return out


def mark_stale(adata, box) -> None:
    """Flag analyses stored in ``adata`` as stale for the level-0 box (y0, x0, y1, x1)."""
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    prev = np.asarray(meta.get(STALE_REGIONS_KEY, np.zeros((0, 4), np.int64)), dtype=np.int64).reshape(-1, 4)
    meta[STALE_KEY] = True
    meta[STALE_REGIONS_KEY] = np.vstack([prev, np.asarray(box, dtype=np.int64).reshape(1, 4)])
    adata.uns[UNS_KEY] = meta


def clear_stale(adata) -> None:
    """Clear the stale flag (after region analyses were recomputed)."""
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    meta.pop(STALE_KEY, None)
    meta.pop(STALE_REGIONS_KEY, None)
    adata.uns[UNS_KEY] = meta


def check_consistency(labels, adata) -> None:
    """Raise ``AssertionError`` unless every mask id has exactly one row and vice versa."""
    from ..model.mask_stats import label_stats

    ids = instance_ids(adata)
    mask_ids = label_stats(labels)["id"].to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise AssertionError(f"duplicate table ids {uniq[counts > 1][:5].tolist()}")
    missing = np.setdiff1d(mask_ids, uniq)
    extra = np.setdiff1d(uniq, mask_ids)
    if missing.size or extra.size:
        raise AssertionError(f"mask ids without row {missing[:5].tolist()}; rows without mask id {extra[:5].tolist()}")
