"""The one way the plugin tells the user something: a napari notification, also logged. No Qt."""

from __future__ import annotations

import logging

log = logging.getLogger("napari_carspatial")

_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def notify(message: str, level: str = "info") -> None:
    """Show ``message`` as a napari notification of ``level`` (``"info"``, ``"warning"`` or
    ``"error"``) and log it at the same level.

    napari shows notifications in the viewer (and prints them when there is no viewer), so docks,
    adapters and the reader all report through here; no ``print``, no traceback.
    """
    from napari.utils import notifications

    if level not in _LOG_LEVEL:
        raise ValueError(f"level must be one of {', '.join(_LOG_LEVEL)}, got {level!r}")
    log.log(_LOG_LEVEL[level], "%s", message)
    getattr(notifications, f"show_{level}")(message)
