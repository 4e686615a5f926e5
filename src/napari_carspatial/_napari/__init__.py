"""Adapters between the headless model and napari layers. No Qt here."""

from .layers import (
    add_sample_layers,
    add_samples_layers,
    sample_to_layer_data,
    samples_to_layer_data,
)
from .store import samples_in_viewer

__all__ = ["add_sample_layers", "add_samples_layers", "sample_to_layer_data", "samples_to_layer_data", "samples_in_viewer"]
