# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
TEST_PACKAGES := prometheus prometheus-alertmanager pipx systemd util-linux chromium
# The image is built and run without a Docker daemon (tests/test_image.py).
TEST_PACKAGES += buildah podman runc debootstrap
# Any kubectl renders the Kubernetes manifests; Debian's conflicts with a kubectl installed
# another way (Google Cloud SDK's, for one), so it is installed only when there is none.
TEST_PACKAGES += $(if $(shell command -v kubectl),,kubernetes-client)

.PHONY: run test lint typecheck unit quick tools bench dashboard kubernetes clean

# Debian's python3 has no ensurepip until python3-venv is installed.
$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		rm -rf $(VENV); \
		CI=true scripts/apt-install python3-venv && $(PYTHON) -m venv $(VENV); \
	}
	@$(BIN)/python -m pip install -q --upgrade pip

# Editable, so `make run` after a code change runs the new code without reinstalling.
# setuptools prints a banner on every editable install; it says nothing a user needs here.
QUIET_INSTALL := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	@echo "installing apibalance-exporter into $(VENV)"
	@$(QUIET_INSTALL) -e .
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	@echo "installing apibalance-exporter and its test tools into $(VENV)"
	@$(QUIET_INSTALL) -e '.[test,lint,dashboards]'
	@touch $@ $(VENV)/.run-installed

# The exporter's first log line, "listening", gives the URL to open (url=...).
run: $(VENV)/.run-installed
	@echo "apibalance-exporter: open the url= of the \"listening\" line below (http://localhost:9877/ unless ARGS says otherwise)"
	@if [ -f apibalance.yml ]; then \
		exec $(BIN)/apibalance-exporter --config.file apibalance.yml $(ARGS); \
	else \
		echo "no apibalance.yml here: starting the demo (simulated accounts of every provider)"; \
		exec $(BIN)/apibalance-exporter --demo $(ARGS); \
	fi

tools:
	@scripts/apt-install $(TEST_PACKAGES)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

unit: $(VENV)/.test-installed tools
	$(BIN)/pytest

# The fast loop while changing code: every test but those marked integration (docs/development.md).
quick: $(VENV)/.test-installed
	$(BIN)/pytest -q -m 'not integration'

test: lint typecheck unit

dashboard: $(VENV)/.test-installed
	$(BIN)/python grafana/generate.py
	$(BIN)/python deploy/kubernetes/manifests.py

# The PrometheusRule and dashboard ConfigMap of deploy/kubernetes, from alerts/ and grafana/.
kubernetes:
	$(PYTHON) deploy/kubernetes/manifests.py

bench: $(VENV)/.test-installed
	$(BIN)/python bench/bench.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
