"""Small per-user settings remembered between sessions (the reviewer's name), in the user config
folder next to the marker panels (``$CARSPATIAL_CONFIG_DIR`` or ``~/.config/napari-carspatial``).

A missing or unreadable file is the same as no settings (logged, never an error: the reviewer
simply types the name again); writes are atomic.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .atomic import atomic_write_text
from .marker_panels import config_dir

log = logging.getLogger(__name__)

#: the settings key of the reviewer's name
REVIEWER_KEY = "reviewer"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings(path: Path | None = None) -> dict:
    """The saved settings (an empty dict when there are none or the file cannot be read)."""
    path = path or settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("user settings %s not read (%s); using defaults", path, err)
        return {}
    return raw if isinstance(raw, dict) else {}


def save_setting(key: str, value, path: Path | None = None) -> Path:
    """Remember ``key = value`` (atomic write; the other settings are kept)."""
    path = path or settings_path()
    data = load_settings(path)
    data[str(key)] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
    return path


def remembered_reviewer(path: Path | None = None) -> str | None:
    """The reviewer name typed last time (None when none was saved)."""
    name = load_settings(path).get(REVIEWER_KEY)
    return (name.strip() or None) if isinstance(name, str) else None


def remember_reviewer(name: str, path: Path | None = None) -> Path:
    """Save the reviewer's name for the next session."""
    return save_setting(REVIEWER_KEY, str(name).strip(), path)
