"""Provenance checksums are computed once per file identity (this process and the user cache),
follow a folder's content (not its own mtime), report progress, and equal hashlib's."""

from __future__ import annotations

import hashlib
import os

import pytest

from napari_carspatial.io import write as w


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    w.clear_checksum_cache()
    yield tmp_path / "cache"
    w.clear_checksum_cache()


def _count_reads(monkeypatch):
    n = [0]
    real = hashlib.sha256

    def counting(*a, **k):
        n[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(hashlib, "sha256", counting)
    return n


def test_file_checksum_once_then_cached_across_processes(tmp_path, cache, monkeypatch):
    f = tmp_path / "image.ome.tif"
    f.write_bytes(os.urandom(3 * 2**20 + 7))
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    want_other = hashlib.sha256(b"other").hexdigest()
    reads = _count_reads(monkeypatch)
    seen = []
    assert w.sha256_file(f, chunk=2**20, progress=lambda d, n: seen.append((d, n))) == want
    assert seen[-1] == (f.stat().st_size, f.stat().st_size) and len(seen) == 4
    assert w.checksums_pending({"image": f}) == 0
    w.clear_checksum_cache()                     # a new process: the user cache still knows it
    assert w.cached_checksum(f) == want
    assert w.sha256_file(f) == want
    assert reads[0] == 1
    # the file changes: a new identity, read again
    f.write_bytes(b"other")
    assert w.cached_checksum(f) is None
    assert w.checksums_pending({"image": f}) == 5
    assert w.sha256_file(f) == want_other
    assert reads[0] == 2


def test_folder_checksum_follows_a_chunk_rewritten_inside(tmp_path, cache):
    z = tmp_path / "mask.zarr"
    (z / "0").mkdir(parents=True)
    (z / "0" / "c").write_bytes(b"1234")
    (z / "zarr.json").write_text("{}")
    a = w.sha256_file(z)
    st = os.stat(z)
    (z / "0" / "c").write_bytes(b"5678")      # same size, the folder's own mtime unchanged
    os.utime(z / "0" / "c", ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns))
    b = w.sha256_file(z)
    assert a != b
    h = hashlib.sha256()
    for rel in ("0/c", "zarr.json"):
        h.update(rel.encode() + b"\0")
        h.update((z / rel).read_bytes())
    assert b == h.hexdigest()


def test_provenance_progress_over_all_parts(tmp_path, cache):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 500)
    seen = []
    prov = w.provenance({"image": a, "mask": b}, progress=lambda d, n: seen.append((d, n)))
    assert prov["image"]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert prov["mask"]["size"] == 500
    assert seen[-1] == (1500, 1500)
    seen.clear()
    w.provenance({"image": a, "mask": b}, progress=lambda d, n: seen.append((d, n)))
    assert seen == []                          # nothing left to read


def test_spatialdata_element_paths_are_checksummed(tmp_path, cache):
    el = tmp_path / "s.zarr" / "tables" / "table"
    el.mkdir(parents=True)
    (el / "zarr.json").write_text("{}")
    prov = w.provenance({"table": f"{tmp_path / 's.zarr'}::tables/table"})
    assert len(prov["table"]["sha256"]) == 64
