"""The audit trail as a reviewer reads it (model/audit_display.py)."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pandas as pd

from napari_carspatial.model.audit_display import (
    COLUMNS,
    display_rows,
    ids_text,
    local_time,
    plain,
    zone_name,
)


def test_plain_values_without_json_quotes():
    assert plain('"CAR T"') == "CAR T"
    assert plain("null") == "–"
    assert plain('["Tumor", "Tumor", "CAR T"]') == "Tumor ×2, CAR T"
    assert plain('["CAR T", "CAR T"]') == "CAR T"
    assert plain("true") == "yes"
    assert plain("7") == "7"


def test_ids_and_local_time_with_zone():
    assert ids_text([12, 15, 18]) == "3 cells: 12, 15, 18"
    assert ids_text(list(range(1, 11))) == "10 cells: 1, 2, 3, 4, …"
    assert ids_text([5]) == "1 cell: 5"
    tz = timezone(timedelta(hours=2), "CEST")
    short, full = local_time("2024-05-01T12:03:04+00:00", tz)
    assert short == "14:03:04"
    assert full == "2024-05-01 14:03:04 CEST (UTC+0200)"
    assert zone_name(tz) == "CEST"


def test_display_rows_of_an_audit_frame():
    audit = pd.DataFrame([{"time": "2024-05-01T12:03:04+00:00", "reviewer": "ada", "action": "assign",
                           "cell_ids": "[3, 6, 9]", "column": "cell_type_curated",
                           "old": '["CAR T", "Tumor", "Macrophage"]', "new": '"CAR T"', "note": ""}])
    (row,) = display_rows(audit, UTC)
    assert tuple(row["text"]) == COLUMNS
    assert row["text"]["change"] == "cell_type_curated: CAR T, Tumor, Macrophage → CAR T"
    assert row["text"]["cells"] == "3 cells: 3, 6, 9"
    assert row["tip"]["cells"] == "3, 6, 9"
    assert '"' not in "".join(row["text"].values())
    assert row["cell_ids"] == [3, 6, 9]


def test_plain_of_a_long_list_equals_the_per_value_reference():
    """The memoised list branch gives the text of turning every value into text one by one."""
    import json
    from collections import Counter

    from napari_carspatial.model.audit_display import MISSING

    def reference(values):
        vals = [plain(v) for v in values]
        counts = Counter(vals)
        if len(counts) == 1:
            return vals[0]
        return ", ".join(f"{v} ×{n}" if n > 1 else v for v, n in counts.most_common())

    values = (["Tumor"] * 5000 + ["CAR T"] * 3000 + [None] * 10 + [True, 1, 1.0, float("nan"), ["a", "b"], "null"]
              + ["Macrophage"] * 3000)
    assert plain(json.dumps(values).replace("NaN", "null")) == reference(json.loads(json.dumps(values).replace("NaN", "null")))
    assert plain(values) == reference(values)
    assert plain(["CAR T"] * 10_000) == "CAR T"
    assert plain([]) == MISSING
