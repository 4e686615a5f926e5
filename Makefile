# Two commands for a fresh machine:
#   make demo   -> creates .venv, installs the plugin, opens napari on the bundled demo sample
#   make test   -> creates .venv, installs test deps (and Xvfb/Mesa when root), runs lint + all tests
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-unit bench docs install install-latest clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel
	$(PY) -m pip install -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

# the newest versions pyproject.toml allows (to refresh constraints.txt)
install-latest:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel
	$(PY) -m pip install -e ".[all,test]"

install: $(STAMP)

demo: $(STAMP)
	bash scripts/ensure_display.sh --check-only
	$(VENV)/bin/carspatial demo

test: $(STAMP)
	bash scripts/ensure_display.sh
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	bash scripts/run_tests.sh $(VENV)

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

# the documentation site with the API reference, into site/ (warnings fail, as in the tests)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	bash scripts/ensure_display.sh
	QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1200x24" $(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
