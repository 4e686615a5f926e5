"""Small helpers shared by the readers: path checks, error wrapping, pyramids, file stems."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from ..model import ReaderError, SampleError

log = logging.getLogger("napari_carspatial.io")

#: a level is small enough to stop building a strided pyramid
PYRAMID_MIN_SIZE = 2048

_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".sdata.zarr", ".tiff", ".tif", ".zarr", ".csv", ".h5ad", ".btf", ".qptiff")


def stem(path: str | os.PathLike) -> str:
    """File name without directory and without image/table suffixes (``a.ome.tif`` -> ``a``)."""
    name = os.path.basename(os.fspath(path).rstrip("/\\"))
    low = name.lower()
    for suf in _SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return os.path.splitext(name)[0]


def require_exists(path, what: str) -> Path:
    """Return ``Path(path)`` or raise :class:`ReaderError` if it does not exist."""
    if path is None:
        raise ReaderError(f"no {what} path given.")
    p = Path(path)
    if not p.exists():
        from .write import restore_interrupted  # a .zarr save killed between its two renames

        if restore_interrupted(p):
            return p
        raise ReaderError(f"{what} not found.", path=p, hint="Check the path and that the file was copied completely.")
    return p


@contextlib.contextmanager
def wrap_errors(path, what: str, hint: str | None = None):
    """Turn any third-party exception into a :class:`ReaderError` naming ``path`` and ``what``."""
    try:
        yield
    except SampleError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - we re-raise with context, never swallow
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ReaderError(
            f"could not read {what} ({type(err).__name__}{': ' + msg if msg else ''}).", path=path, hint=hint
        ) from err


def strided_pyramid(level0, *, min_size: int = PYRAMID_MIN_SIZE) -> list:
    """Lazy nearest-neighbour pyramid by striding the last two axes by 2 until <= ``min_size``.

    ``level0`` is a dask array (..., Y, X); returns ``[level0, level0[..., ::2, ::2], ...]``.
    Nothing is computed.
    """
    levels = [level0]
    cur = level0
    while max(cur.shape[-2:]) > min_size:
        cur = cur[..., ::2, ::2]
        levels.append(cur)
    return levels


def unit_to_um(value: float | None, unit: str | None) -> float | None:
    """Convert a length ``value`` in ``unit`` (OME / NGFF spelling) to micrometres; None if unknown."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value) or value <= 0:
        return None
    u = (unit or "µm").strip().lower().replace("μ", "µ")
    factors = {
        "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
        "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
        "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
        "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
        "m": 1e6, "meter": 1e6, "metre": 1e6,
        "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6, "picometer": 1e-6,
    }
    f = factors.get(u)
    return None if f is None else value * f
