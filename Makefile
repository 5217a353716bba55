# vod-operator: every target a person or CI needs. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REGISTRY ?= ghcr.io/vod-operator
OPERATOR_IMAGE ?= $(IMAGE_REGISTRY)/vod-operator:$(VERSION)
STREAM_IMAGE ?= $(IMAGE_REGISTRY)/vod-stream:$(VERSION)
KIND_CLUSTER ?= vod
KIND_CONFIG ?= hack/kind-config.yaml
PYTEST_ARGS ?=

##@ Set-up

.PHONY: help
help: ## List every target with what it does
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: $(STAMP) ## Create .venv and install the project (editable, dev extras) and system tools (ffmpeg)

$(STAMP): pyproject.toml tools/install-system-deps.sh
	bash tools/install-system-deps.sh
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

##@ Quality

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format the code and apply safe ruff fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: $(STAMP) lint cluster-build ## Install if needed, lint, then run every test tier (unit, component, cluster)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Run the unit tier only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-component
test-component: $(STAMP) ## Run the component tier only (real server processes on 127.0.0.1)
	$(PY) -m pytest tests/component $(PYTEST_ARGS)

.PHONY: test-cluster
test-cluster: $(STAMP) cluster-build ## Run the cluster tier only (real kube-apiserver)
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

##@ Local control plane (no Docker needed)

.PHONY: cluster-build
cluster-build: $(STAMP) ## Build (once, cached outside the repo) kube-apiserver, controller-manager, scheduler, etcd, kwok, helm
	$(PY) -m localcluster build

.PHONY: cluster-up
cluster-up: cluster-build ## Start the local control plane and print the `export KUBECONFIG=...` line
	$(PY) -m localcluster up

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the local control plane and remove its state
	$(PY) -m localcluster down

##@ kind (machines with a Docker engine)

.PHONY: kind-up
kind-up: ## Create a kind cluster from hack/kind-config.yaml
	kind create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 120s

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)
