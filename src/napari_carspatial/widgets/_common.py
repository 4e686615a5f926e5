"""Small pieces every dock uses."""

from __future__ import annotations

from collections.abc import Callable

from .._napari import store


def refill_sample_combo(combo, viewer, *, where: Callable | None = None,
                        label: Callable | None = None) -> tuple[bool, dict]:
    """Fill ``combo`` with the viewer's samples (those passing ``where``), keeping the selection.

    Items are the sample names (or ``label(sample)``) with the sample id as data. The combo is
    only rebuilt when its samples or labels changed, with signals blocked. Returns
    ``(selection_changed, samples)`` so the dock can react once.
    """
    samples = {sid: s for sid, s in store.samples_in_viewer(viewer).items() if where is None or where(s)}
    texts = [label(s) if label else s.name for s in samples.values()]
    current = combo.currentData()
    have = [combo.itemData(i) for i in range(combo.count())]
    have_texts = [combo.itemText(i) for i in range(combo.count())]
    if have != list(samples) or have_texts != texts:
        combo.blockSignals(True)
        combo.clear()
        for sid, text in zip(samples, texts, strict=False):
            combo.addItem(text, sid)
        idx = combo.findData(current)
        combo.setCurrentIndex(idx if idx >= 0 else (0 if samples else -1))
        combo.blockSignals(False)
    return combo.currentData() != current, samples
