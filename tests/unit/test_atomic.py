"""model.atomic: temporary file in the same folder, suffix kept, replaced atomically, cleaned up."""

from pathlib import Path

import pytest

from napari_carspatial.model.atomic import atomic_write, atomic_write_text


def test_atomic_write_keeps_suffix_and_replaces(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old", encoding="utf-8")
    seen = []

    def writer(tmp: Path):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp.name.startswith(".out.csv.tmp-")
        assert target.read_text(encoding="utf-8") == "old"  # target untouched while writing
        tmp.write_text("new", encoding="utf-8")

    assert atomic_write(target, writer) == target
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert atomic_write(tmp_path / "f.png", lambda t: t.write_bytes(b"x"), suffix=".tmp.png").exists()
    assert seen


def test_atomic_write_cleans_up_and_keeps_target_on_error(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "ünïcode")

    def broken(tmp: Path):
        tmp.write_text("partial", encoding="utf-8")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, broken)
    assert target.read_text(encoding="utf-8") == "ünïcode"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
