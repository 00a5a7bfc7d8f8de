# sharestore: `make run` starts the service with demo data; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint deps system-deps test-system-deps migrate demo bench clean

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

# The console's browser tests drive Debian's Chromium through Playwright (no browser download); the
# RBD driver's tests start a throw-away single-node Ceph (ceph-mon, ceph-osd, the rbd CLI).
test-system-deps: system-deps
	@if ! command -v chromium >/dev/null || ! command -v msgfmt >/dev/null || ! fc-list 2>/dev/null | grep -qi wenquanyi \
	    || ! command -v ceph-osd >/dev/null || ! command -v rbd >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium gettext fonts-wqy-microhei ceph ceph-common; \
	fi

# manage.py creates var/ and the secret key file on first use (importing settings writes nothing);
# createcachetable makes the table django-q2 keeps its clusters' status in (qinfo, /readyz).
migrate: deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable

demo: migrate
	$(PY) manage.py seed_demo

# The console and API are served as in production: gunicorn with WhiteNoise for static files.
# Each process runs in its own session; Ctrl-C or SIGTERM is passed to each main process, which stops
# its own children (qcluster's sentinel and workers, gunicorn's workers: a SIGTERM to qcluster's whole
# group deadlocks its main process); a group that has not stopped after 10 s is killed.
run: demo
	@$(PY) manage.py collectstatic --noinput -v 0
	@$(PY) manage.py create_token --name demo-platform --print-banner --base-url http://$(HOST):$(PORT)
	@$(PY) manage.py ensure_demo_superuser --base-url http://$(HOST):$(PORT)
	@pids=""; \
	  stop() { trap - EXIT INT TERM; for p in $$pids; do kill -TERM $$p 2>/dev/null; done; \
	    for _ in $$(seq 20); do alive=""; for p in $$pids; do kill -0 -- -$$p 2>/dev/null && alive=1; done; \
	      [ -z "$$alive" ] && exit 0; sleep 0.5; done; \
	    for p in $$pids; do kill -KILL -- -$$p 2>/dev/null; done; exit 0; }; \
	  trap stop EXIT INT TERM; \
	  setsid $(PY) manage.py qcluster & pids="$$pids $$!"; \
	  setsid $(PY) -m gunicorn sharestore.wsgi --bind $(HOST):$(PORT) --workers 2 -c python:sharestore.gunicorn_conf & pids="$$pids $$!"; \
	  wait

# The suite runs on PostgreSQL when DATABASE_URL names one, or when a local one accepts the
# `postgres` user over 127.0.0.1 without a password (as CI's does); otherwise on SQLite, where the
# tests that need several connections at once are skipped with the reason.
# The suite runs on as many pytest-xdist workers as the machine has cores (one file per worker at a
# time: a file's fixtures, e.g. the throw-away Ceph cluster, are set up once per worker that runs it).
PYTEST_ARGS ?= -n auto --dist loadfile

test: test-system-deps deps
	@if [ -z "$${DATABASE_URL:-}" ] && command -v psql >/dev/null \
	    && psql -h 127.0.0.1 -U postgres -w -Atc 'select 1' postgres >/dev/null 2>&1; then \
	  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/sharestore; fi; \
	  echo "make test: database $${DATABASE_URL:-sqlite (embedded default)}"; \
	  $(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m pytest $(PYTEST_ARGS)

lint: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
