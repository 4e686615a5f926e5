"""The one default colour policy for categories (cell types, phenotypes, new curated types, regions).

Stored colours always win (``uns[f"{key}_colors"]``, the scanpy convention; see
:func:`category_colors`). Without them, a category gets:

1. the colour a pathologist expects for a well-known type (:data:`SEMANTIC`, first matching
   pattern whose colour is still free): CAR T the loudest, abundant tumour and stroma muted;
2. else the next free colour of :data:`DEFAULT_PALETTE`;
3. else evenly spaced hues (golden-ratio steps).

**Class colours never look like a channel.** The first view shows markers in napari colormaps
that run from black to a saturated primary or secondary colour (blue DAPI, green PanCK, magenta
CAR, yellow MSLN, red CD3, cyan CD68, the "bop" orange / blue / purple; see
:data:`napari_carspatial.model.channels.ALL_COLORMAPS`). A CAR T outline in magenta vanishes in
the CAR signal, so every colour of :data:`SEMANTIC`, :data:`DEFAULT_PALETTE` and
:data:`ROI_CLASS_COLORS` is at least :data:`MIN_CHANNEL_DISTANCE` (CIEDE2000) away from every
such colormap anywhere on its ramp (:func:`channel_distance`, from 35 % to full intensity), at
least :data:`MIN_CLASS_DISTANCE` from each other, and still :data:`MIN_CVD_DISTANCE` apart under
simulated protanopia, deuteranopia and tritanopia (Machado, Oliveira & Fernandes 2009,
severity 1; :func:`simulate_cvd`). The tests check all three. (Greys are kept for the muted
classes, stroma and "other": the gray colormap is only handed to background channels and CD31.)

The legend and the slide (``_napari.coloring``), the curation model (a type created by an
assignment), gating (new phenotypes), segmentation (new "unassigned" cells), the analysis plots
(:func:`category_color_map`), exports and reports (they carry ``uns``) all ask here, so changing
the palette is a change to this file only. No napari, no Qt.
"""

from __future__ import annotations

import colorsys
import logging
import re
from collections.abc import Iterable, Sequence

import numpy as np

from .conventions import colors_key

log = logging.getLogger(__name__)

#: categorical palette for categories without a stored or semantic colour (none looks like a
#: channel). The first twelve are the :data:`SEMANTIC` colours (tested distinct, also under
#: colour-vision deficiency); the rest are extra hues for long category lists.
DEFAULT_PALETTE = (
    "#3cb478", "#ff7fb6", "#aab4ff", "#e66e00", "#d9c3a8", "#a50f50", "#f0f5aa", "#4b55c8",
    "#9b5a50", "#9b87f5", "#8c8c8c", "#5a5a5a",
    "#ffc396", "#697869", "#b4c3c3", "#877887",
)
#: how many of :data:`DEFAULT_PALETTE` are tested distinct from each other
N_DISTINCT = 12
#: colour of the "matched no rule" category of a gating (``GatingScheme.default``)
REST_COLOR = "#bdbdbd"
#: colours a pathologist expects for well-known types (first matching pattern wins)
SEMANTIC = (
    (r"car[\s_-]?t", "#ff7fb6"),                                         # loud pink, not the CAR magenta
    (r"(antigen|ag)[\s_-]?(neg|-)|msln[\s_-]?(neg|-)", "#9b5a50"),       # brown
    (r"tumou?r|carcinoma|epithel|cancer", "#d9c3a8"),                    # muted sand
    (r"cd8", "#4b55c8"),                                                 # indigo
    (r"cd4", "#aab4ff"),                                                 # periwinkle
    (r"t[\s_-]?cell|^t$|lymph", "#9b87f5"),                              # lavender
    (r"macro|cd68|cd163", "#3cb478"),                                    # jade
    (r"mdsc|myeloid|neutro", "#a50f50"),                                 # wine
    (r"b[\s_-]?cell|cd20", "#f0f5aa"),                                   # cream, not the MSLN yellow
    (r"endotheli|vessel|cd31", "#e66e00"),                               # dark orange
    (r"strom|fibro|sma", "#8c8c8c"),                                     # grey
    (r"^(other|unknown|unassigned|undefined|nan|none)$", "#5a5a5a"),     # dark grey
)
#: edge colours of the region classes (``model.curation.ROI_CLASSES``); light, none like a channel
ROI_CLASS_COLORS = {
    "Tumor core": "#f0f0f0", "Invasive margin": "#ffc396", "Stroma": "#b9c8a5", "TLS": "#c8b9ff",
    "Exclude": "#787878", "Other": "#e1a5c8",
}
#: colour of a region whose class is not in :data:`ROI_CLASS_COLORS`
ROI_DEFAULT_COLOR = "#e1a5c8"

