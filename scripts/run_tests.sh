#!/usr/bin/env bash
# Run the whole suite (unit + GUI) under a virtual X display.
set -euo pipefail
VENV="${1:-.venv}"
export CARSPATIAL_REQUIRE_GUI=1      # GUI tests fail instead of skipping when no display works
export CARSPATIAL_NO_SKIPS=1         # any skipped test fails the run (nothing may hide in CI)
export NAPARI_ASYNC=0 QT_API="${QT_API:-pyqt6}"
# The suite runs in pytest-xdist workers, each on its own Xvfb display (tests/conftest.py): two
# when the machine has two cores or more (9.4 min instead of 15-16 on 2 cores), else one process.
# CARSPATIAL_TEST_WORKERS=N chooses N; 0 or 1: one process, no xdist.
WORKERS_N="${CARSPATIAL_TEST_WORKERS:-$( (( $(nproc 2>/dev/null || echo 1) >= 2 )) && echo 2 || echo 0)}"
WORKERS=()
if [[ "$WORKERS_N" =~ ^[0-9]+$ ]] && (( WORKERS_N > 1 )); then WORKERS=(-n "$WORKERS_N"); fi
exec xvfb-run -a -s "-screen 0 1600x1200x24" "$VENV/bin/pytest" -q -p no:cacheprovider "${WORKERS[@]}" "${@:2}"
