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
PACKAGING_IMAGE ?= $(IMAGE_REGISTRY)/vod-stream-packaging:$(VERSION)
KIND_CLUSTER ?= vod
KIND_CONFIG ?= hack/kind-config.yaml
PYTEST_ARGS ?=
# The data plane (streaming/dataplane) is Rust, built by `pip install` through setuptools-rust:
# rustup's cargo is found in ~/.cargo/bin when it is not on PATH already; two build jobs suit a
# 2-core machine (override: make install CARGO_BUILD_JOBS=8).
DATAPLANE := streaming/dataplane
export PATH := $(PATH):$(HOME)/.cargo/bin
export CARGO_BUILD_JOBS ?= 2

##@ Set-up

.PHONY: help
help: ## List every target with what it does
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: $(STAMP) ## Create .venv and install the three distributions editable (streaming/: vod-stream, builds the Rust data plane; operator/: vod-operator; the root: the dev tooling with its dev extra) and system tools (ffmpeg)

$(STAMP): pyproject.toml streaming/pyproject.toml operator/pyproject.toml tools/install-system-deps.sh $(DATAPLANE)/Cargo.toml $(DATAPLANE)/Cargo.lock $(wildcard $(DATAPLANE)/src/*.rs $(DATAPLANE)/src/*/*.rs)
	bash tools/install-system-deps.sh
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./streaming -e ./operator -e '.[dev]'
	$(PY) -c 'import vod_stream._dataplane' || { echo "make install: the data plane did not build (see pip's output; cargo is needed)" >&2; exit 1; }
	touch $(STAMP)

##@ Quality

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy, promtool check rules (operator alerts), dashboard-linter, mkdocs build --strict, cargo fmt --check and clippy (-D warnings)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	promtool check rules monitoring/rules/operator.rules.yaml
	@$(MAKE) --no-print-directory lint-dashboards
	@$(MAKE) --no-print-directory lint-docs
	cd $(DATAPLANE) && cargo fmt --check && cargo clippy --release --all-targets --features extension-module -- -D warnings

