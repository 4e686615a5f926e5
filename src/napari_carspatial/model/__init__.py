"""Plain data: Sample, ROIs, conventions. No napari, no Qt."""

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
