"""The gating being edited, headless: the current marker and threshold, the gates, the ordered
phenotype rules as typed, applying them, sharing them. No napari, no Qt.

:class:`GatingSession` is what the Gating dock shows (its widgets only mirror this state) and
what a script uses the same way::

    from napari_carspatial.editing import GatingSession

    g = GatingSession(sample, reviewer="jdoe")
    g.set_marker("CD3")
    g.set_scale("asinh", 5.0)
    g.suggest("otsu")                  # or g.set_threshold(200.0)
    g.add_gate()
    g.set_marker("CAR"); g.set_threshold(150.0); g.add_gate()
    g.add_rule("CAR T", "CD3+ CAR+")
    result = g.apply()                 # obs["phenotype_gated"], colours, who / when in uns
    g.apply(other_sample)              # the same gates and rules on another sample
    g.export("gating.yaml")

Rules are kept as the rows the user typed (name, conditions text), so a half-typed row never
loses what was typed; :meth:`GatingSession.rules` parses them and names the bad row. The marker
values are cached per marker; :meth:`GatingSession.invalidate` drops them when the table changed
(the dock calls it on the viewer session's ``table_changed``). All computation is
:mod:`napari_carspatial.analysis.gating`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis.gating import (
    DEFAULT_KEY,
    TRANSFORMS,
    Gate,
    GatingScheme,
    PhenotypeRule,
    export_gating,
    gate_mask,
    histogram,
    import_gating,
    load_gating,
    marker_values,
    parse_conditions,
    store_gating,
    suggest_threshold,
    transform_values,
)
from ..model import Sample

log = logging.getLogger(__name__)

#: bins of the histogram the dock draws
HIST_BINS = 128


@dataclass
class GatingResult:
    """What applying the rules to one sample gave."""

    sample: str
    key: str
    counts: dict[str, int]

    @property
    def n_cells(self) -> int:
        return int(sum(self.counts.values()))

    def lines(self) -> list[str]:
        """``"<phenotype>: <n> (<pct>%)"`` per phenotype."""
        n = max(self.n_cells, 1)
        return [f"{c}: {k:,} ({100.0 * k / n:.1f}%)" for c, k in self.counts.items()]

    def as_dict(self) -> dict:
        return {"sample": self.sample, "key": self.key, "counts": dict(self.counts)}


class GatingSession:
    """Gates and phenotype rules being edited on one sample at a time (see the module docstring).

    Parameters
    ----------
    sample
        The sample shown (its table's markers are gated); change it with :meth:`set_sample`
        (gates and rules stay: they can be applied to any sample with the same markers).
    reviewer
        Who applies the rules (stored with the result).

    Notes
    -----
    ``on_change`` callables get ``what`` (``"sample"``, ``"marker"``, ``"threshold"``,
    ``"gates"``, ``"rules"``, ``"scheme"``, ``"values"``) after each change.
    """

    def __init__(self, sample: Sample | None = None, *, reviewer: str | None = None):
        self.sample: Sample | None = None
        self.reviewer = reviewer
        self.marker: str | None = None
        self.transform = "asinh"
        self.cofactor = 5.0
        self.direction = "above"
        self.threshold = 0.0
        self.gates: dict[str, Gate] = {}
        #: rules as typed: (phenotype name, conditions text), in order
        self.rows: list[tuple[str, str]] = []
        self.default = "Other"
        self.key = DEFAULT_KEY
        self.on_change: list[Callable[[str], None]] = []
        self._values: dict[str, np.ndarray] = {}
        #: the table holds counts (a gene panel: Xenium, CosMx, ...), not mean intensities
        self.counts = False
        #: the matrix gene values are read from (``"counts"`` when the table has that layer)
        self.layer: str | None = None
        if sample is not None:
            self.set_sample(sample)

    def _changed(self, what: str) -> None:
        for cb in list(self.on_change):
            cb(what)

    # ------------------------------------------------------------------ sample and values
    @property
    def table(self):
        return None if self.sample is None else self.sample.table

    def markers(self) -> list[str]:
        """The markers of the sample's table (``var_names``)."""
        t = self.table
        return [] if t is None else [str(v) for v in t.var_names]

    def set_sample(self, sample: Sample | None, *, load_stored: bool = True) -> GatingScheme | None:
        """Gate ``sample`` from now on. With ``load_stored`` and no gates or rules yet, the gating
        stored in its table is loaded (returned)."""
        from ..analysis.genes import is_count_table

        self.sample = sample
        self._values.clear()
        t = None if sample is None else sample.table
        was_counts = self.counts
        self.counts = t is not None and is_count_table(t)
        self.layer = "counts" if t is not None and "counts" in t.layers else None
        if self.counts and not was_counts and not self.gates:   # counts: log(1 + n) suits zero-inflated genes
            self.transform, self.cofactor = "log", 1.0
        elif was_counts and not self.counts and not self.gates:
            self.transform, self.cofactor = "asinh", 5.0
        stored = None
        if sample is not None and sample.table is not None and load_stored and not self.gates and not self.rows:
            try:
                stored = load_gating(sample.table)
            except (ValueError, KeyError, TypeError) as err:   # a damaged stored scheme must not block gating
                log.warning("could not read the gating stored in %s: %s", sample.name, err)
            if stored is not None:
                self.set_scheme(stored, notify=False)
        if self.marker is not None and self.marker not in self._columns():
            self.marker = None
        self._changed("sample")
        return stored

    def _columns(self) -> set[str]:
        t = self.table
        return set() if t is None else {str(v) for v in t.var_names} | {str(c) for c in t.obs.columns}

    def values(self, marker: str | None = None) -> np.ndarray | None:
        """Raw per-cell values of ``marker`` (default: the current one), cached until invalidated."""
        marker = marker or self.marker
        t = self.table
        if t is None or marker is None:
            return None
        v = self._values.get(marker)
        if v is None:
            if marker in t.var_names:   # a gene or marker: one column read from the non-zeros
                from ..analysis.genes import gene_values

                v = gene_values(t, marker, layer=self.layer)
            else:
                v = marker_values(t, marker)
            v = self._values[marker] = v
        return v

    def unit(self, marker: str | None = None) -> str:
        """What the values of ``marker`` are: ``"counts"`` (gene panels), ``"mean intensity"``
        (protein panels) or ``"value"`` (a numeric ``obs`` column)."""
        marker = marker or self.marker
        t = self.table
        if t is not None and marker is not None and marker not in t.var_names:
            return "value"
        return "counts" if self.counts else "mean intensity"

    def threshold_text(self) -> str:
        """The gate in words: ``"IL18 ≥ 1 count"`` for counts, ``"CD3 > 212.5"`` otherwise."""
        if self.marker is None:
            return ""
        t = self.threshold
        if self.unit() == "counts":
            if self.direction == "above":
                k = int(np.floor(t)) + 1
                return f"{self.marker} ≥ {max(k, 0):,} count{'s' if k != 1 else ''}"
            k = int(np.ceil(t)) - 1
            return f"{self.marker} ≤ {max(k, 0):,} count{'s' if k != 1 else ''}"
        return f"{self.marker} {'>' if self.direction == 'above' else '<'} {t:.4g}"

    def invalidate(self, columns: Iterable[str] | None = None) -> bool:
        """The table changed (``columns``, or any when None): drop those cached values. Returns
        whether the current marker's values were dropped."""
        if columns is None:
            hit = self.marker in self._values
            self._values.clear()
        else:
            cols = {str(c) for c in columns}
            hit = self.marker in cols and self.marker in self._values
            for c in cols:
                self._values.pop(c, None)
        if hit:
            self._changed("values")
        return hit

    # ------------------------------------------------------------------ marker and threshold
    def set_marker(self, marker: str) -> None:
        """Gate ``marker``: its gate's settings when it has one, else an Otsu threshold on the
        current scale (the median when that is not possible)."""
        if marker not in self._columns():
            raise KeyError(f"no marker {marker!r} in {self.sample.name if self.sample else 'the sample'}")
        self.marker = marker
        g = self.gates.get(marker)
        if g is not None:   # editing an existing gate: its settings
            self.transform, self.cofactor, self.direction, self.threshold = g.transform, g.cofactor, g.direction, g.threshold
        else:
            self.threshold = self.default_threshold()
        self._changed("marker")

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the finite values of the current marker."""
        v = self.values()
        f = v[np.isfinite(v)] if v is not None else np.empty(0)
        return (float(f.min()), float(f.max())) if f.size else (0.0, 1.0)

    def default_threshold(self) -> float:
        v = self.values()
        finite = v[np.isfinite(v)] if v is not None else np.empty(0)
        if finite.size < 2 or np.ptp(finite) == 0:
            return float(finite[0]) if finite.size else 0.0
        try:
            return suggest_threshold(finite, method="otsu", transform=self.transform, cofactor=self.cofactor)
        except ValueError:
            return float(np.median(finite))

    def set_threshold(self, value: float) -> None:
        """The threshold in raw marker units."""
        self.threshold = float(value)
        self._changed("threshold")

    def set_threshold_display(self, x: float) -> float:
        """Set the threshold from a position on the transformed (histogram) axis; returns it raw."""
        from ..analysis.gating import inverse_transform

        self.set_threshold(float(inverse_transform(np.array([x]), self.transform, self.cofactor)[0]))
        return self.threshold

    def set_scale(self, transform: str, cofactor: float | None = None) -> None:
        """Scale of the histogram and of suggestions: ``linear``, ``asinh`` or ``log`` (+ cofactor)."""
        if transform not in TRANSFORMS:
            raise ValueError(f"transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
        self.transform = transform
        if cofactor is not None:
            if not (np.isfinite(cofactor) and cofactor > 0):
                raise ValueError(f"the cofactor must be a positive number, got {cofactor}")
            self.cofactor = float(cofactor)
        self._changed("threshold")

    def set_direction(self, direction: str) -> None:
        if direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
        self.direction = direction
        self._changed("threshold")

    def current_gate(self) -> Gate | None:
        """The gate the current settings make (None without a marker)."""
        if self.marker is None:
            return None
        return Gate(self.marker, self.threshold, transform=self.transform, cofactor=self.cofactor,
                    direction=self.direction, **({"created_by": self.reviewer} if self.reviewer else {}))

    def positive(self) -> np.ndarray | None:
        """Per cell: positive for the current gate (None without a marker)."""
        v, g = self.values(), self.current_gate()
        return None if v is None or g is None else gate_mask(v, g)

    def count_text(self) -> str:
        """``"<n> positive / <N> cells (<pct>%)"`` for the current gate ("" without one)."""
        m = self.positive()
        if m is None:
            return ""
        n_pos, n = int(m.sum()), int(m.size)
        return f"{n_pos:,} positive / {n:,} cells ({100.0 * n_pos / n if n else 0.0:.1f}%)"

    def suggest(self, method: str = "otsu") -> float:
        """Set the threshold to the Otsu / GMM suggestion on the current scale (raises ValueError)."""
        v = self.values()
        if v is None:
            raise ValueError("choose a sample and a marker first")
        self.set_threshold(suggest_threshold(v, method=method, transform=self.transform, cofactor=self.cofactor))
        return self.threshold

    def histogram(self, *, bins: int = HIST_BINS):
        """(histogram on the current scale, threshold on that scale, cells beyond the axis)."""
        v = self.values()
        if v is None:
            return None
        h = histogram(v, transform=self.transform, cofactor=self.cofactor, bins=bins, clip_percentile=99.9)
        thr_x = float(transform_values(np.array([self.threshold]), self.transform, self.cofactor)[0])
        beyond = int(np.sum(transform_values(v, self.transform, self.cofactor) > h.edges[-1]))
        return h, thr_x, beyond

    # ------------------------------------------------------------------ gates
    def add_gate(self) -> Gate:
        """Keep the current threshold as the gate of the current marker (replaces an earlier one)."""
        g = self.current_gate()
        if g is None:
            raise ValueError("choose a marker from the list first")
        self.gates[g.marker] = g
        self._changed("gates")
        return g

    def remove_gate(self, marker: str) -> None:
        self.gates.pop(marker, None)
        self._changed("gates")

    # ------------------------------------------------------------------ rules
    def add_rule(self, name: str | None = None, conditions: str | None = None) -> int:
        """Append a rule row (default: "phenotype <n>" = every gated marker positive); returns its row."""
        r = len(self.rows)
        name = f"phenotype {r + 1}" if name is None else str(name)
        conditions = " ".join(f"{m}+" for m in self.gates) if conditions is None else str(conditions)
        self.rows.append((name, conditions))
        self._changed("rules")
        return r

    def set_rule(self, i: int, name: str, conditions: str) -> None:
        """Edit row ``i`` as typed."""
        self.rows[i] = (str(name), str(conditions))
        self._changed("rules")

    def remove_rule(self, i: int) -> None:
        if 0 <= i < len(self.rows):
            del self.rows[i]
            self._changed("rules")

    def move_rule(self, i: int, step: int) -> int:
        """Move row ``i`` up (-1) or down (+1); returns its new row (unchanged at the ends)."""
        t = i + step
        if not (0 <= i < len(self.rows) and 0 <= t < len(self.rows)):
            return i
        self.rows[i], self.rows[t] = self.rows[t], self.rows[i]
        self._changed("rules")
        return t

    def rules(self) -> list[PhenotypeRule]:
        """The rules as typed, in order (raises ValueError naming the bad row); empty rows skipped."""
        out = []
        for i, (name, cond) in enumerate(self.rows):
            if not name.strip() and not cond.strip():
                continue
            try:
                out.append(PhenotypeRule(name, parse_conditions(cond), order=i))
            except ValueError as err:
                raise ValueError(f"rule {i + 1} ({name or 'no name'}): {err}") from None
        return out

    def scheme(self) -> GatingScheme:
        """Gates and rules as they are now."""
        return GatingScheme(gates=dict(self.gates), rules=self.rules(), default=self.default.strip() or "Other")

    def set_scheme(self, scheme: GatingScheme, *, notify: bool = True) -> None:
        """Show ``scheme`` (after an import, or the one stored in a sample)."""
        self.gates = dict(scheme.gates)
        self.rows = [(r.name, r.text) for r in scheme.ordered_rules()]
        self.default = scheme.default
        if self.marker in self.gates:
            g = self.gates[self.marker]
            self.transform, self.cofactor, self.direction, self.threshold = g.transform, g.cofactor, g.direction, g.threshold
        if notify:
            self._changed("scheme")

    # ------------------------------------------------------------------ apply and share
    def apply(self, sample: Sample | None = None) -> GatingResult:
        """Apply the gates and rules to ``sample`` (default: the current one): ``obs[key]``, its
        colours and who / when in ``uns`` (:func:`~napari_carspatial.analysis.gating.store_gating`).

        Raises ValueError / KeyError with the problem (no rule, a marker without a gate, ...).
        """
        sample = sample or self.sample
        if sample is None or sample.table is None:
            raise ValueError("load a sample with a cell table first")
        scheme = self.scheme()
        if not scheme.rules:
            raise ValueError("add at least one phenotype rule (for example CAR T = 'CD3+ CAR+')")
        key = self.key.strip() or DEFAULT_KEY
        from ..analysis.genes import is_count_table
        from ..model import edit_log

        layer = "counts" if "counts" in sample.table.layers and is_count_table(sample.table) else None
        pheno = store_gating(sample.table, scheme, key=key, reviewer=self.reviewer, layer=layer)
        codes = np.asarray(pheno.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(pheno.categories))
        res = GatingResult(sample.name, key, {str(c): int(k) for c, k in zip(pheno.categories, counts, strict=False)})
        gates = "; ".join(f"{g.marker} {'>' if g.direction == 'above' else '<'} {g.threshold:.4g}"
                          for g in scheme.gates.values())
        edit_log.record(sample.table, "gating.apply", column=key, new=res.counts, reviewer=self.reviewer,
                        note=f"gates: {gates}; rules: " + "; ".join(f"{r.name} = {r.text}" for r in scheme.ordered_rules())
                        + (f"; values from layer {layer!r}" if layer else ""))
        return res

    def export(self, path) -> Path:
        """Write the gates and rules to a JSON or YAML file."""
        return export_gating(self.scheme(), path)

    def import_(self, path) -> tuple[GatingScheme, list[str]]:
        """Load gates and rules from a file; returns (scheme, markers of its gates missing here)."""
        scheme = import_gating(path)
        cols = self._columns()
        missing = [m for m in scheme.gates if self.table is not None and m not in cols]
        self.set_scheme(scheme)
        return scheme, missing