.PHONY: lint-dashboards
lint-dashboards: $(STAMP) ## grafana's dashboard-linter --strict on monitoring/dashboards/*.json (built once from its Go module; exclusions, with reasons, in monitoring/dashboards/.lint)
	@$(PY) -m localcluster build dashboard-linter
	@linter=$$($(PY) -m localcluster which dashboard-linter); \
	for dashboard in monitoring/dashboards/*.json; do \
	  echo "dashboard-linter lint --strict $$dashboard"; \
	  "$$linter" lint --strict "$$dashboard"; \
	done

# The site is built into a temporary folder: lint-docs checks it, nothing is kept.
.PHONY: lint-docs
lint-docs: $(STAMP) ## mkdocs build --strict of the docs/ site (every internal link and anchor checked, links to repository files too)
	@site=$$(mktemp -d); trap 'rm -rf "$$site"' EXIT; \
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$site"

DOCS_ADDR ?= 127.0.0.1:8000

.PHONY: docs
docs: $(STAMP) ## Serve the docs/ site locally with live reload (mkdocs serve on DOCS_ADDR, default 127.0.0.1:8000)
	$(VENV)/bin/mkdocs serve --dev-addr $(DOCS_ADDR)

.PHONY: fmt
fmt: $(STAMP) ## Format the code and apply safe ruff fixes (and cargo fmt)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	cd $(DATAPLANE) && cargo fmt

.PHONY: test
test: $(STAMP) lint test-rust cluster-build images-local ## Install if needed, lint, then run every test tier (Rust units, unit, component, chaos but its two long scenarios, cluster)
	$(PY) -m pytest -m 'not chaos_long' $(PYTEST_ARGS)

.PHONY: test-rust
test-rust: $(STAMP) ## The data plane's own unit tests (cargo test: ranges, conditionals, tokens, slice plans)
	cd $(DATAPLANE) && cargo test --release

.PHONY: test-unit
test-unit: $(STAMP) ## Run the unit tier only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-component
test-component: $(STAMP) ## Run the component tier only (real server processes on 127.0.0.1)
	$(PY) -m pytest tests/component $(PYTEST_ARGS)

.PHONY: test-cluster
test-cluster: $(STAMP) cluster-build images-local ## Run the cluster tier only (real kube-apiserver, real node)
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

.PHONY: test-chaos
test-chaos: $(STAMP) cluster-build ## The chaos scenarios on a control plane of their own (kwok pods): API server killed during 300 applies, etcd frozen 20 s, leader killed every 10 s for 2 min, watches expired by an etcd compaction; prints each timeline
	$(PY) -m pytest tests/chaos -m chaos -s $(PYTEST_ARGS)

.PHONY: test-player
test-player: $(STAMP) ## The player's browser test: Chromium plays a real ladder from a real vod-stream (saves docs/player.png)
	$(PY) -m pytest tests/component/test_player_browser.py -s $(PYTEST_ARGS)

##@ Player

PLAYER := streaming/player
PLAYER_STATIC := streaming/vod_stream/player/static

.PHONY: player-assets
player-assets: ## Re-fetch hls.js (pinned in streaming/player/package-lock.json) with `npm ci` and copy it and its LICENSE into the package (committed: image builds are offline)
	cd $(PLAYER) && npm ci --ignore-scripts --no-audit --no-fund
	cp $(PLAYER)/node_modules/hls.js/dist/hls.min.js $(PLAYER_STATIC)/hls.min.js
	cp $(PLAYER)/node_modules/hls.js/LICENSE $(PLAYER_STATIC)/hls.js.LICENSE.txt

##@ Local cluster (no Docker needed): control plane, kwok, and a real node

.PHONY: cluster-build
cluster-build: $(STAMP) ## Build (once, cached outside the repo) the control plane, kubelet, kube-proxy, etcd, kwok, CoreDNS, metrics-server, helm, SeaweedFS, the Prometheus Operator, KEDA
	@$(PY) -m localcluster build

.PHONY: images-local
images-local: $(STAMP) ## Build the base, pause, streaming and operator images offline (no registry, no default Docker socket), cached by content hash
	@$(PY) -m localcluster images

# Real nodes of `make cluster-up` (each its own containerd, kubelet, kube-proxy and pod range).
CLUSTER_NODES ?= 1

.PHONY: cluster-up
cluster-up: cluster-build images-local ## Start the local cluster (CLUSTER_NODES real nodes, images loaded) and print the `export KUBECONFIG=...` line (eval-able)
	@$(PY) -m localcluster up --nodes $(CLUSTER_NODES)

.PHONY: monitoring-up
monitoring-up: cluster-up ## Install the Prometheus Operator and a Prometheus (local images) into the local cluster; print the port-forward line
	@$(PY) -m localcluster monitoring

.PHONY: keda-up
keda-up: monitoring-up ## Install KEDA (operator + external-metrics API server, local images) into the local cluster: platforms' ScaledObjects then scale on Prometheus
	@$(PY) -m localcluster keda

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the local cluster, remove its state and put the host back as it was
	@$(PY) -m localcluster down

##@ Delivery

DEPLOY_OVERLAY ?= manifests/overlays/default
DEPLOY_WITH ?= kustomize
OPERATOR_NAMESPACE ?= vod-operator-system
# The Kubernetes version `helm template` renders for: the local control plane's pinned one.
HELM_KUBE_VERSION ?= $(shell $(PY) -c 'from localcluster.versions import KUBERNETES_VERSION as v; print(v[1:])')
KIND_KUBECONFIG ?= kind.kubeconfig
# helm as built by the local control plane tooling (falls back to a helm on PATH).
HELM ?= $(shell $(PY) -m localcluster which helm 2>/dev/null || command -v helm || echo helm)

.PHONY: image
image: ## docker build the operator, streaming (serving) and packaging (serving + ffmpeg) images, tagged with the pyproject version
	docker build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .
	docker build -f streaming/Dockerfile --target serving -t $(STREAM_IMAGE) .
	docker build -f streaming/Dockerfile --target packaging -t $(PACKAGING_IMAGE) .

.PHONY: kind-load
kind-load: ## Load the three images into the kind cluster (KIND_CLUSTER, default vod)
	kind load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(STREAM_IMAGE) $(PACKAGING_IMAGE)

.PHONY: deploy
deploy: ## Install CRDs + operator in the current cluster (DEPLOY_WITH=kustomize|helm) and wait
ifeq ($(DEPLOY_WITH),helm)
	$(HELM) upgrade --install vod-operator charts/vod-operator --namespace $(OPERATOR_NAMESPACE) \
	  --create-namespace --wait --timeout 5m
else
	kubectl apply --server-side -k $(DEPLOY_OVERLAY)
	kubectl -n $(OPERATOR_NAMESPACE) rollout status deployment/vod-operator --timeout=300s
endif

.PHONY: undeploy
undeploy: ## Remove the operator (and, with kustomize, the CRDs and every VideoPlatform)
ifeq ($(DEPLOY_WITH),helm)
	$(HELM) uninstall vod-operator --namespace $(OPERATOR_NAMESPACE) --ignore-not-found
else
	kubectl delete -k $(DEPLOY_OVERLAY) --ignore-not-found
endif

.PHONY: e2e-kind
# The install test checks the deployed operator (real image); the other scenarios start their own
# operator process, so the in-cluster one is scaled to 0 meanwhile and restored afterwards.
e2e-kind: $(STAMP) ## Cluster-tier scenarios against kind with real pods (after kind-up image kind-load deploy)
	kind get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	export VOD_TEST_EXISTING_CLUSTER=1 KUBECONFIG=$(abspath $(KIND_KUBECONFIG)); \
	$(PY) -m pytest tests/cluster/test_install.py -m 'not local_control_plane' $(PYTEST_ARGS); \
	kubectl -n $(OPERATOR_NAMESPACE) scale deployment/vod-operator --replicas=0; \
	rc=0; $(PY) -m pytest tests/cluster --ignore=tests/cluster/test_install.py \
	  -m 'not local_control_plane' $(PYTEST_ARGS) || rc=$$?; \
	kubectl -n $(OPERATOR_NAMESPACE) scale deployment/vod-operator --replicas=1; \
	exit $$rc

.PHONY: demo
# DEMO_MODE=auto takes kind when a Docker engine answers, else the local control plane;
# DEMO_MODE=kind or DEMO_MODE=local forces one path.
DEMO_MODE ?= auto
# Either way the demo builds only what it runs (the local path: no S3 server, which only the tests
# use) and times each phase; it ends with a player URL, the port-forward kept up.
demo: $(STAMP) ## The walkthrough: cluster (kind if Docker answers, else local with a real node), operator in-cluster, examples Ready, a video uploaded, packaged into HLS and played (prints the player URL)
	@mode='$(DEMO_MODE)'; \
	if [ "$$mode" = auto ]; then \
	  if docker info >/dev/null 2>&1; then mode=kind; else mode=local; fi; \
	fi; \
	case "$$mode" in \
	kind) \
	  echo "demo: kind path (DEMO_MODE=$(DEMO_MODE))"; \
	  KIND_CLUSTER=$(KIND_CLUSTER) $(PY) -m vod_delivery demo up --kind;; \
	local) \
	  echo "demo: local control plane path (DEMO_MODE=$(DEMO_MODE))"; \
	  $(PY) -m vod_delivery demo up;; \
	*) echo "demo: DEMO_MODE must be auto, kind or local (got '$$mode')" >&2; exit 2;; \
	esac

.PHONY: demo-down
demo-down: $(STAMP) ## Stop what `make demo` started (port-forward, cluster) and remove .demo/
	$(PY) -m vod_delivery demo down

.PHONY: reference
reference: $(STAMP) ## Regenerate the generated docs pages: docs/reference.md from crds/, docs/streaming-settings.md from vod-stream's SPECS (a test fails when either is stale)
	$(PY) -m vod_delivery reference

.PHONY: crd-reference
crd-reference: reference ## Same as `make reference` (kept for old habits)

.PHONY: dashboards
dashboards: $(STAMP) ## Regenerate monitoring/dashboards/*.json from tools/vod_delivery/dashboards.py, then copy them into the chart and kustomize
	$(PY) -m vod_delivery dashboards
	$(PY) -m vod_delivery sync

.PHONY: sync-chart-crds
sync-chart-crds: $(STAMP) ## Copy crds/ and monitoring/dashboards/ into the chart and kustomize; write the version into Chart.yaml and kustomize
	$(PY) -m vod_delivery sync

.PHONY: helm-lint
helm-lint: $(STAMP) cluster-build ## helm lint --strict and helm template the chart
	$(HELM) lint --strict charts/vod-operator
	$(HELM) template vod-operator charts/vod-operator --namespace $(OPERATOR_NAMESPACE) \
	  --kube-version $(HELM_KUBE_VERSION) >/dev/null

##@ Operator

.PHONY: run
run: $(STAMP) ## Run the operator locally against KUBECONFIG (all namespaces; liveness on :8081)
	$(PY) -m vod_operator

.PHONY: golden
golden: $(STAMP) ## Regenerate the operator's golden render files (review the diff like code)
	$(PY) -m tests.unit.operator.update_golden

.PHONY: bench-operator
bench-operator: $(STAMP) cluster-build ## apply->Ready of COUNT platforms (default 50), CPU per platform, idle writes, RSS, a restart, and the floor (OPERATOR_BENCH_ARGS)
	$(PY) tools/bench/operator_bench.py --count $(COUNT) $(OPERATOR_BENCH_ARGS)

##@ Streaming

STREAM_MEDIA ?= media
STREAM_PORT ?= 8080
BENCH_ARGS ?=

.PHONY: run-stream
run-stream: $(STAMP) ## Serve a local folder with vod-stream (STREAM_MEDIA=media, STREAM_PORT=8080; VOD_* settings apply)
	mkdir -p $(STREAM_MEDIA)
	VOD_MEDIA_ROOT=$(abspath $(STREAM_MEDIA)) VOD_PORT=$(STREAM_PORT) $(VENV)/bin/vod-stream serve

.PHONY: bench-stream
bench-stream: $(STAMP) ## nginx (tuned, stock, tuned + buffered JSON log), Go net/http and vod-stream (log off, on) on loopback with wrk (BENCH_ARGS)
	bash tools/install-system-deps.sh nginx wrk
	$(PY) tools/bench/bench_stream.py $(BENCH_ARGS)

MEDIA_BENCH_ARGS ?=
COUNT ?= 50
OPERATOR_BENCH_ARGS ?=
CACHE_BENCH_ARGS ?=

.PHONY: bench-cache
bench-cache: $(STAMP) cluster-build ## The slice cache (S3 origin) vs the file origin and vs nginx proxy_cache + slice, on loopback (CACHE_BENCH_ARGS)
	bash tools/install-system-deps.sh nginx wrk
	$(PY) tools/bench/bench_cache.py $(CACHE_BENCH_ARGS)

.PHONY: bench-media
bench-media: $(STAMP) ## vod-stream package vs one hand-written ffmpeg (60 s 1080p, default ladder); Job start -> Playable with --cluster on a real node
	$(PY) tools/bench/media_bench.py $(MEDIA_BENCH_ARGS)

.PHONY: bench-s3-clients
bench-s3-clients: $(STAMP) ## obstore vs aiobotocore (throwaway venv in .bench/) on a real SeaweedFS: upload MiB/s, 64 KiB GET latency, RSS
	@$(PY) -m localcluster build weed
	$(PY) tools/bench/s3_clients.py $(BENCH_ARGS)

.PHONY: bench
bench: bench-stream bench-cache bench-operator bench-media ## Every benchmark

##@ kind (machines with a Docker engine)

.PHONY: kind-up
kind-up: ## Create a kind cluster from hack/kind-config.yaml
	kind create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 120s

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)
