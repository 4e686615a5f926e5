"""Adapters between the headless core and napari layers. No Qt here.

This package's public API (what the docks in :mod:`napari_carspatial.widgets` may use; an
import-linter contract forbids them its submodules):

* the review workspace: :func:`workspace_for` (:class:`ProjectWorkspace`: the current reviewer's
  slides of a review project, reads saved through :class:`ReadTarget`) and the disagreement layer
  (:class:`DisagreementView`);
* the per-viewer session: :func:`session_for`, :class:`ViewerSession` (samples, events, colouring,
  curation views, caches, key bindings, reviewer, busy state) and the layer metadata keys;
* layers: :func:`add_sample_layers`, :func:`add_samples_layers`, :func:`sample_to_layer_data`,
  :func:`samples_to_layer_data`, :func:`montage_offsets`, :func:`short_names`, ...;
* colouring (:class:`CellColoring`, column helpers), inspection (:class:`CellIndex`,
  :func:`cell_info`, ...), Shapes-layer regions, the segmentation editing layers, the gating
  preview and :func:`notify`.
"""

from .coloring import (
    CellColoring,
    categories_and_codes,
    column_choices,
    get_coloring,
    is_categorical,
    numeric_values,
    visible_world_rect,
)
from .disagreement import DisagreementView, Step, disagreement_calls, disagreement_key, pair_label
from .gate_preview import POSITIVE_COLOR, PREVIEW_NAME, ColoringPreview, PointsPreview, make_preview
from .inspect import (
    N_NEIGHBORS,
    NEIGHBOR_RADIUS_UM,
    CellIndex,
    CellInfo,
    camera,
    categorical_columns,
    cell_info,
    cell_zoom,
    center_on,
    label_at,
    ring_marker_layer,
)
from .keys import KeyBindings
from .layers import (
    add_sample_layers,
    add_samples_layers,
    channel_plan,
    contrast_limits,
    guess_type_key,
    hover_features,
    montage_offsets,
    prefixes,
    sample_to_layer_data,
    samples_to_layer_data,
    short_names,
    tile_label_data,
)
from .notifications import notify
from .project import (
    ADJUDICATION,
    ASSIGNMENT_COLUMNS,
    COMPARISON,
    READ,
    STATUS_TEXT,
    OpenItem,
    ProjectWorkspace,
    ReadTarget,
    workspace_for,
)
from .selection import ROLE_ROIS, ROLE_SELECT_SHAPES, CurationView
from .session import (
    META_CHANNEL,
    META_ROLE,
    META_SAMPLE,
    ROLE_IMAGE,
    ROLE_LABELS,
    STRUCTURE,
    SampleEntry,
    ViewerSession,
    role_of,
    sample_id_of,
    session_for,
)
from .shapes import layer_polygons_px, selected_polygons_world, shape_polygon_px, shapes_region

__all__ = [
    "META_CHANNEL", "META_ROLE", "META_SAMPLE", "N_NEIGHBORS", "NEIGHBOR_RADIUS_UM", "ROLE_IMAGE",
    "ROLE_LABELS", "ROLE_ROIS", "ROLE_SELECT_SHAPES", "STRUCTURE",
    "POSITIVE_COLOR", "PREVIEW_NAME", "ColoringPreview", "PointsPreview", "make_preview",
    "CellColoring", "CellIndex", "CellInfo", "CurationView", "KeyBindings", "SampleEntry", "ViewerSession",
    "add_sample_layers", "add_samples_layers", "camera", "categorical_columns", "categories_and_codes",
    "cell_info", "cell_zoom", "center_on", "channel_plan", "column_choices", "contrast_limits",
    "get_coloring", "guess_type_key", "hover_features", "is_categorical", "label_at",
    "layer_polygons_px", "montage_offsets", "notify", "numeric_values", "prefixes", "ring_marker_layer",
    "role_of", "sample_id_of", "sample_to_layer_data", "samples_to_layer_data", "selected_polygons_world",
    "session_for", "shape_polygon_px", "shapes_region", "short_names", "visible_world_rect",
    "tile_label_data",
    "ADJUDICATION", "ASSIGNMENT_COLUMNS", "COMPARISON", "READ", "STATUS_TEXT", "DisagreementView", "OpenItem",
    "ProjectWorkspace", "ReadTarget", "Step", "disagreement_calls", "disagreement_key", "pair_label", "workspace_for",
]
