"""Channel policy for the first view: what each marker is, which channels to show, in which colour,
with which contrast. Headless (names and numpy only); ``_napari.layers`` applies it.

* :func:`classify` puts a channel name into a role: ``"nuclear"`` (DAPI, Hoechst, DNA1/DNA2,
  Ir191/Ir193, HH3/H3, dsDNA; histone marks such as H3K27Ac as a fallback), a lineage
  (``"tumor"``, ``"t_cell"``, ``"myeloid"``, ``"b_cell"``, ``"stroma"``, ``"endothelium"``,
  ``"immune"``), ``"background"`` (Background, Blank, Empty, unused, bare fluorophore cycles such
  as ``AF488``) or ``None``. Names are compared as lower-case tokens, so ``"DNA1 (Ir191)"``,
  ``"191Ir_DNA1"``, ``"Cytokeratin 5"`` and ``"CD3e"`` are recognised.
* :func:`default_visible`: one nuclear channel plus up to three lineage markers from different
  lineages (tumour first, then CAR T / T cells, then myeloid, ...); background and all-zero
  channels are never shown first.
* :func:`channel_colormaps`: napari colormap names, only ones that map 0 to black (see
  :data:`PALETTE`), so additive blending never turns the canvas white.
* :func:`contrast_limits`: percentiles per channel; for sparse count data (IMC, MIBI: most pixels
  0) the percentiles are taken over the non-zero pixels with the lower limit at 0, so single
  counts do not saturate into a speckle carpet.
"""

from __future__ import annotations

import re

import numpy as np

#: nuclear stains (tokens, lower case)
NUCLEAR = ("dapi", "hoechst", "hoechst33342", "dna", "dna1", "dna2", "ir191", "ir193", "191ir", "193ir",
           "hh3", "h3", "histoneh3", "dsdna", "nuclear", "draq5", "sytox", "topro3", "syto13")
#: histone modifications: nuclear when nothing in :data:`NUCLEAR` is there
_HISTONE_MARK = re.compile(r"^h[1-4][a-z]?k\d+(ac|me\d?|ph)?$|^h2ax$|^histone")

#: lineage -> marker tokens, in order of preference within the lineage
LINEAGES: dict[str, tuple[str, ...]] = {
    "tumor": ("panck", "pancytokeratin", "pankeratin", "cytokeratin", "keratin", "ck", "krt", "krt5", "krt8",
              "krt18", "krt19", "ck5", "ck7", "ck8", "ck18", "ck19", "ecadherin", "ecad", "cdh", "cdh1", "epcam",
              "msln", "mesothelin", "psma", "folh1", "her2", "erbb2", "cea", "ceacam5", "sox10", "melana",
              "ar", "nkx31", "pin", "proinsulin"),
    "t_cell": ("car", "cd3", "cd3e", "cd8", "cd8a", "cd4", "cd2", "cd5", "cd7", "tcr", "tcrb"),
    "myeloid": ("cd68", "cd163", "cd11b", "cd11c", "cd14", "cd15", "cd33", "iba1", "cd206", "mpo", "hladr"),
    "b_cell": ("cd20", "cd19", "cd79a", "pax5", "cd22"),
    "stroma": ("sma", "asma", "acta2", "vimentin", "vim", "collagen", "col1", "col1a1", "fap", "pdgfrb",
               "laminin"),
    "endothelium": ("cd31", "pecam1", "cd34", "vwf", "lyve1"),
    "immune": ("cd45", "ptprc", "cd45ra", "cd45ro"),
}
#: lineages tried in this order for the markers shown first
LINEAGE_ORDER = ("tumor", "t_cell", "myeloid", "b_cell", "stroma", "endothelium", "immune")
#: names that are not markers
_BACKGROUND = re.compile(r"^(background|bkg|bg|blank|empty|unused|none|null|off|autofluorescence|af|"
                         r"(a|af|alexa|cy|atto)\d{3}|bck)\d*$")
#: words that make any channel name a non-marker ("TRITC background", "Empty_2")
_BACKGROUND_WORD = re.compile(r"^(background|bkg|blank|empty|unused|autofluorescence)\d*$")

#: napari colormaps that map 0 to black (safe with additive blending), in the order handed out
PALETTE = ("green", "magenta", "cyan", "yellow", "red", "bop orange", "bop blue", "bop purple", "gray")
#: preferred colour per role
ROLE_COLORS = {"nuclear": "blue", "tumor": "green", "t_cell": "red", "myeloid": "cyan", "b_cell": "yellow",
               "stroma": "bop orange", "endothelium": "bop purple", "immune": "magenta"}
#: preferred colour per marker (overrides the role colour)
MARKER_COLORS = {"car": "magenta", "msln": "yellow", "mesothelin": "yellow", "psma": "yellow", "cd8": "bop orange",
                 "cd8a": "bop orange", "cd4": "bop blue", "cd163": "bop purple", "cd31": "gray"}
