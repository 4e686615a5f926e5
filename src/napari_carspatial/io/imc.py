"""Raw imaging mass cytometry: ``.mcd`` sessions and ``.txt`` exports, read with ``readimc``.

``readimc`` (the Bodenmiller lab's reader, the one steinbock uses) is an optional dependency:
``pip install "napari-carspatial[imc]"``. Without it these files are still recognised, and
opening one says which extra to install.

* ``.mcd``: every acquisition (ROI) is one :class:`Sample`, named ``<file stem>_<id:03d>`` as
  steinbock names its ``img/`` files, so tables and masks made by steinbock match by name. The
  slide's panoramas can be read with :func:`read_mcd_panorama`.
* ``.txt``: one acquisition, one :class:`Sample` named after the file.

Channel names: a panel CSV beside the file (or one folder up) that maps metal tags to targets
(IMC ``panel.csv``: ``Metal Tag`` + ``Target``; steinbock ``panel.csv``: ``channel`` + ``name``),
else the acquisition's own channel labels. The metal (``Pr141``), isotope mass and the label
stored in the file are kept per channel in ``sample.metadata["channel_metadata"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import ReaderError, Sample
from ._util import log, require_exists, stem, wrap_errors

#: how to install the optional reader
IMC_EXTRA_HINT = 'Install the IMC extra: pip install "napari-carspatial[imc]" (it brings readimc).'
#: panel columns holding the metal tag, in order of preference
METAL_COLUMNS = ("Metal Tag", "metal_tag", "Metal", "metal", "channel", "Channel", "Isotope", "isotope")
#: panel columns holding the target (marker) name
TARGET_COLUMNS = ("Target", "target", "name", "Name", "marker", "Marker", "Antigen", "antigen")


def _readimc():
    try:
        import readimc
    except ImportError:
        raise ReaderError("reading raw IMC files (.mcd / .txt) needs the readimc package, which is not installed.",
                          hint=IMC_EXTRA_HINT) from None
    return readimc


def is_mcd(path) -> bool:
    """True for a file named ``*.mcd``."""
    p = Path(path)
    return p.suffix.lower() == ".mcd" and p.is_file()


def is_imc_txt(path) -> bool:
    """True for an IMC text export: a ``.txt`` whose header starts with ``Start_push``."""
    p = Path(path)
    if p.suffix.lower() != ".txt" or not p.is_file():
        return False
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.startswith("Start_push")


# --------------------------------------------------------------------------- channel names
def _metal_panel(image_path) -> tuple[dict[str, str], Path | None]:
    """{metal tag: target} from a panel CSV beside ``image_path`` (or one folder up)."""
    import pandas as pd

    folder = Path(image_path).parent
    for d in (folder, folder.parent):
        f = d / "panel.csv"
        if not f.is_file():
            continue
        with wrap_errors(f, "panel CSV"):
            df = pd.read_csv(f)
        mcol = next((c for c in METAL_COLUMNS if c in df.columns), None)
        tcol = next((c for c in TARGET_COLUMNS if c in df.columns and c != mcol), None)
        if mcol is None or tcol is None:
            log.debug("%s has no metal/target columns; not an IMC panel", f)
            continue
        out = {}
        for metal, target in zip(df[mcol], df[tcol], strict=False):
            if isinstance(metal, str) and metal.strip() and isinstance(target, str) and target.strip():
                out[metal.strip()] = target.strip()
        if out:
            return out, f
    return {}, None


def _clean_label(label: str, metal: str) -> str:
    """A readable name from an IMC channel label (``Laminin_681((851))Sm147`` -> ``Laminin``)."""
    import re

    s = (label or "").strip()
    mass = re.sub(r"\D", "", metal)
    elem = re.sub(r"\d", "", metal)
    if not s or s in (metal, f"{mass}{elem}"):
        return metal
    s = re.sub(r"\(\([^)]*\)\)", "", s)           # ((lot number))
    s = re.sub(rf"[_ -]*\(?{metal}\)?$", "", s)     # trailing Pr141 / (Pr141)
    s = re.sub(rf"^{mass}{elem}[_ -]*", "", s)      # leading 141Pr_
    s = re.sub(r"_\d+$", "", s)                     # _651 (clone / tube number)
    return s.strip(" _-") or metal


def _channels(acq, image_path, panel: str | os.PathLike | None) -> tuple[list[str], list[dict]]:
    metals = list(acq.channel_names)           # "Pr141"
    masses = [int(m) for m in acq.channel_masses]
    labels = [str(lab) for lab in acq.channel_labels]
    if panel is not None:
        mapping, src = _metal_panel_file(require_exists(panel, "panel file")), Path(panel)
    else:
        mapping, src = _metal_panel(image_path)
    missing = [m for m in metals if m not in mapping]
    if mapping and missing:
        log.warning("%s: panel %s has no row for %s; those channels keep their labels", image_path, src,
                    ", ".join(missing))
    names = [mapping.get(m) or _clean_label(lab, m) for m, lab in zip(metals, labels, strict=False)]
    meta = [{"name": n, "metal": m, "mass": ms, "label": lab}
            for n, m, ms, lab in zip(names, metals, masses, labels, strict=False)]
    return names, meta


def _metal_panel_file(f: Path) -> dict[str, str]:
    import pandas as pd

    with wrap_errors(f, "panel CSV"):
        df = pd.read_csv(f)
    mcol = next((c for c in METAL_COLUMNS if c in df.columns), None)
    tcol = next((c for c in TARGET_COLUMNS if c in df.columns and c != mcol), None)
    if mcol is None or tcol is None:
        raise ReaderError(f"panel has no metal-tag and target columns (looked for {METAL_COLUMNS[0]!r} / "
                          f"{TARGET_COLUMNS[0]!r}; found {', '.join(map(str, df.columns[:8]))}).", path=f)
    return {str(m).strip(): str(t).strip() for m, t in zip(df[mcol], df[tcol], strict=False)
            if isinstance(m, str) and isinstance(t, str)}


# --------------------------------------------------------------------------- .mcd
def _read_acquisition_pixels(path: str, slide_id: int, acq_id: int) -> np.ndarray:
    readimc = _readimc()
    with readimc.MCDFile(path) as f:
        slide = next(s for s in f.slides if s.id == slide_id)
        acq = next(a for a in slide.acquisitions if a.id == acq_id)
        return f.read_acquisition(acq)


def _lazy(fn, shape, dtype, *args):
    import dask
    import dask.array as da

    return da.from_delayed(dask.delayed(fn, pure=True)(*args), shape=shape, dtype=dtype)


def read_mcd(path: str | os.PathLike, *, panel: str | os.PathLike | None = None,
             acquisitions: list[int] | None = None) -> list[Sample]:
    """Read an IMC ``.mcd`` file: one validated :class:`Sample` per acquisition.

    Parameters
    ----------
    path
        The ``.mcd`` file.
    panel
        Panel CSV mapping metal tags to targets (default: ``panel.csv`` beside the file or one
        folder up; else the acquisitions' own channel labels).
    acquisitions
        Acquisition ids to read (default: all).

    Returns
    -------
    list of Sample
        Named ``<stem>_<id:03d>`` (steinbock's naming). Pixels are read lazily (one chunk per
        acquisition) exactly as ``readimc.MCDFile.read_acquisition`` returns them (float32,
        C, Y, X); pixel size from ``AblationDistanceBetweenShotsX``. ``metadata`` holds the
        acquisition id and description, slide id, panorama id, ROI corners in µm (stage
        coordinates) and ``channel_metadata`` (name, metal, mass, label per channel).

    Raises
    ------
    ReaderError
        The file holds no acquisition with pixel data or cannot be read.
    """
    readimc = _readimc()
    p = require_exists(path, "MCD file")
    out = []
    with wrap_errors(p, "IMC .mcd file", hint="Is it a complete .mcd file? Copy it again."), readimc.MCDFile(p) as f:
        for slide in f.slides:
            for acq in slide.acquisitions:
                if acquisitions is not None and acq.id not in acquisitions:
                    continue
                h, w = acq.height_px, acq.width_px
                if not h or not w or int(acq.metadata.get("DataEndOffset", 0)) <= int(acq.metadata.get("DataStartOffset", 0)):
                    log.warning("%s: acquisition %s (%s) holds no pixel data; skipped", p, acq.id, acq.description)
                    continue
                names, cmeta = _channels(acq, p, panel)
                level0 = _lazy(_read_acquisition_pixels, (acq.num_channels, h, w), np.float32,
                               os.fspath(p), slide.id, acq.id)
                meta = {
                    "platform": "IMC",
                    "acquisition_id": int(acq.id),
                    "acquisition_description": acq.description,
                    "slide_id": int(slide.id),
                    "panorama_id": None if acq.panorama is None else int(acq.panorama.id),
                    "roi_coords_um": None if acq.roi_coords_um is None else [list(map(float, c)) for c in acq.roi_coords_um],
                    "channel_metadata": cmeta,
                }
                s = Sample(name=f"{stem(p)}_{acq.id:03d}", image=[level0], channel_names=names,
                           pixel_size_um=acq.pixel_size_x_um, metadata=meta,
                           paths={"image": os.fspath(p)})
                out.append(s.validate())
    if not out:
        raise ReaderError("the .mcd file holds no acquisition with pixel data.", path=p)
    return out


def read_mcd_panorama(path: str | os.PathLike, panorama_id: int | None = None) -> Sample:
    """A slide panorama of an ``.mcd`` file as an RGB :class:`Sample` (channels red, green, blue).

    Parameters
    ----------
    path
        The ``.mcd`` file.
    panorama_id
        Which panorama (default: the first one that holds an image).

    Returns
    -------
    Sample
        (3, Y, X) uint8 (alpha dropped) as ``readimc.MCDFile.read_panorama`` decodes it;
        ``pixel_size_um`` from the panorama's slide corners and its pixel width;
        ``metadata["corners_um"]`` = the four slide corners (x, y) in µm.

    Raises
    ------
    ReaderError
        The file has no panorama image (with ``panorama_id``).
    """
    readimc = _readimc()
    p = require_exists(path, "MCD file")
    with wrap_errors(p, "IMC .mcd panorama"), readimc.MCDFile(p) as f:
        for slide in f.slides:
            for pano in slide.panoramas:
                if panorama_id is not None and pano.id != panorama_id:
                    continue
                img = f.read_panorama(pano)
                if img is None:
                    continue
                rgb = np.moveaxis(np.asarray(img)[..., :3], -1, 0).copy()
                corners = [(float(pano.metadata[f"SlideX{i}PosUm"]), float(pano.metadata[f"SlideY{i}PosUm"]))
                           for i in (1, 2, 3, 4)]
                width_um = float(np.hypot(corners[1][0] - corners[0][0], corners[1][1] - corners[0][1]))
                px = width_um / rgb.shape[-1] if width_um > 0 else None
                s = Sample(name=f"{stem(p)} {pano.description or f'panorama {pano.id}'}", image=[rgb],
                           channel_names=["red", "green", "blue"], pixel_size_um=px,
                           metadata={"platform": "IMC", "panorama_id": int(pano.id), "corners_um": corners},
                           paths={"image": os.fspath(p)})
                return s.validate()
    raise ReaderError("the .mcd file has no panorama image" + (f" with id {panorama_id}" if panorama_id else "") + ".",
                      path=p)


# --------------------------------------------------------------------------- .txt
def read_imc_txt(path: str | os.PathLike, *, panel: str | os.PathLike | None = None) -> Sample:
    """Read an IMC ``.txt`` export (one acquisition) as a :class:`Sample`.

    Pixels as ``readimc.TXTFile.read_acquisition`` returns them (float32, C, Y, X). IMC text
    exports carry no pixel size; the instrument's 1 µm ablation spacing is assumed only when a
    matching ``.mcd`` beside it says so, otherwise the pixel size is left unknown.

    Parameters
    ----------
    path
        The ``.txt`` file.
    panel
        Panel CSV mapping metal tags to targets (default: ``panel.csv`` beside the file or one
        folder up; else the file's own channel labels).

    Returns
    -------
    Sample
        One sample; ``metadata["channel_metadata"]`` holds name, metal, mass and label per
        channel.

    Raises
    ------
    ReaderError
        The file cannot be read, or ``readimc`` (the ``[imc]`` extra) is not installed.
    """
    readimc = _readimc()
    p = require_exists(path, "IMC .txt file")
    with wrap_errors(p, "IMC .txt file", hint="Is it a complete IMC text export (header Start_push ...)?"), \
            readimc.TXTFile(p) as f:
        img = f.read_acquisition()
        names, cmeta = _channels(f, p, panel)
    px = _pixel_size_from_sibling_mcd(p)
    s = Sample(name=stem(p), image=[img], channel_names=names, pixel_size_um=px,
               metadata={"platform": "IMC", "channel_metadata": cmeta}, paths={"image": os.fspath(p)})
    return s.validate()


def _pixel_size_from_sibling_mcd(txt: Path) -> float | None:
    """Pixel size of the acquisition this ``.txt`` was exported from, when its ``.mcd`` is beside it."""
    import re

    m = re.match(r"^(?P<base>.+)_(?P<desc>[^_]+_\d+)_(?P<id>\d+)$", txt.stem)
    if m is None:
        return None
    mcd = txt.with_name(m["base"] + ".mcd")
    if not mcd.is_file():
        return None
    try:
        readimc = _readimc()
        with readimc.MCDFile(mcd) as f:
            for slide in f.slides:
                for acq in slide.acquisitions:
                    if acq.id == int(m["id"]):
                        return acq.pixel_size_x_um
    except Exception as err:  # noqa: BLE001 - optional metadata
        log.debug("pixel size from %s failed: %s", mcd, err)
    return None
