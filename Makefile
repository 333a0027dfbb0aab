# One entry point for people and CI. `make run` starts the local stack, `make test` runs everything.
# Both create their virtualenvs on first use, so a fresh clone needs nothing but Python 3.13 and make.
SHELL := /bin/bash
PYTHON313 ?= $(shell for p in python3.13 $(HOME)/.pyenv/versions/3.13.0/bin/python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13; do command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SCAN_VENV := .venv-scan
export SAM_CLI_TELEMETRY := 0
# The build Makefiles under layers/ and functions/ (run by sam build, in a scratch copy) use it too: pass the
# interpreter itself, not a pyenv shim that needs this folder's .python-version.
PYTHON313_GIVEN := $(PYTHON313)
export PYTHON313 := $(shell $(PYTHON313) -c 'import sys; print(sys.executable)' 2>/dev/null)
PYTHON313_VERSION := $(shell $(PYTHON313) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# One line naming the cause, before any virtualenv is made with the wrong Python (and remade on every run).
define check_python313
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found$(if $(PYTHON313_GIVEN),: PYTHON313=$(PYTHON313_GIVEN) does not run,) (set PYTHON313=/path/to/python3.13)"; exit 1; }
	@test "$(PYTHON313_VERSION)" = "3.13" || { echo "PYTHON313=$(PYTHON313_GIVEN) $(if $(PYTHON313_VERSION),is Python $(PYTHON313_VERSION) and not 3.13,does not run) (set PYTHON313=/path/to/python3.13)"; exit 1; }
endef
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# A virtualenv made with another Python (say, before 3.13 was installed) is rebuilt, not reused.
define rebuild_if_not_313
ifneq ($$(wildcard $(1)/bin/python),)
ifneq ($$(shell $(1)/bin/python -c 'import sys; print(sys.version_info[:2] == (3, 13))' 2>/dev/null),True)
$$(info $(1) was made with another Python than 3.13: rebuilding it)
$$(shell rm -rf $(1))
endif
endif
endef
$(foreach venv,$(VENV) $(SAM_VENV) $(SCAN_VENV),$(eval $(call rebuild_if_not_313,$(venv))))

.PHONY: run test lint types iam-simulator unit functional e2e template lint-template build scan bench bench-status bench-purchases chromium clean

$(VENV)/.installed: requirements-dev.txt layers/core/requirements.txt pyproject.toml
	$(check_python313)
	test -x $(VENV)/bin/python || $(PYTHON313) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .   # the stripe-portal-admin command
	rm -rf layers/core/*.egg-info cli/*.egg-info  # build leftovers must not end up in the layer
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	$(check_python313)
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q -r requirements-sam.txt
	touch $@

$(SCAN_VENV)/.installed: requirements-scan.txt
	$(check_python313)
	test -x $(SCAN_VENV)/bin/python || $(PYTHON313) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install -q -r requirements-scan.txt
	touch $@

# The IAM simulator the deploy rehearsal evaluates resources and conditions with (a test tool: tests/iam_simulator).
# Without npm the rehearsal's simulation test is skipped, saying why; everything else runs.
IAM_SIMULATOR := tests/iam_simulator
iam-simulator:
	@if [ -f $(IAM_SIMULATOR)/node_modules/.installed ] && [ $(IAM_SIMULATOR)/node_modules/.installed -nt $(IAM_SIMULATOR)/package-lock.json ]; then :; \
	elif command -v npm >/dev/null 2>&1; then cd $(IAM_SIMULATOR) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "npm not found: the IAM simulation of the deploy rehearsal will be skipped"; fi

run: $(VENV)/.installed
	$(VENV)/bin/python -m devstack

test: $(VENV)/.installed $(SAM_VENV)/.installed $(SCAN_VENV)/.installed chromium iam-simulator
	$(VENV)/bin/ruff check .
	$(MAKE) types
	$(VENV)/bin/python -m pytest
	$(MAKE) lint-template build scan

# Benchmark against the naive baseline; prints a markdown table (not part of `make test`).
bench: $(VENV)/.installed
	$(VENV)/bin/python bench/run.py

# The billing status: warm status requests, webhook to visible status, a 1,000-event burst (a markdown table).
bench-status: $(VENV)/.installed
	$(VENV)/bin/python bench/status.py

# Purchases bound to the signed-in user: a scenario matrix (wrong user, lost, double clicks) and the checkout route.
bench-purchases: $(VENV)/.installed
	$(VENV)/bin/python bench/purchases.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The type checker: the layer and the operator's command in one run, then each function on its own (each is a
# module named `app`). Third-party packages are read from the project's virtualenv.
FUNCTION_DIRS := $(sort $(dir $(wildcard functions/*/app.py)))
types: $(VENV)/.installed
	$(VENV)/bin/mypy --python-executable $(VENV)/bin/python layers/core/portal_gateway cli/portal_admin
	@set -e; for d in $(FUNCTION_DIRS); do $(VENV)/bin/mypy --python-executable $(VENV)/bin/python $$d/app.py; done

scan: $(SCAN_VENV)/.installed
	SCAN_VENV=$(SCAN_VENV) scripts/security-scan.sh

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here), or the browser named by
# CHROMIUM (e.g. CHROMIUM=$$(command -v google-chrome), or Chrome's path on macOS).
export CHROMIUM
chromium:
	@if [ -n "$(CHROMIUM)" ]; then test -x "$(CHROMIUM)" || { echo "CHROMIUM=$(CHROMIUM) is not an executable"; exit 1; }; \
	elif ! command -v chromium >/dev/null 2>&1; then \
	  command -v apt-get >/dev/null 2>&1 || { echo "No chromium: install Chromium or Chrome and set CHROMIUM=/path/to/it"; exit 1; }; \
	  echo "Installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; fi

e2e: $(VENV)/.installed chromium
	$(VENV)/bin/python -m pytest tests/e2e

unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/unit

functional: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/functional

lint-template: $(SAM_VENV)/.installed
	$(SAM) validate --lint --template template.yaml

# A plain `sam build`: the layer's and functions' Makefiles (BuildMethod: makefile) install the arm64 wheels and
# compile the bytecode, so this target is only a shortcut that also checks the artifacts.
build: $(SAM_VENV)/.installed $(VENV)/.installed
	$(SAM) build --template template.yaml
	$(VENV)/bin/python -m pytest -q tests/build

clean:
	rm -rf .aws-sam $(VENV) $(SAM_VENV) $(SCAN_VENV)
