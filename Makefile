# Development tasks. `make demo` runs the back office with demo data;
# `make test` runs the test suite. Both create .venv on first use.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOOTSTRAP_PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: help venv demo test lint check-deploy

help:
	@echo "make demo          migrate, seed demo data, serve on http://127.0.0.1:8000/admin/"
	@echo "make test          run the tests (PYTEST_ARGS=... to pass options)"
	@echo "make lint          ruff, Django system checks, missing migrations"
	@echo "make check-deploy  Django's deployment checks with production settings"
	@echo "make venv          create $(VENV) and install requirements-dev.txt"

venv: $(STAMP)

$(PY):
	@test -n "$(BOOTSTRAP_PYTHON)" || { echo "python3.11 (or python3) not found on PATH" >&2; exit 1; }
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)

# Reinstall only when a requirements file is newer than the last install.
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The settings default to production (DEBUG off, a secret key required);
# the demo is local development and says so.
demo: export DJANGO_DEBUG = 1
demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py runserver 127.0.0.1:8000

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: export DJANGO_DEBUG = 1
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

# Production settings with a throwaway key: checks the settings, not a secret.
check-deploy: venv
	DJANGO_DEBUG=0 \
	DJANGO_SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))')" \
	$(PY) manage.py check --deploy --fail-level WARNING
