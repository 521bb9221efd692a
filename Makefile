VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint smoke postgresql

# the main job: the β × bias demo sweep (every bias × every β, 1 seed), heatmaps and MLflow runs
demo: $(INSTALLED)
	$(PYTHON) sweeps/bias_grid.py --preset demo

# the tests: unit, integration (real Ray, real MLflow on SQLite and as a server on PostgreSQL) and smoke sweeps
test: $(INSTALLED) postgresql
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

# Debian's PostgreSQL for the tracking-server tests (the tests start and stop their own cluster); needs root
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	  else echo "error: PostgreSQL is missing: sudo apt-get install postgresql" >&2; exit 1; fi; }