#: every colormap this module can hand out
ALL_COLORMAPS = tuple(dict.fromkeys(("blue", *PALETTE, *ROLE_COLORS.values(), *MARKER_COLORS.values())))
#: lineage markers shown first, besides one nuclear channel
MAX_LINEAGE_VISIBLE = 3


def tokens(name: str) -> list[str]:
    """Lower-case alphanumeric tokens of a channel name, plus the whole name squashed.

    ``"DNA1 (Ir191)"`` -> ``["dna1", "ir191", "dna1ir191"]``; ``"E-Cadherin"`` ->
    ``["e", "cadherin", "ecadherin"]``; ``"191Ir_DNA1"`` -> ``["191ir", "dna1", "191irdna1"]``.
    """
    low = str(name).strip().lower().replace("µ", "u")
    parts = [t for t in re.split(r"[^0-9a-z]+", low) if t]
    squashed = "".join(parts)
    return parts + ([squashed] if squashed and squashed not in parts else [])


def _metal_free(tok: str) -> str:
    """``cd3_170er`` style tokens: drop a trailing/leading isotope (``170er``, ``er170``)."""
    return re.sub(r"^(\d{2,3}[a-z]{1,2})(?=[a-z])|(?<=[a-z0-9])(\d{2,3}[a-z]{1,2}|[a-z]{1,2}\d{2,3})$", "", tok)


def classify(name: str) -> str | None:
    """Role of a channel: ``"nuclear"``, a lineage of :data:`LINEAGES`, ``"background"`` or None."""
    toks = tokens(name)
    if not toks:
        return None
    squashed = toks[-1]
    if any(_BACKGROUND.match(t) for t in (toks[0], squashed)) or any(_BACKGROUND_WORD.match(t) for t in toks):
        return "background"
    cand = list(dict.fromkeys(toks + [_metal_free(t) for t in toks]))
    if any(t in NUCLEAR for t in cand):
        return "nuclear"
    for lineage in LINEAGE_ORDER:
        vocab = LINEAGES[lineage]
        if any(t in vocab for t in cand):
            return lineage
    if any(_HISTONE_MARK.match(t) for t in cand):
        return "histone"
    return None


def _rank_in_lineage(name: str, lineage: str) -> int:
    cand = tokens(name)
    cand += [_metal_free(t) for t in cand]
    vocab = LINEAGES[lineage]
    return min((vocab.index(t) for t in cand if t in vocab), default=len(vocab))


def default_visible(names: list[str], *, empty: list[bool] | None = None) -> list[bool]:
    """Which channels to show first: one nuclear channel plus up to three lineage markers.

    Parameters
    ----------
    names
        Channel names.
    empty
        Per channel, True when it holds no signal (all zero); such channels are never shown first.

    Returns
    -------
    list of bool
        One nuclear channel (a histone mark when there is no nuclear stain), then the preferred
        marker of up to :data:`MAX_LINEAGE_VISIBLE` lineages in :data:`LINEAGE_ORDER`. When the
        names match nothing, the first three channels that are neither background nor empty.
    """
    n = len(names)
    empty = list(empty) if empty is not None else [False] * n
    roles = [classify(x) for x in names]
    usable = [i for i in range(n) if roles[i] != "background" and not empty[i]]
    chosen: list[int] = []
    nuc = [i for i in usable if roles[i] == "nuclear"] or [i for i in usable if roles[i] == "histone"]
    if nuc:
        chosen.append(nuc[0])
    k = 0
    for lineage in LINEAGE_ORDER:
        hits = [i for i in usable if roles[i] == lineage]
        if hits and k < MAX_LINEAGE_VISIBLE:
            chosen.append(min(hits, key=lambda i: (_rank_in_lineage(names[i], lineage), i)))
            k += 1
    if not chosen:
        chosen = usable[:3]
    return [i in chosen for i in range(n)]


def hidden_channels(names: list[str], *, empty: list[bool] | None = None) -> list[bool]:
    """Channels that are not markers: background / blank / empty names, or no signal at all."""
    empty = list(empty) if empty is not None else [False] * len(names)
    return [classify(x) == "background" or bool(e) for x, e in zip(names, empty, strict=True)]


def _marker_color(name: str) -> str | None:
    for t in tokens(name):
        for c in (t, _metal_free(t)):
            if c in MARKER_COLORS:
                return MARKER_COLORS[c]
    return None


