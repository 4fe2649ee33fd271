# The README's two commands: `make demo` and `make test`. Both create .venv when missing and
# install into it; a stamp file makes the second run skip the install.
# Tests come in tiers (setup.cfg's markers): `make test` runs the default tier (known answers on
# small inputs, minutes); `make test-all` adds the end-to-end tier (whole CLI runs, sweeps,
# PtychoPINN's N = 64 comparisons, processes started and killed), as CI does; the `slow`
# checks stay opt-in (PYTEST_ARGS="-m slow"). Both print the 15 slowest tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Exact pins of the tested environment (torch's CPU build on these machines); see the file.
CONSTRAINTS := constraints.txt
INSTALL_INPUTS := setup.cfg pyproject.toml $(CONSTRAINTS)
# Empty: the demo configuration shipped with the package (compare_models/configs/demo.yaml).
DEMO_CONFIG ?=
DEMO_DIR ?= demo_output
PYTEST_ARGS ?=
DURATIONS := --durations=15
SWEEP_CONFIG ?= configs/dose_sweep.yaml
SWEEP_DIR ?= sweep_output
DOSES ?=
SEEDS ?=
WORKERS ?= 1

.PHONY: demo test test-all install install-dev lint sweep clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# torch, torchvision and ptychi resolve in this one pip command, so pip keeps the CPU torch.
$(VENV)/.installed: $(BIN)/python $(INSTALL_INPUTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[ptychi]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[ptychi,dev]'
	# ptychodus's own product reader/writer, for the HDF5 interop tests. --no-deps skips its
	# GUI/ML stack; load_product/save_product need only numpy, h5py, scipy, scikit-image and
	# pydantic, all installed above (pydantic through ptychi).
	$(PIP) install --quiet --no-deps ptychodus==1.7.0
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(DURATIONS) $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow" $(DURATIONS) $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(BIN)/ptycho-study demo $(if $(DEMO_CONFIG),--config $(DEMO_CONFIG)) --out $(DEMO_DIR)

# make sweep DOSES="1e3 1e4 1e5 1e6" SEEDS="0 1" [CONFIG=configs/dose_sweep.yaml] [WORKERS=2]
sweep: $(VENV)/.installed
	$(BIN)/ptycho-study sweep --config $(or $(CONFIG),$(SWEEP_CONFIG)) --out $(SWEEP_DIR) --workers $(WORKERS) \
		$(if $(DOSES),--doses "$(DOSES)") $(if $(SEEDS),--seeds "$(SEEDS)")

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check compare_models tests scripts

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
