"""napari-carspatial: review multiplexed tissue images from CAR T-cell therapy trials.

Headless core (``model``, ``io``, ``analysis``, ``datasets``) with a thin napari layer on top
(``_napari`` adapters, ``widgets``). Importing this package imports neither napari nor Qt.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-carspatial")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .model import Sample, SampleError  # noqa: E402

__all__ = ["Sample", "SampleError", "__version__"]
