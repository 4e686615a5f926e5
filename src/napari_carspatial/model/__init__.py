"""Plain data: Sample, ROIs, conventions. No napari, no Qt.

The public API is what ``__all__`` lists (documented in the API reference, ``mkdocs.yml``); import it
from this package. Submodules are implementation details: ``_name`` modules always, the others
may move without notice.
"""

from .conventions import (
    INSTANCE_KEY,
    REGION_KEY,
    SPATIAL_KEY,
    UNS_KEY,
    colors_key,
    get_table_link,
    instance_ids,
    pixel_size_um,
    set_pixel_size_um,
    set_table_link,
    spatial_to_yx,
    yx_to_spatial,
)
from .edit_log import EDIT_LOG_KEY, default_reviewer, get_log, record
from .errors import ReaderError, SampleError
from .mask_stats import label_stats
from .roi import ROI, ROI_CLASSES
from .sample import CLINICAL_KEYS, Sample

__all__ = [
    "EDIT_LOG_KEY", "default_reviewer", "get_log", "record",
    "CLINICAL_KEYS", "INSTANCE_KEY", "REGION_KEY", "ROI", "ROI_CLASSES", "SPATIAL_KEY", "UNS_KEY",
    "ReaderError", "Sample", "SampleError", "colors_key", "get_table_link", "instance_ids",
    "label_stats", "pixel_size_um", "set_pixel_size_um", "set_table_link", "spatial_to_yx", "yx_to_spatial",
]

# types that public functions and sessions take or return (API reference, issue 11)
from .curation import Change, Command, Curation  # noqa: E402
from .points import Transcripts  # noqa: E402

__all__ += ["Change", "Command", "Curation", "Transcripts"]