def channel_colormaps(names: list[str], visible: list[bool] | None = None) -> list[str]:
    """A napari colormap name per channel; every one maps 0 to black (see :data:`ALL_COLORMAPS`).

    Channels shown first get distinct colours (their marker's or role's colour when free); the
    others get their role's colour, else the next colour of :data:`PALETTE`.
    """
    n = len(names)
    visible = list(visible) if visible is not None else default_visible(names)
    out: list[str | None] = [None] * n
    used: set[str] = set()
    order = [i for i in range(n) if visible[i]] + [i for i in range(n) if not visible[i]]
    cycle = 0
    for i in order:
        role = classify(names[i])
        pref = _marker_color(names[i]) or ROLE_COLORS.get("nuclear" if role == "histone" else role or "")
        if visible[i]:
            if pref is None or pref in used:
                pref = next((c for c in ("blue", *PALETTE) if c not in used), PALETTE[cycle % len(PALETTE)])
            used.add(pref)
            out[i] = pref
        else:
            if role == "background":
                out[i] = "gray"
            elif pref is not None:
                out[i] = pref
            else:
                out[i] = PALETTE[cycle % len(PALETTE)]
                cycle += 1
    return [str(c) for c in out]


# --------------------------------------------------------------------------- contrast
#: a channel is sparse when at least this fraction of its pixels is exactly 0
SPARSE_ZERO_FRACTION = 0.5
#: upper display limit of a sparse channel: this percentile of its non-zero pixels (the 1 % brightest
#: counts saturate; at 99.8 single hot pixels and the brightest acquisition set it and the rest is dim)
SPARSE_HIGH = 99.0


def contrast_limits(level, *, low: float = 1.0, high: float = 99.8, sparse_high: float = SPARSE_HIGH,
                    max_values: int = 1_000_000) -> list[tuple[float, float]]:
    """Per-channel (low, high) display limits of one (C, Y, X) array (call it on a small level).

    Dense channels: the ``low`` / ``high`` percentiles of all pixels (integer images of at most
    16 bits use an exact histogram, the same as ``np.percentile(..., method="lower")``; floats a
    regular subsample of at most ``max_values`` pixels). Sparse channels (at least
    :data:`SPARSE_ZERO_FRACTION` of the pixels are 0, as in IMC and MIBI counts): lower limit 0,
    upper limit the ``sparse_high`` percentile of the non-zero pixels. All-zero channels get (0, 1).
    """
    arr = np.asarray(level.compute() if hasattr(level, "compute") else level)
    lims = []
    for ch in arr.reshape(arr.shape[0], -1):
        if ch.size == 0:
            lims.append((0.0, 1.0))
            continue
        step = max(1, ch.size // max_values)
        sub = ch[::step]
        nonzero = sub[sub != 0]
        if np.issubdtype(sub.dtype, np.floating):
            nonzero = nonzero[np.isfinite(nonzero)]
        zero_frac = 1.0 - nonzero.size / sub.size
        if zero_frac >= SPARSE_ZERO_FRACTION and (nonzero.size == 0 or float(nonzero.min()) > 0):
            if nonzero.size == 0:
                lims.append((0.0, 1.0))
                continue
            hi = float(np.percentile(nonzero.astype(np.float64), sparse_high, method="lower"
                                     if np.issubdtype(nonzero.dtype, np.integer) else "linear"))
            lims.append(_widen(0.0, hi, float(nonzero.max())))
            continue
        if np.issubdtype(ch.dtype, np.integer) and ch.dtype.itemsize <= 2:
            lims.append(_int_percentiles(ch, low, high))
            continue
        finite = sub.astype(np.float32, copy=False)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            lims.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(finite, [low, high])
        lims.append(_widen(float(lo), float(hi), float(finite.max())))
    return lims


def empty_channels(level) -> list[bool]:
    """Per channel of a (C, Y, X) array: True when every pixel is 0 (or not finite)."""
    arr = np.asarray(level.compute() if hasattr(level, "compute") else level)
    flat = arr.reshape(arr.shape[0], -1)
    if np.issubdtype(flat.dtype, np.floating):
        return [not bool(np.any(np.isfinite(c) & (c != 0))) for c in flat]
    return [not bool(np.any(c)) for c in flat]


def _int_percentiles(ch: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Percentiles of a (u)int8/16 channel from its histogram (same as np.percentile 'lower')."""
    offset = int(ch.min()) if ch.dtype.kind == "i" else 0
    counts = np.bincount((ch.astype(np.int64) - offset) if offset else ch)
    cdf = np.cumsum(counts)
    n = cdf[-1]
    lo = int(np.searchsorted(cdf, low / 100 * (n - 1), side="right")) + offset
    hi = int(np.searchsorted(cdf, high / 100 * (n - 1), side="right")) + offset
    return _widen(float(lo), float(hi), float(len(counts) - 1 + offset))


def _widen(lo: float, hi: float, vmax: float) -> tuple[float, float]:
    if hi <= lo:
        hi = lo + (1.0 if vmax <= lo else vmax - lo)
    return (lo, hi)
