# make demo   set everything up and stylize the built-in demo shot into demo_out/ (MODEL=/path for a real model)
# make test   set everything up and run the test suite
# make bench  run the benchmarks (plain-library baseline vs stylecomp, as ratios; the GPU one needs CUDA)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SETUP  := $(VENV)/.stylecomp-installed

.PHONY: demo test bench clean

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

test: $(SETUP)
	$(PY) -m pytest

bench: $(SETUP)
	$(PY) benchmarks/plate_io.py
	$(PY) benchmarks/consistency.py
	$(PY) benchmarks/gpu_throughput.py

clean:
	rm -rf $(VENV) demo_out
