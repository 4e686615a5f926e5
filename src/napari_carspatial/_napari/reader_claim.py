"""Open our own ``.zarr`` stores without napari asking which plugin should read them. No Qt.

napari shows its "Choose reader" dialog when more than one reader plugin is compatible with a
path. For a folder (a ``.zarr`` store is one) npe2 counts *every* reader that accepts
directories, whatever its ``filename_patterns``: napari's builtins, napari-spatialdata
(``*.zarr``, directories), napari-ome-zarr, and ours. npe2 readers have no priority field; the
one public way to choose is napari's reader preference, ``settings.plugins.extension2reader``
(Preferences > Plugins > "File extension readers", what the dialog's "Remember this choice"
writes): fnmatch patterns matched against the real path, a folder with a trailing separator;
the most specific matching pattern wins (``napari.plugins.utils.get_preferred_reader``).

So the stores this plugin writes are named so a pattern can recognise them
(:data:`STORE_SUFFIXES`: the SpatialData export ``*.sdata.zarr``, the corrected masks
``*.corrected.zarr`` (OME-Zarr labels) and the segmentation working copy
``*.carspatial-edit.zarr``), and :func:`claim_our_stores` maps those patterns to this plugin when the plugin is activated
(npe2 ``on_activate``: the first time any of its docks, its reader or its sample data runs). A
choice the user made for the same pattern is kept. :func:`claim_store` adds one store's absolute
path, the most specific pattern there is (e.g. a store written under another name). Any other
``.zarr`` (someone else's SpatialData store) still lets the user choose.

The working copy keeps its ``.zarr`` name but is no zarr (a folder of ``carspatial.json`` and
``.npy`` chunks, :mod:`napari_carspatial.io.mask_store`), and it is no sample either: it holds
only the edited chunks of a mask. It stays claimed so no other plugin fails on it with its own
error; our reader answers it with one line (:func:`working_copy_message`): open its sample and
use the Segmentation dock, or save the corrected mask.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: the npe2 name of this plugin
PLUGIN = "napari-carspatial"
#: name endings of the stores this plugin writes
STORE_SUFFIXES = (".sdata.zarr", ".corrected.zarr", ".carspatial-edit.zarr")


def store_patterns() -> list[str]:
    """The ``extension2reader`` patterns of our stores (folders: a trailing separator, as napari
    matches folders)."""
    return [f"*{suf}{os.sep}" for suf in STORE_SUFFIXES]


def working_copy_message(path) -> str | None:
    """The one line File > Open shows for a segmentation working copy at ``path`` (None: not one).

    A working copy is recognised by its ``carspatial.json`` role (a copy moved aside,
    ``...carspatial-edit.<time>.zarr``, included) or, when that is unreadable, by its name.
    """
    import json

    from ..io.mask_store import ROLE_WORKING, WORKING_SUFFIX

    p = Path(os.fspath(path).rstrip("/\\"))
    if not p.is_dir():
        return None
    meta: dict = {}
    try:
        with open(p / "carspatial.json", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    if meta.get("role") != ROLE_WORKING and not p.name.endswith(WORKING_SUFFIX):
        return None
    source = f" (the unsaved edits of {Path(str(meta['source'])).name})" if meta.get("source") else ""
    return (f"{p}: is a segmentation working copy{source}, not a sample; open its sample and use the "
            "Segmentation dock, or save the corrected mask there (Save table and corrected mask…).")


def _settings(settings=None):
    if settings is not None:
        return settings
    from napari.settings import get_settings

    return get_settings()


def _add(patterns: list[str], settings=None) -> list[str]:
    s = _settings(settings)
    current = dict(s.plugins.extension2reader)
    added = [p for p in patterns if p not in current]
    if added:
        current.update(dict.fromkeys(added, PLUGIN))
        s.plugins.extension2reader = current
    return added


def claim_our_stores(settings=None) -> list[str]:
    """Make this plugin napari's reader of the stores it writes (:data:`STORE_SUFFIXES`).

    Patterns the user already mapped (to any plugin) are left alone. Returns the patterns added.
    """
    added = _add(store_patterns(), settings)
    if added:
        log.info("napari reader preference: %s -> %s", ", ".join(added), PLUGIN)
    return added


def claim_store(path, settings=None) -> str:
    """Make this plugin napari's reader of the store at ``path`` (its absolute real path, the
    most specific pattern napari knows). Returns the pattern."""
    p = os.path.realpath(os.fspath(path))
    if Path(p).is_dir() and not p.endswith(os.sep):
        p += os.sep
    _add([p], settings)
    return p


def preferred_reader(path) -> str | None:
    """The plugin napari would use for ``path`` without asking (its preference), or None."""
    from napari.plugins.utils import get_preferred_reader

    return get_preferred_reader(os.fspath(path))


def activate(context=None) -> None:
    """npe2 ``on_activate``: claim our stores. Never fails the plugin's activation."""
    try:
        claim_our_stores()
    except Exception:   # settings unreadable or read-only: napari just asks, as before
        log.warning("could not set napari's reader preference for carspatial stores", exc_info=True)
