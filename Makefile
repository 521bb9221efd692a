VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint smoke

# the main job: the β × bias demo sweep (every bias × every β, 1 seed), heatmaps and MLflow runs
demo: $(INSTALLED)
	$(PYTHON) sweeps/bias_grid.py --preset demo

# the tests: unit, integration (real Ray, real MLflow) and end-to-end smoke sweeps
test: $(INSTALLED)
	$(PYTHON) -m pytest -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

smoke: $(INSTALLED)
	$(PYTHON) sweeps/bias_grid.py --preset smoke

# first use: make the venv and install the project with its dev extra (torch 2.14.1 comes from this disk)
$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)
