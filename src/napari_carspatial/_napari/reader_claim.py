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
``*.corrected.zarr`` (OME-Zarr labels) and the working mask store ``*.carspatial-edit.zarr``),
and :func:`claim_our_stores` maps those patterns to this plugin when the plugin is activated
(npe2 ``on_activate``: the first time any of its docks, its reader or its sample data runs). A
choice the user made for the same pattern is kept. :func:`claim_store` adds one store's absolute
path, the most specific pattern there is (e.g. a store written under another name). Any other
``.zarr`` (someone else's SpatialData store) still lets the user choose.
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
