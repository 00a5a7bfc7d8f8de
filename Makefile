# sharestore: `make run` starts the service with demo data; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test deps system-deps test-system-deps migrate demo bench clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

deps: system-deps $(VENV)/.installed

# qemu-utils (qemu-img, qemu-io, qemu-nbd) is the storage engine and libnbd-bin's nbdcopy streams
# images for backup checksums; install them when they are missing.
system-deps:
	@if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null || ! command -v nbdcopy >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-utils libnbd-bin; \
	fi

# The console's browser tests drive Debian's Chromium through Playwright (no browser download).
test-system-deps: system-deps
	@if ! command -v chromium >/dev/null || ! command -v msgfmt >/dev/null || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium gettext fonts-wqy-microhei; \
	fi

migrate: deps
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo

run: demo
	@$(PY) manage.py create_token --name demo-platform --print-banner --base-url http://$(HOST):$(PORT)
	@$(PY) manage.py ensure_demo_superuser --base-url http://$(HOST):$(PORT)
	@trap 'kill 0' EXIT INT TERM; \
	  $(PY) manage.py qcluster & \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: test-system-deps deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
