"""Named marker panels ("CAR T: DAPI, PanCK, MSLN, CD3, CAR, CD68"), saved and reused across samples.

Stored as JSON in the user's config folder (``$CARSPATIAL_CONFIG_DIR`` or
``~/.config/napari-carspatial``); writes are atomic.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import atomic_write_text
from .errors import SampleError

BUILTIN_PANELS = {
    "CAR T": ["DAPI", "PanCK", "MSLN", "CD3", "CAR", "CD68"],
    "T cells": ["DAPI", "CD3", "CD4", "CD8", "CAR", "PD-1"],
    "Myeloid": ["DAPI", "CD68", "CD163", "PD-L1"],
    "Tumour & antigen": ["DAPI", "PanCK", "MSLN", "Ki-67"],
    "Exhaustion & activity": ["CD3", "CAR", "PD-1", "LAG-3", "TIM-3", "Ki-67", "GZMB"],
}


@dataclass
class MarkerPanel:
    """A named set of markers with optional colours (napari colormap names)."""

    name: str
    markers: list[str]
    colors: dict[str, str] = field(default_factory=dict)

    def match(self, channel_names: list[str]) -> tuple[list[str], list[str]]:
        """(channels of the sample in this panel, panel markers the sample lacks); case-insensitive."""
        low = {c.lower(): c for c in channel_names}
        found = [low[m.lower()] for m in self.markers if m.lower() in low]
        missing = [m for m in self.markers if m.lower() not in low]
        return found, missing


def config_dir() -> Path:
    base = os.environ.get("CARSPATIAL_CONFIG_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "napari-carspatial"


def panels_path() -> Path:
    return config_dir() / "marker_panels.json"


def load_panels(path: Path | None = None) -> dict[str, MarkerPanel]:
    """Built-in panels overlaid with the user's saved ones."""
    panels = {k: MarkerPanel(k, list(v)) for k, v in BUILTIN_PANELS.items()}
    path = path or panels_path()
    if path.exists():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for item in raw.get("panels", []):
                p = MarkerPanel(str(item["name"]), [str(m) for m in item["markers"]], dict(item.get("colors", {})))
                panels[p.name] = p
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SampleError(f"the saved marker panels could not be read ({err}).", path=path,
                              hint="Fix or delete the file; built-in panels still work.") from None
    return panels


def save_panel(panel: MarkerPanel, path: Path | None = None) -> Path:
    """Add or replace ``panel`` in the user's panel file (atomic write)."""
    path = path or panels_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {}
    if path.exists():
        try:
            for item in json.loads(path.read_text(encoding="utf-8")).get("panels", []):
                saved[item["name"]] = item
        except (OSError, ValueError, KeyError, TypeError):
            saved = {}
    saved[panel.name] = asdict(panel)
    payload = json.dumps({"version": 1, "panels": list(saved.values())}, indent=2)
    return atomic_write_text(path, payload)
