# make demo   set everything up and stylize the built-in demo shot into demo_out/ (MODEL=/path for a real model)
# make test   set everything up, lint (ruff, mypy) and run the test suite
# make fuzz   the fuzz tests with the long hypothesis profile (2000 cases per kind; minutes)
# make lint   ruff (lint + format check) and mypy, the first part of make test
# make bench  run the benchmarks (plain-library baseline vs stylecomp, as ratios; the GPU one needs CUDA)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SETUP  := $(VENV)/.stylecomp-installed

.PHONY: demo test lint fuzz bench clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "stylecomp needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

# Everything pinned in requirements.lock (torch 2.13.0 CPU wheel), then stylecomp itself.
$(SETUP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(SETUP)

demo: $(SETUP)
	$(VENV)/bin/stylecomp demo --out demo_out $(if $(MODEL),--model "$(MODEL)")

test: lint
	$(PY) -m pytest

# mypy checks core/ and otio_adapters/ under the names users import (pyproject.toml's mypy_path).
lint: $(SETUP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	mkdir -p $(VENV)/mypy-path
	ln -sfn ../../core $(VENV)/mypy-path/stylecomp
	ln -sfn ../../otio_adapters $(VENV)/mypy-path/stylecomp_otio
	$(VENV)/bin/mypy -p stylecomp -p stylecomp_otio

fuzz: $(SETUP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests/test_fuzz.py

bench: $(SETUP)
	$(PY) benchmarks/plate_io.py
	$(PY) benchmarks/style_fidelity.py
	$(PY) benchmarks/consistency.py
	$(PY) benchmarks/light_changes.py
	$(PY) benchmarks/regions.py
	$(PY) benchmarks/gpu_throughput.py
	$(PY) benchmarks/reliability.py

clean:
	rm -rf $(VENV) demo_out
