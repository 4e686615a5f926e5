"""Building a slide's pyramid cache with progress and cancel, then using it (headless).

A slide stored without a pyramid (a flat OME-TIFF / TIFF export) opens with lazy strided lower
levels: every overview of it reads all of level 0. :mod:`napari_carspatial.io.pyramid_cache`
(engineer perf) writes its lower levels once into an OME-Zarr in the user cache; from then on
``read_image`` reads them from there. A :class:`PyramidJob` is that build for a sample already
open, as a GUI runs it in a thread worker:

* :func:`pyramid_state` says whether a sample has a pyramid of its own, is flat with a cache
  entry, or is flat without one (then a job is worth running);
* ``job.run()`` writes the entry (perf's :func:`~napari_carspatial.io.pyramid_cache.iter_build_pyramid_cache`:
  one band of one channel in memory at a time) and returns the cached levels
  (``[level0, level1, ...]``, level 0 still read from the file); ``job.progress`` / ``job.stage``
  follow it; ``job.cancel()`` from any thread stops it after the current band, leaving nothing
  behind (the temporary folder is removed);
* ``job.store(levels)`` puts the cached levels into ``sample.image`` (same pixels as the strided
  levels they replace: ``level0[:, ::2**k, ::2**k]``, plus the smaller levels the strided pyramid
  stops before).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..model import Sample, SampleError
from ._util import log

__all__ = ["PyramidCancelled", "PyramidJob", "pyramid_state"]

#: :func:`pyramid_state` values
CACHED, FLAT = "cached pyramid", "flat"


class PyramidCancelled(Exception):
    """The pyramid cache build was cancelled (``PyramidJob.cancel()``); nothing was written."""


def _flat_file(sample: Sample) -> Path | None:
    """The TIFF the sample's image was read from when that file has a single level (no pyramid)
    of the same shape as the sample's level 0."""
    from .pyramid_cache import needs_pyramid_cache
    from .tiff import is_tiff, read_tiff

    p = (sample.paths or {}).get("image")
    if not p or not sample.image or not is_tiff(p) or not Path(p).is_file():
        return None
    level0 = sample.image[0]
    if not needs_pyramid_cache(level0):
        return None
    try:
        levels = read_tiff(p).levels
    except Exception as err:  # noqa: BLE001 - a probe: an unreadable file is simply not cached
        log.debug("pyramid state of %s: %s", p, err)
        return None
    if len(levels) != 1 or tuple(levels[0].shape) != tuple(level0.shape):
        return None
    return Path(p)


def pyramid_state(sample: Sample | None) -> str | None:
    """``"cached pyramid"`` (a flat TIFF with a complete cache entry), ``"flat"`` (a flat TIFF
    without one: a :class:`PyramidJob` is worth running) or None (anything else: a file with its
    own pyramid, a small image, a montage, a zarr store, ...)."""
    from .pyramid_cache import cached_levels

    p = None if sample is None else _flat_file(sample)
    if p is None:
        return None
    return CACHED if cached_levels(p, sample.image[0]) is not None else FLAT


class PyramidJob:
    """Build the pyramid cache of ``sample``'s flat image file (see the module docstring).

    Attributes
    ----------
    path
        The image file.
    progress
        Fraction written (0..1).
    stage
        ``"waiting"``, ``"writing"``, ``"done"``, ``"cancelled"`` or ``"failed"``.
    seconds
        Wall time of :meth:`run`.
    """

    def __init__(self, sample: Sample):
        path = _flat_file(sample)
        if path is None:
            raise SampleError("no pyramid cache needed: the image is not a large TIFF without a pyramid.",
                              path=(sample.paths or {}).get("image"))
        self.sample = sample
        self.path = path
        self.level0 = sample.image[0]
        self.progress = 0.0
        self.stage = "waiting"
        self.seconds: float | None = None
        self._cancel = threading.Event()
        self._levels = None

    def cancel(self) -> None:
        """Stop after the current band (thread-safe); :meth:`run` then raises :class:`PyramidCancelled`."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def message(self) -> str:
        name = self.sample.name
        if self.stage == "writing":
            return f"Caching a pyramid of {name} (once; later opens are fast): {int(100 * self.progress)} %…"
        if self.stage == "done" and self._levels is not None:
            return f"Cached a {len(self._levels)}-level pyramid of {name} in {self.seconds:.1f} s."
        if self.stage == "cancelled":
            return f"Caching the pyramid of {name} was cancelled; it is shown from level 0."
        if self.stage == "failed":
            return f"Caching the pyramid of {name} failed; it is shown from level 0."
        return f"Caching a pyramid of {name}…"

    def run(self) -> list:
        """Write the cache entry (blocking; call it in a worker thread) and return the cached
        levels. Raises :class:`PyramidCancelled` when cancelled."""
        from .pyramid_cache import cached_levels, iter_build_pyramid_cache

        if self._cancel.is_set():
            self.stage = "cancelled"
            raise PyramidCancelled(f"caching the pyramid of {self.sample.name} was cancelled")
        self.stage = "writing"
        t0 = time.perf_counter()
        gen = iter_build_pyramid_cache(self.path, self.level0)
        try:
            for frac in gen:
                self.progress = float(frac)
                if self._cancel.is_set():
                    gen.close()            # perf's builder removes its temporary folder
                    self.stage = "cancelled"
                    raise PyramidCancelled(f"caching the pyramid of {self.sample.name} was cancelled")
        except PyramidCancelled:
            raise
        except BaseException:
            self.stage = "failed"
            gen.close()
            raise
        levels = cached_levels(self.path, self.level0)
        if levels is None:
            self.stage = "failed"
            raise SampleError("the pyramid cache was written but cannot be read back.", path=self.path)
        self.seconds = time.perf_counter() - t0
        self._levels = levels
        self.stage = "done"
        log.info("%s: pyramid cache of %d levels in %.1f s", self.sample.name, len(levels), self.seconds)
        return levels

    def store(self, levels=None) -> list:
        """Use the cached levels (default: those :meth:`run` returned) as ``sample.image``."""
        levels = levels if levels is not None else self._levels
        if levels is None:
            raise RuntimeError("nothing cached yet: call run() first")
        if levels[0] is not self.sample.image[0] and tuple(levels[0].shape) != tuple(self.sample.image[0].shape):
            raise SampleError("the cached pyramid does not match the sample's image.", path=self.path)
        self.sample.image = list(levels)
        return self.sample.image
