"""The one default colour policy for categories (cell types, phenotypes, new curated types).

Stored colours always win (``uns[f"{key}_colors"]``, the scanpy convention; see
:func:`category_colors`). Without them, a category gets:

1. the colour a pathologist expects for a well-known type (:data:`SEMANTIC`, first matching
   pattern whose colour is still free): CAR T the loudest, abundant tumour and stroma muted;
2. else the next free colour of :data:`DEFAULT_PALETTE` (Okabe-Ito first, then tab20-like);
3. else evenly spaced hues (golden-ratio steps).

The legend and the slide (``_napari.coloring``), the curation model (a type created by an
assignment), gating (new phenotypes) and segmentation (new "unassigned" cells) all ask here,
so changing the palette is a change to this file only. No napari, no Qt.
"""

from __future__ import annotations

import colorsys
import logging
import re
from collections.abc import Iterable, Sequence

import numpy as np

from .conventions import colors_key

log = logging.getLogger(__name__)

#: categorical palette for categories without a stored or semantic colour: distinct, vivid hues first
DEFAULT_PALETTE = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#8c564b",
    "#17becf", "#bcbd22", "#9467bd", "#ff9896", "#98df8a", "#c5b0d5", "#aec7e8", "#ffbb78",
    "#c49c94", "#dbdb8d", "#9edae5", "#f7b6d2", "#393b79", "#637939", "#8c6d31", "#843c39",
)
#: colour of the "matched no rule" category of a gating (``GatingScheme.default``)
REST_COLOR = "#bdbdbd"
#: colours a pathologist expects for well-known types (first matching pattern wins)
SEMANTIC = (
    (r"car[\s_-]?t", "#ff00ff"),
    (r"(antigen|ag)[\s_-]?(neg|-)|msln[\s_-]?(neg|-)", "#8c5a2b"),
    (r"tumou?r|carcinoma|epithel|cancer", "#d9c7a3"),
    (r"cd8", "#0072b2"),
    (r"cd4", "#56b4e9"),
    (r"t[\s_-]?cell|^t$|lymph", "#7fb8da"),
    (r"macro|cd68|cd163", "#009e73"),
    (r"mdsc|myeloid|neutro", "#cc79a7"),
    (r"b[\s_-]?cell|cd20", "#f0e442"),
    (r"endotheli|vessel|cd31", "#d55e00"),
    (r"strom|fibro|sma", "#8c8c8c"),
    (r"^(other|unknown|unassigned|undefined|nan|none)$", "#5a5a5a"),
)


def _hex(c) -> str:
    from matplotlib.colors import to_hex

    return to_hex(c, keep_alpha=False)


def semantic_color(name) -> str | None:
    """The expected colour of a well-known type name (None for other names)."""
    low = str(name).strip().lower()
    for pat, col in SEMANTIC:
        if re.search(pat, low):
            return col
    return None


def _hue(k: int) -> str:
    h = (k * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.9)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def color_for(name, used: Iterable = ()) -> str:
    """A colour for one new category ``name`` that is not in ``used`` (semantic first)."""
    taken = set()
    for c in used:
        try:
            taken.add(_hex(c))
        except (ValueError, TypeError):
            continue
    sem = semantic_color(name)
    if sem is not None and sem not in taken:
        return sem
    for c in DEFAULT_PALETTE:
        if c not in taken:
            return c
    k = 0
    while _hue(k) in taken:
        k += 1
    return _hue(k)


def default_colors(categories: Sequence[str]) -> list[str]:
    """A colour per category: the usual colour of well-known cell types, a distinct palette else."""
    out: list[str | None] = [None] * len(categories)
    used = set()
    for i, name in enumerate(categories):
        low = str(name).strip().lower()
        for pat, col in SEMANTIC:
            if re.search(pat, low) and col not in used:
                out[i] = col
                used.add(col)
                break
    pal = [c for c in DEFAULT_PALETTE if c not in used]
    k = 0
    for i in range(len(out)):
        if out[i] is None:
            out[i] = pal[k] if k < len(pal) else _hue(k)   # many categories: evenly spaced hues
            k += 1
    return out  # type: ignore[return-value]


def _valid_hex(colors) -> list[str] | None:
    try:
        return [_hex(c) for c in list(colors)]
    except (ValueError, TypeError):
        return None


def category_colors(adata, key: str, categories: Sequence[str] | None = None, *, store_default: bool = True) -> list[str]:
    """Hex colours of ``obs[key]``'s categories from ``uns[f"{key}_colors"]`` (scanpy convention).

    When the stored list is missing, has the wrong length or holds an invalid colour, a default
    is made (:func:`default_colors`) and, with ``store_default``, written back.
    """
    if categories is None:
        import pandas as pd

        s = adata.obs[key]
        cats = s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s).categories
        categories = [str(c) for c in cats]
    ck = colors_key(key)
    stored = adata.uns.get(ck)
    if stored is not None and len(stored) == len(categories):
        hexes = _valid_hex(stored)
        if hexes is not None:
            return hexes
        log.warning("uns[%r] holds invalid colours; using defaults", ck)
    elif stored is not None:
        log.info("uns[%r] has %d colours for %d categories; using defaults", ck, len(stored), len(categories))
    cols = default_colors(categories)
    if store_default:
        adata.uns[ck] = np.array(cols, dtype=object)
    return cols
