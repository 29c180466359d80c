# Two commands: `make figures` (regenerate every figure) and `make test` (unit tests + every notebook under nbval).
# Both create .venv on first use. In an active conda env made from environment.yml, skip the venv with PYTHON=python.
# Only `PROFILE=paper` (or PUBLISH=1) writes the committed figures/, executed/, runs/ and README table; other profiles
# and `make test` write under build/ alone, so that a check never dirties the checkout.

PROFILE ?= quick
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
ONLY ?=
PUBLISH ?=
# The CPU build of torch lies in /opt/wheels on the development and CI machines; pip looks there when it exists.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
# TORCH=cpu: install torch alone from PyTorch's CPU wheel index first (the package index's torch is the CUDA build,
# several GB), then the rest from the package index. Empty (default): the local wheel folder when it exists.
TORCH ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
PIP := $(VENV)/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt

ifeq ($(PYTHON),$(VENV)/bin/python)
SETUP := $(VENV)/.installed
else
SETUP :=
endif

.PHONY: figures test unit nbval verify verify-quick html lint clean setup
.DEFAULT_GOAL := figures

setup: $(SETUP)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(if $(filter cpu,$(TORCH)),$(PIP) --index-url $(TORCH_CPU_INDEX) torch,)
	$(PIP) $(FIND_LINKS) -e '.[test,dev,book,lab]'
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/pre-commit install >/dev/null || echo "note: pre-commit hooks not installed (run .venv/bin/pre-commit install)"; fi
	touch $@

figures: $(SETUP)
	$(PYTHON) -m dgnlib reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY),) $(if $(PUBLISH),--publish,) \
		$(if $(SCHEDULER),--scheduler $(SCHEDULER),)

test: unit nbval verify-quick

unit: $(SETUP)
	$(PYTHON) -m pytest -p no:cacheprovider tests

# The smoke profile's notebooks, parameterised into build/nbval (outputs in build/nbval/figures). DGN_RUNNER marks the
# kernels as launched by a tool, so that the notebooks keep the injected smoke values (see CONTRIBUTING.md).
nbval: $(SETUP)
	rm -rf build/nbval
	$(PYTHON) -m dgnlib prepare --profile smoke --dest build/nbval
	DGN_RUNNER=nbval DGN_WIDGETS=static DGN_RUN_STORE=$(CURDIR)/build/nbval/runs $(PYTHON) -m pytest -p no:cacheprovider --nbval-lax \
		--nbval-current-env --nbval-cell-timeout=600 build/nbval

# Re-derive the published figures from the committed runs/ (read-only) and compare them with figures/ byte for byte.
verify: $(SETUP)
	$(PYTHON) -m dgnlib verify $(if $(ONLY),--only $(ONLY),)

verify-quick: $(SETUP)
	$(PYTHON) -m dgnlib verify --quick

html: $(SETUP)
	$(PYTHON) -m dgnlib render $(if $(FROM),--from $(FROM),)

lint: $(SETUP)
	$(PYTHON) -m ruff check dgnlib tests bench

clean:
	rm -rf build .pytest_cache

.PHONY: lab help

# The whole companion: rooted at the repository (notebooks/, executed/, figures/ browsable), the front page open.
lab: $(SETUP)
	$(PYTHON) -m jupyterlab --ServerApp.root_dir=$(CURDIR) notebooks/00_index.ipynb

help:
	@echo "make figures [PROFILE=smoke|quick|paper] [ONLY=03,05]   run the notebooks, regenerate the figures (default)"
	@echo "make test                  unit tests, then every notebook under the smoke profile with nbval"
	@echo "make unit | make nbval     one half of make test"
	@echo "make verify [ONLY=06,08]   re-derive the published figures from runs/ and compare them with figures/"
	@echo "make verify-quick          the same for the figures that take seconds (part of make test)"
	@echo "make html [FROM=folder]    reading copy in build/html from executed/ (or e.g. FROM=build/executed/quick)"
	@echo "make lab                   JupyterLab on the whole companion, front page open (sliders in 03 and 04)"
	@echo "make lint                  ruff on dgnlib, tests and bench"
	@echo "make setup [TORCH=cpu]     create .venv and install (TORCH=cpu: torch from PyTorch's CPU index)"
	@echo "make clean                 remove build/"
	@echo "Without the .venv (conda route): add PYTHON=python"
