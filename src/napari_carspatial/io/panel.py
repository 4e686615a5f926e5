"""Channel panels: steinbock ``panel.csv``, cytomapper ``panel.csv``, MCMICRO ``markers.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import SampleError
from ._util import log, require_exists, wrap_errors

#: columns holding the channel name, in order of preference
NAME_COLUMNS = ("name", "marker_name", "Name", "marker", "Marker", "target", "Target", "channel_name", "Channel")
#: file names searched for beside an image (and one folder up)
PANEL_FILES = ("panel.csv", "markers.csv")


def read_panel(path: str | os.PathLike) -> list[str]:
    """Channel names from a panel CSV, in image channel order.

    Parameters
    ----------
    path
        A steinbock ``panel.csv`` (rows with ``keep == 1``, column ``name``), a cytomapper
        ``panel.csv`` (ordered by ``channel_index_0based``), an MCMICRO ``markers.csv``
        (``marker_name``) or any CSV with one of the columns in :data:`NAME_COLUMNS`.

    Returns
    -------
    list of str
        One name per image channel.

    Raises
    ------
    SampleError
        The file cannot be read or has no column naming the channels.
    """
    import pandas as pd

    p = require_exists(path, "panel file")
    with wrap_errors(p, "panel CSV"):
        df = pd.read_csv(p)
    col = next((c for c in NAME_COLUMNS if c in df.columns), None)
    if col is None:
        raise SampleError(
            f"panel has no channel-name column (looked for {', '.join(NAME_COLUMNS[:4])}; found "
            f"{', '.join(map(str, df.columns[:8]))}).",
            path=p,
            hint="Add a 'name' column with one marker name per image channel.",
        )
    if "keep" in df.columns:  # steinbock: only kept channels are in the image
        keep = pd.to_numeric(df["keep"], errors="coerce").fillna(0).to_numpy() == 1
        df = df.loc[keep]
    for idx_col in ("channel_index_0based", "channel_index", "channel_number", "frame_1based"):
        if idx_col in df.columns:
            order = pd.to_numeric(df[idx_col], errors="coerce").to_numpy()
            if np.all(np.isfinite(order)):
                df = df.iloc[np.argsort(order, kind="stable")]
            break
    names = df[col].astype(str).str.strip().tolist()
    return names


def find_panel(image_path: str | os.PathLike) -> Path | None:
    """A panel file beside ``image_path`` or in its parent folder, else ``None``."""
    p = Path(image_path)
    folder = p if p.is_dir() else p.parent
    for d in (folder, folder.parent):
        for name in PANEL_FILES:
            cand = d / name
            if cand.is_file():
                return cand
    return None


def names_from_panel(panel: str | os.PathLike, n_channels: int, image_path) -> list[str]:
    """Read ``panel`` and check it has exactly ``n_channels`` rows (else :class:`SampleError`)."""
    names = read_panel(panel)
    if len(names) != n_channels:
        raise SampleError(
            f"panel {os.fspath(panel)} lists {len(names)} channels but image {os.fspath(image_path)} "
            f"has {n_channels} channels.",
            path=panel,
            hint="The panel needs one row (with keep=1 for steinbock) per image channel, in channel order.",
        )
    log.debug("channel names for %s from panel %s", image_path, panel)
    return names
