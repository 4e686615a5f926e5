#!/usr/bin/env bash
# Run the whole suite (unit + GUI) under a virtual X display.
set -euo pipefail
VENV="${1:-.venv}"
export CARSPATIAL_REQUIRE_GUI=1      # GUI tests fail instead of skipping when no display works
export CARSPATIAL_NO_SKIPS=1         # any skipped test fails the run (nothing may hide in CI)
export NAPARI_ASYNC=0 QT_API="${QT_API:-pyqt6}"
# CARSPATIAL_TEST_WORKERS=N runs the suite in N pytest-xdist workers, each on its own Xvfb display
# (tests/conftest.py); unset (the default): one process, as before.
WORKERS=()
if [[ -n "${CARSPATIAL_TEST_WORKERS:-}" ]]; then WORKERS=(-n "$CARSPATIAL_TEST_WORKERS"); fi
exec xvfb-run -a -s "-screen 0 1600x1200x24" "$VENV/bin/pytest" -q -p no:cacheprovider "${WORKERS[@]}" "${@:2}"
