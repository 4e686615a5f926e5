"""Shared fixtures: where the real data lives, and the GUI policy.

Real data nobody on this project made lives in ``../shared/data/real`` relative to the project
root. Tests that need it skip with a clear reason where it is absent (outside this setup).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


# Property-based tests explore new random examples on a developer's machine, but CI runs the same
# examples every time (a failure there must be reproducible, not a lottery). Examples found to fail
# are pinned with @example in the test.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CARSPATIAL_NO_SKIPS"):
    _hyp_settings.load_profile("ci")


def _real(sub: str) -> Path:
    p = REAL / sub
    if not p.exists():
        pytest.skip(f"real data folder {p} is absent (it ships only with the project's shared/ folder)")
    return p


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    return _real("")


@pytest.fixture(scope="session")
def cytomapper_dir() -> Path:
    return _real("cytomapper_pancreas_imc")


@pytest.fixture(scope="session")
def steinbock_dir() -> Path:
    return _real("steinbock_imc_testdata")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and folder under ``root``."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _private_user_dirs(config) -> None:
    """The run's own cache and config folders (recovery files, demo and pyramid caches, working
    copies, remembered settings) unless the caller chose some: a test never reads what another run,
    or the developer's own napari, left in ``~/.cache`` / ``~/.config`` (a stale recovery file there
    would offer itself to a test that expects none). Tests that need their own folder still set
    ``CARSPATIAL_CACHE_DIR`` / ``CARSPATIAL_CONFIG_DIR`` (monkeypatch) as before. Subprocesses of
    the tests inherit the variables."""
    import tempfile

    # a pytest-xdist worker inherits the controller's environment: it makes its own folders for
    # the variables the controller made (named in _CARSPATIAL_TESTS_OWN_DIRS), never shares them
    inherited = set(filter(None, os.environ.get("_CARSPATIAL_TESTS_OWN_DIRS", "").split(",")))
    made, names = [], []
    for var in ("CARSPATIAL_CACHE_DIR", "CARSPATIAL_CONFIG_DIR"):
        if var in inherited or not os.environ.get(var):
            d = tempfile.mkdtemp(prefix=f"carspatial-tests-{var[11:-4].lower()}-")
            os.environ[var] = d
            made.append(d)
            names.append(var)
    os.environ["_CARSPATIAL_TESTS_OWN_DIRS"] = ",".join(names)
    config._carspatial_private_dirs = made


def pytest_sessionstart(session):
    session.config._carspatial_real_snapshot = _snapshot(REAL)
    _private_user_dirs(session.config)


def _check_real_data_untouched(session) -> None:
    """Fail the run when a test created, changed or removed anything in the shared real data.

    Tests run as root in CI, so read-only permission bits do not protect that folder.
    """
    before = getattr(session.config, "_carspatial_real_snapshot", None)
    if before is None:
        return
    after = _snapshot(REAL)
    changed = sorted(set(before) ^ set(after)) + sorted(k for k in set(before) & set(after)
                                                        if before[k] != after[k] and before[k][0] != -1)
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"Tests modified the shared real data in {REAL}:", red=True)
            for k in changed[:20]:
                reporter.write_line(f"  {k}")
        session.exitstatus = 1


def pytest_sessionfinish(session, exitstatus):
    _check_real_data_untouched(session)
    _check_no_skips(session)
    import shutil

    for d in getattr(session.config, "_carspatial_private_dirs", []):
        shutil.rmtree(d, ignore_errors=True)


def _check_no_skips(session):
    """With CARSPATIAL_NO_SKIPS=1 (set by ``make test``, so in CI) any skipped test fails the run.

    Optional dependencies (squidpy, spatialdata) and the real data are present in CI; a skip
    there would hide a test that did not run.
    """
    if not os.environ.get("CARSPATIAL_NO_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CARSPATIAL_NO_SKIPS: {len(skipped)} test(s) were skipped; failing the run:", red=True)
        for rep in skipped[:20]:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else rep.longrepr}")
        session.exitstatus = 1


# napari runs a full gc.collect() every time a layer leaves a viewer that has a canvas
# (napari/_vispy/canvas.py, _clean_and_update_scenegraph), so closing a viewer of N layers costs
# N full collections of the whole test process's heap (napari, Qt, dask, squidpy, every module
# fixture): seconds per GUI test. Objects that existed before the test are frozen (moved out of
# the collector's reach) for its duration; everything the test makes is collected as before.
# Every _GC_EVERY-th such test first runs one full collection unfrozen, so garbage left by earlier
# tests never piles up.
_GC_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "qtbot"}
_GC_EVERY = 25
_gc_tests = 0


@pytest.fixture(autouse=True)
def _frozen_gc_for_viewers(request):
    import gc

    if not _GC_FIXTURES.intersection(request.fixturenames):
        yield
        return
    global _gc_tests
    _gc_tests += 1
    if _gc_tests % _GC_EVERY == 0:
        gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# Under pytest-xdist (``-n 2``) each worker gets its own virtual display: GUI tests on one shared
# display take each other's keyboard focus and window activation (tests/gui/test_keys.py checks
# that focus activates a dock). The worker starts Xvfb before anything imports Qt (test modules are
# imported after pytest_configure) and stops it at the end.
_worker_xvfb = None


def pytest_configure(config):
    global _worker_xvfb
    if not os.environ.get("PYTEST_XDIST_WORKER") or not os.environ.get("DISPLAY"):
        return
    import shutil
    import subprocess

    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return                                    # the shared display (xvfb-run's) then
    proc = subprocess.Popen([xvfb, "-displayfd", "1", "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    number = proc.stdout.readline().decode().strip()
    if not number.isdigit():
        proc.kill()
        raise pytest.UsageError(f"pytest-xdist worker: Xvfb did not start ({number!r})")
    _worker_xvfb = proc
    os.environ["DISPLAY"] = f":{number}"


def pytest_unconfigure(config):
    global _worker_xvfb
    if _worker_xvfb is not None:
        _worker_xvfb.terminate()
        _worker_xvfb.wait(timeout=10)
        _worker_xvfb = None
