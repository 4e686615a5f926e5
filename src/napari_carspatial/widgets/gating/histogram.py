"""The gating histogram: counts on the transformed scale with a draggable threshold line (matplotlib)."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ..._napari import POSITIVE_COLOR


class HistogramCanvas(QWidget):
    """Matplotlib histogram on the transformed scale with a draggable threshold line."""

    def __init__(self, theme: dict, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.theme = theme
        self.fig = Figure(figsize=(4.2, 2.7), dpi=100, facecolor=theme["bg"], layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.fig)
        self.canvas.setFixedHeight(260)  # a steady plot: it does not jump when the dock relayouts
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.ax = self.fig.add_subplot(111)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.on_threshold = None  # callback(display_x)
        self._dragging = False
        self.line = None
        self.canvas.mpl_connect("button_press_event", self._press)
        self.canvas.mpl_connect("motion_notify_event", self._motion)
        self.canvas.mpl_connect("button_release_event", self._release)
        self._data = None

    def _style(self, ax):
        from ...analysis.plotting import style_axes

        style_axes(ax, self.theme)

    def plot(self, counts, edges, *, threshold_x: float, above: bool, xlabel: str, title: str,
             log_counts: bool, secondary=None, raw_label: str = ""):
        """Draw the histogram; bins on the positive side of ``threshold_x`` in the positive colour."""
        self._data = {"counts": counts, "edges": edges, "above": above, "xlabel": xlabel, "title": title,
                          "log_counts": log_counts, "secondary": secondary, "raw_label": raw_label}
        self.fig.clear()
        ax = self.ax = self.fig.add_subplot(111)
        self._style(ax)
        centers = 0.5 * (edges[:-1] + edges[1:])
        pos = centers > threshold_x if above else centers < threshold_x
        neg_counts = np.where(pos, 0, counts)
        pos_counts = np.where(pos, counts, 0)
        ax.stairs(neg_counts, edges, fill=True, color=self.theme["neg"], alpha=0.95)
        ax.stairs(pos_counts, edges, fill=True, color=POSITIVE_COLOR, alpha=0.95)
        if log_counts:
            ax.set_yscale("symlog", linthresh=1.0)
        lo, hi = float(edges[0]), float(edges[-1])
        pad = 0.02 * (hi - lo)
        ax.set_xlim(min(lo, threshold_x) - pad, max(hi, threshold_x) + pad)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("cells", fontsize=9)
        ax.set_title(title, fontsize=9, loc="left")
        if secondary is not None:
            sec = ax.secondary_xaxis("top", functions=secondary)
            sec.set_xticks(raw_ticks(secondary, ax.get_xlim()))
            sec.tick_params(colors=self.theme["text"], labelsize=7)
            sec.set_xlabel(raw_label, fontsize=8, color=self.theme["text"])
            for s in sec.spines.values():
                s.set_color(self.theme["fg"])
        self.line = ax.axvline(threshold_x, color="#ff4040", lw=2.0)
        self.canvas.draw_idle()

    # -- interaction: click or drag sets the threshold
    def _press(self, event):
        if event.inaxes is not self.ax or event.xdata is None or event.button != 1:
            return
        self._dragging = True
        self._emit(event.xdata)

    def _motion(self, event):
        if self._dragging and event.inaxes is self.ax and event.xdata is not None:
            self._emit(event.xdata)

    def _release(self, event):
        self._dragging = False

    def _emit(self, x):
        if self.on_threshold is not None:
            self.on_threshold(float(x))


def raw_ticks(functions, xlim, *, min_gap: float = 0.12, max_ticks: int = 7) -> list[float]:
    """Round raw values (1, 2, 5 x 10^k, and 0) spread evenly on the transformed axis.

    On an asinh/log axis, evenly spaced raw ticks pile up at the bright end; these keep at least
    ``min_gap`` of the axis width between labels.
    """
    inverse, forward = functions
    lo, hi = (float(v) for v in xlim)
    width = hi - lo
    if not width > 0:
        return []
    rlo, rhi = float(inverse(np.array([lo]))[0]), float(inverse(np.array([hi]))[0])
    top = max(abs(rlo), abs(rhi), 1e-12)
    k = np.arange(np.floor(np.log10(top)) - 6, np.floor(np.log10(top)) + 1)
    cands = np.unique(np.r_[0.0, (np.array([1.0, 2.0, 5.0])[:, None] * 10.0 ** k[None, :]).ravel()])
    cands = np.r_[-cands[::-1], cands]
    cands = cands[(cands >= rlo) & (cands <= rhi)]
    pos = forward(cands)
    out, last = [], -np.inf
    for c, x in sorted(zip(cands, pos, strict=False), key=lambda t: t[1]):
        if x - last >= min_gap * width:
            out.append(float(c))
            last = x
    if len(out) > max_ticks:
        out = out[:: int(np.ceil(len(out) / max_ticks))]
    return out
