"""The one way the plugin tells the user something: a napari notification, also logged. No Qt."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("napari_carspatial")

#: the same message again within this many seconds is logged, not shown again (no stack of
#: identical toasts garbling each other over the canvas)
REPEAT_S = 3.0
_last: dict[str, float] = {}

_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def notify(message: str, level: str = "info") -> None:
    """Show ``message`` as a napari notification of ``level`` (``"info"``, ``"warning"`` or
    ``"error"``) and log it at the same level.

    napari shows notifications in the viewer (and prints them when there is no viewer), so docks,
    adapters and the reader all report through here; no ``print``, no traceback. The same
    message within :data:`REPEAT_S` seconds is only logged.
    """
    from napari.utils import notifications

    if level not in _LOG_LEVEL:
        raise ValueError(f"level must be one of {', '.join(_LOG_LEVEL)}, got {level!r}")
    log.log(_LOG_LEVEL[level], "%s", message)
    now = time.monotonic()
    key = f"{level}:{message}"
    if now - _last.get(key, -REPEAT_S - 1) < REPEAT_S:
        return
    _last[key] = now
    if len(_last) > 256:
        for k in sorted(_last, key=_last.get)[:128]:
            del _last[k]
    getattr(notifications, f"show_{level}")(message)
