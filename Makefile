# FaceID Review Desk. Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
PORT ?= 8501

.PHONY: run test lint venv db seed simulate bench clean help

help:
	@echo "make run    - set up, seed demo data if the database is empty, open the desk"
	@echo "make test   - set up and run the whole suite (ruff + pytest, SQLite + PostgreSQL)"
	@echo "make lint   - ruff"
	@echo "make bench  - run the benchmarks in bench/ (numbers go to bench/README.md by hand)"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

db: venv
	$(PY) -m faceid db upgrade

seed: db
	$(PY) -m faceid demo-seed --if-empty

run: seed
	$(PY) scripts/desk.py --server.port $(PORT)

simulate: venv
	$(PY) -m faceid simulate --port 8900

lint: venv
	$(PY) -m ruff check .

test: venv lint
	bash scripts/test.sh

bench: venv
	$(PY) bench/fetch_throughput.py
	$(PY) bench/import_rate.py
	$(PY) bench/queue_query.py
	$(PY) bench/export_speed.py
	$(PY) bench/dashboard_memory.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis artifacts
