# The two commands of the README: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_REQS := requirements.txt $(wildcard runtimes/requirements.txt)
DEV_REQS := requirements-dev.txt $(wildcard runtimes/requirements-examples.txt)
ALL_REQ_FILES := $(RUN_REQS) $(DEV_REQS)
# A venv's stamp is keyed by the content of the requirement files, never by "already exists".
RUN_STAMP := $(VENV)/.installed-run-$(shell cat $(RUN_REQS) | sha256sum | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat $(RUN_REQS) $(DEV_REQS) | sha256sum | cut -c1-12)

# The embedded default runs with DEBUG on unless the environment says otherwise.
export DEBUG ?= 1
export DJANGO_SETTINGS_MODULE := portal.settings
EMS_WEB_BIND ?= 127.0.0.1:8000
export EMS_WEB_BIND

.PHONY: run setup deps test lint format cli

run: setup
	@echo
	@echo "EMS Portal:   http://$(EMS_WEB_BIND)/"
	@echo "Tenant login: http://$(EMS_WEB_BIND)/accounts/login/   demo / ems-demo-tenant"
	@echo "Operator:     http://$(EMS_WEB_BIND)/admin/   operator / ems-demo-operator"
	@echo "Gateway:      $${EMS_GATEWAY_URL:-http://127.0.0.1:8080}/<service id>/v1/models/m:predict"
	@echo "Health:       http://$(EMS_WEB_BIND)/healthz"
	@echo "Demo:         log in as demo; Getting started -> flowers 1.0 -> Deploy; when Normal: Invoke,"
	@echo "              console 'or a JSON file' -> $${EMS_DATA_DIR:-var}/examples/flower/flower.json -> Send: roses"
	@echo
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/honcho start

setup: $(RUN_STAMP) cli
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ems_bootstrap --demo
	$(PY) manage.py collectstatic --noinput -v 0

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel

$(RUN_STAMP): | $(VENV)/bin/python
	$(PIP) install -q $(addprefix -r ,$(RUN_REQS))
	touch $@

$(DEV_STAMP): | $(VENV)/bin/python
	$(PIP) install -q $(addprefix -r ,$(RUN_REQS) $(DEV_REQS))
	touch $@

deps: $(DEV_STAMP) cli

# The `ems` command (cli/), installed editable into the venv so it runs this checkout's code.
cli: | $(VENV)/bin/python
	$(PIP) install -q --no-deps --no-build-isolation -e .

# The whole suite: every tier this machine can run. Tiers whose real parts are missing are
# skipped here and fail in CI, which sets EMS_REQUIRE_SERVICES=1.
test: $(DEV_STAMP) cli
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
