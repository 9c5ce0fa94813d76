# tokenrelay — `make up` runs a local stack, `make test` runs every test against a real broker.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install tools up test lint schemas docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@echo "creating $(VENV) and installing tokenrelay with its dev dependencies and its Python client …"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	@$(PY) -m pip install --disable-pip-version-check --progress-bar off -q -e '.[dev]' -e clients/python
	@rm -f $(VENV)/.installed-*
	@touch $@

# Tools the tests drive, built outside the repo (~/.cache/tokenrelay/tools) like the Kafka jars:
# toxiproxy for the fault tests; kubeconform and the core and CRD schemas for tests/deploy;
# Debian's chromium (apt-get, when missing) for the dashboard's browser tests.
tools: install
	@$(PY) -m tests.support.toxiproxy >/dev/null
	@$(PY) -m tests.support.deploy_tools
	@$(PY) -m tests.support.browser

up: install
	@$(VENV)/bin/tokenrelay up

# pytest's exit code 5 means no test ran: that is a failure, not a pass.
test: install tools
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check services schemas tests bench deploy clients examples
	$(VENV)/bin/mypy

schemas: install
	$(PY) -m schemas.export
	$(PY) -m services.core.asyncapi

# docs/configuration.md from the settings classes (a unit test fails when it is stale).
docs: install
	$(PY) -m services.core.settings_doc

# The harness (every scenario against its no-Kafka baseline), then the older per-part figures.
bench: install
	$(VENV)/bin/tokenrelay bench all
	$(PY) -m bench

clean:
	rm -rf $(VENV) .tokenrelay .pytest_cache .mypy_cache .ruff_cache