#: full-intensity RGB of the colormaps the channel policy hands out (each runs from black to it)
CHANNEL_RGB = {
    "blue": (0.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0), "red": (1.0, 0.0, 0.0), "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0), "bop orange": (0.973, 0.678, 0.125),
    "bop blue": (0.125, 0.678, 0.973), "bop purple": (0.58, 0.125, 0.58), "gray": (1.0, 1.0, 1.0),
}
#: colormaps whose colour no class colour may resemble (gray: greys stay for muted classes)
AVOIDED_CHANNELS = tuple(k for k in CHANNEL_RGB if k != "gray")
#: minimum CIEDE2000 distance of a class colour to a channel colormap's ramp
MIN_CHANNEL_DISTANCE = 12.0
#: minimum CIEDE2000 distance between two class colours of :data:`SEMANTIC`
MIN_CLASS_DISTANCE = 12.0
#: ... and under simulated colour-vision deficiency
MIN_CVD_DISTANCE = 8.0
#: the part of a channel ramp that counts (dimmer than this it reads as background)
RAMP = np.linspace(0.35, 1.0, 14)

#: Machado et al. 2009 simulation matrices at severity 1 (linear RGB)
_CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}


def _rgb(c) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.asarray(to_rgb(c), dtype=float)


def _lab(rgb) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.clip(np.asarray(rgb, float), 0, 1).reshape(-1, 1, 3)).reshape(-1, 3)


def color_distance(a, b) -> float:
    """Perceptual distance (CIEDE2000) between two colours (names, hex or RGB tuples)."""
    from skimage.color import deltaE_ciede2000

    return float(deltaE_ciede2000(_lab(_rgb(a)), _lab(_rgb(b)))[0])


def channel_distance(color, channel) -> float:
    """Smallest CIEDE2000 distance of ``color`` to a channel colormap's ramp (black to its colour).

    ``channel`` is a colormap name of :data:`CHANNEL_RGB` or a full-intensity colour.
    """
    from skimage.color import deltaE_ciede2000

    top = np.asarray(CHANNEL_RGB[channel], float) if isinstance(channel, str) and channel in CHANNEL_RGB \
        else _rgb(channel)
    ramp = _lab(RAMP[:, None] * top[None, :])
    c = np.repeat(_lab(_rgb(color)), len(ramp), axis=0)
    return float(deltaE_ciede2000(c, ramp).min())


def simulate_cvd(color, kind: str) -> np.ndarray:
    """RGB of ``color`` as seen with ``kind`` (``"protanopia"``, ``"deuteranopia"``, ``"tritanopia"``)."""
    c = _rgb(color)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    out = np.clip(np.asarray(_CVD[kind]) @ lin, 0, 1)
    return np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)


def cvd_distance(a, b) -> float:
    """Smallest CIEDE2000 distance of two colours over the three simulated deficiencies."""
    return min(color_distance(simulate_cvd(a, k), simulate_cvd(b, k)) for k in _CVD)


def roi_color(cls: str) -> str:
    """Edge colour of a region of class ``cls``."""
    return ROI_CLASS_COLORS.get(str(cls), ROI_DEFAULT_COLOR)


_HEX6 = re.compile(r"#[0-9a-fA-F]{6}")


def _hex(c) -> str:
    """``matplotlib.colors.to_hex(c)``; a ``#rrggbb`` string (what tables store) without importing
    matplotlib (~0.15 s, in the first segmentation commit of a session)."""
    if isinstance(c, str) and _HEX6.fullmatch(c):
        return c.lower()
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


def category_color_map(adata, key: str, *, store_default: bool = True) -> dict[str, str]:
    """``{category: hex colour}`` of ``obs[key]``: the colours the legend shows (:func:`category_colors`).

    Plots, exports and reports use this, so a class has one colour everywhere.
    """
    import pandas as pd

    s = adata.obs[key]
    cats = s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s).categories
    names = [str(c) for c in cats]
    return dict(zip(names, category_colors(adata, key, names, store_default=store_default), strict=True))
