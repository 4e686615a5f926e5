"""Headless readers: OME-TIFF, TIFF + panel, OME-Zarr, masks, cell tables, SpatialData,
steinbock and MCMICRO folders. No napari, no Qt.

Start with :func:`read_sample`; :func:`detect_format` tells whether a path is readable.

The public API is what ``__all__`` lists (documented in the API reference, ``mkdocs.yml``); import it
from this package. Submodules are implementation details: ``_name`` modules always, the others
may move without notice.
"""

from ._dispatch import FORMATS, detect_format, read_sample
from .image import read_image
from .masks import read_mask
from .mcmicro import read_mcmicro
from .omezarr import read_omezarr
from .panel import read_panel
from .spatialdata import read_spatialdata
from .steinbock import read_steinbock
from .tables import IMAGE_COLUMNS, read_table, select_image_rows, table_from_dataframe
from .tiff import ImageData, read_tiff

__all__ = [
    "FORMATS", "IMAGE_COLUMNS", "ImageData", "detect_format", "read_image", "read_mask", "read_mcmicro",
    "read_omezarr", "read_panel", "read_sample", "read_spatialdata", "read_steinbock", "read_table",
    "read_tiff", "select_image_rows", "table_from_dataframe",
]

# curation: saving, recovery, ROI exchange, SpatialData export (issue 4)
from .geojson import read_geojson, rois_from_geojson, rois_to_geojson, write_geojson  # noqa: E402
from .sdata_export import export_spatialdata  # noqa: E402
from .write import (  # noqa: E402
    AutosavePolicy,
    autosave,
    decline_recovery,
    discard_recovery,
    find_recovery,
    proposed_name,
    recover,
    store_provenance,
    table_fingerprint,
    write_table,
)

__all__ += [
    "AutosavePolicy", "autosave", "decline_recovery", "discard_recovery", "table_fingerprint", "export_spatialdata", "find_recovery", "proposed_name",
    "read_geojson", "recover", "rois_from_geojson", "rois_to_geojson", "store_provenance", "write_geojson",
    "write_table",
]

# segmentation correction: chunked mask store and corrected-mask saving (issue 5)
from .mask_store import (  # noqa: E402
    MaskStore,
    corrected_path,
    read_provenance,
    save_corrected_mask,
    working_copy_path,
)

__all__ += ["MaskStore", "corrected_path", "read_provenance", "save_corrected_mask", "working_copy_path"]

# raw IMC through readimc (the [imc] extra), issue 12
from .imc import read_imc_txt, read_mcd, read_mcd_panorama  # noqa: E402

__all__ += ["read_imc_txt", "read_mcd", "read_mcd_panorama"]

# spatial omics: instrument folders through spatialdata-io, SpatialData objects, transcripts (issue 15)
from .cosmx import read_cosmx  # noqa: E402
from .platforms import PLATFORMS, detect_platform, read_merscope, read_platform, read_visium_hd  # noqa: E402
from .spatialdata import Grid, samples_from_sdata  # noqa: E402
from .transcripts import ColumnSpec, build_transcripts  # noqa: E402
from .xenium import read_xenium  # noqa: E402

__all__ += ["PLATFORMS", "ColumnSpec", "Grid", "build_transcripts", "detect_platform", "read_cosmx", "read_merscope",
            "read_platform", "read_visium_hd", "read_xenium", "samples_from_sdata"]
