# Sluice developer commands. `make dev` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER := $(PYTHON) hack/cluster/cluster.py
export KUBECONFIG := $(CURDIR)/.cluster/kubeconfig

.PHONY: help install cluster cluster-build cluster-down cluster-status dev dev-down test test-unit bench lint crds manifests helm-lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv/ with sluice and the dev tools installed

cluster-build:  ## compile the local control plane into the cache (once per version)
	$(CLUSTER) build

cluster:  ## start the local control plane (idempotent); kubeconfig at .cluster/kubeconfig
	$(CLUSTER) up

cluster-down: dev-down  ## stop the local control plane (and a `make dev` operator), remove its state
	$(CLUSTER) down

cluster-status:  ## show which components run
	$(CLUSTER) status

dev: install  ## local cluster + CRDs + operator + an example pipeline, shown as it progresses
	bash hack/dev.sh

dev-down:  ## stop the operator started by `make dev`
	-@[ -f .cluster/pids/operator.pid ] && kill $$(cat .cluster/pids/operator.pid) 2>/dev/null; rm -f .cluster/pids/operator.pid; echo "operator stopped"

crds: install  ## regenerate crds/ from the pydantic models in operator/sluice/api/
	$(PY) hack/gen_crds.py

manifests: install  ## sync the chart's CRDs, render manifests/ and the docs' values table from helm/sluice
	$(PY) hack/gen_manifests.py

helm-lint: install  ## helm lint the chart in each of its modes (builds helm once, cached)
	$(PY) hack/gen_manifests.py --lint

test: install  ## run the whole test suite (starts the local cluster when needed)
	$(CLUSTER) build
	$(VENV)/bin/pytest

test-unit: install  ## only the fast tests that need no server
	$(VENV)/bin/pytest tests/unit

bench: install  ## benchmarks on their own control plane (no Job controller); table + bench/out/results.json
	$(CLUSTER) build
	$(PY) bench/run.py

lint: install  ## static checks
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/ruff format --check operator tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench/*.py
	$(VENV)/bin/lint-imports
	$(PY) hack/check_complexity.py
	$(PY) hack/gen_manifests.py --lint
	$(VENV)/bin/hadolint Dockerfile
	$(PY) hack/gen_crds.py --check
	$(PY) hack/gen_manifests.py --check

clean:  ## remove the virtualenv and caches (not the control-plane build cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
