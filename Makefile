# LLM Distillery — every target documents itself: `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DS_BUILD_OPS := 0
export TORCH_EXTENSIONS_DIR := $(CURDIR)/build/torch_extensions
export RAY_AUTH_MODE := disabled
# pytest-xdist workers for `make test`: the suite mostly waits on service processes and brokers, so two workers
# cut it by a third on two cores (three are slower); each worker starts its own broker, S3 server and Ray, and
# tests isolate themselves by unique topic, schema and key names
TEST_WORKERS ?= 2

.PHONY: help setup lock system-deps demo up test test-fast test-integration test-cluster lint lint-imports protos protos-check dashboards dashboards-check helm-lint bench clean

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: $(BIN)/distillery system-deps ## Create .venv and install the project, all CPU extras and test tools
	@echo "ready: $(BIN)/distillery --help"

$(BIN)/distillery: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	@touch $@

lock: ## Re-resolve constraints.txt (every pinned dependency of .[all,dev]) after editing pyproject.toml
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra all --extra dev --universal --python-version 3.11 \
	  --no-header --no-annotate | grep -vE '^(nvidia-|triton)' \
	  | cat <(sed -n '1,3p' constraints.txt) - > constraints.txt.new && mv constraints.txt.new constraints.txt

system-deps: ## Install Debian tools the tests use (prometheus, promtool) when missing and root
	@if ! command -v promtool >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	      || echo "warning: could not install prometheus; its tests will skip"; \
	  else echo "note: prometheus not installed; its tests will skip"; fi; \
	fi

demo: ## Run the whole pipeline locally: 4 services, synthetic corpus, train, promote, score
	$(BIN)/distillery demo

up: ## Start the four services locally and leave them running (Ctrl-C stops them)
	$(BIN)/distillery up

test: ## Run the whole test suite (unit, integration with real services, e2e); the multi-node ones run in test-cluster
	$(BIN)/pytest -q -n $(TEST_WORKERS) --durations=25 tests -m "not ray_cluster"

test-cluster: ## Run the rendered Helm chart as separate hosts (root: netns, veth, cgroups) through the whole loop, then the 2-node Ray trainer tests (~5 min, capped at 19)
	DISTILLERY_TEST_CLUSTER=1 timeout --signal=TERM --kill-after=30 440 $(PY) -m pytest -q -rfE --tb=short tests/cluster
	timeout --signal=TERM --kill-after=30 680 $(BIN)/pytest -q -rfE --tb=short -m ray_cluster tests/integration/test_trainer_ray_cluster.py

test-fast: ## Run unit tests only
	$(BIN)/pytest -q tests/unit

test-integration: ## Run integration and e2e tests only
	$(BIN)/pytest -q -n $(TEST_WORKERS) tests/integration tests/e2e

lint: lint-imports ## Lint Python sources with ruff, then the layer contracts (.importlinter)
	$(BIN)/ruff check distillery services tests benchmarks

lint-imports: ## Check the layer contracts: entry points > services (independent) > core > contracts
	$(BIN)/lint-imports --config .importlinter

protos: ## Regenerate Python stubs from proto/distillery/v1 into distillery/v1 (committed)
	$(PY) -m distillery.protos generate

protos-check: ## Fail when the committed stubs are stale against proto/
	$(PY) -m distillery.protos check

dashboards: ## Regenerate Grafana dashboards, metrics docs and chart copies of rules/filters from code
	$(PY) -m distillery.dashboards generate

dashboards-check: ## Fail when generated dashboards, metrics docs or chart copies are stale
	$(PY) -m distillery.dashboards check

helm-lint: ## Render the Helm chart offline with every values file and validate it against Kubernetes schemas
	$(BIN)/pytest -q tests/deploy/test_chart.py

bench: ## Run the CPU benchmarks (results in benchmarks/results/)
	$(PY) benchmarks/run_all.py

clean: ## Remove build outputs, caches and local state (keeps .venv)
	rm -rf build .pytest_cache .ruff_cache .distillery
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
