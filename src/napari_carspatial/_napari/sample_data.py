"""npe2 sample data: File > Open Sample > CAR T demo (pre / post infusion)."""

from __future__ import annotations

from . import layers as _layers


def _demo(timepoint: str):
    from ..datasets import demo_sample

    return _layers.sample_to_layer_data(demo_sample(timepoint=timepoint))


def demo_post():
    """Synthetic pancreatic tumour biopsy after CAR T infusion."""
    return _demo("post")


def demo_pre():
    """The same patient's biopsy before infusion (no CAR T cells)."""
    return _demo("pre")
