# Shadowing — common commands. `make demo` runs the whole system, `make test` runs the tests;
# both set up their virtualenv first (idempotent: only reinstalls when a requirements file changed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Many Python processes start here (Airflow components, task runners): let them reuse compiled bytecode.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help venv demo stop status test test-fast lint format lock drill bench clean

help:
	@echo "make demo    run Shadowing on an emulated AWS region (Airflow UI on http://localhost:8080)"
	@echo "make stop    stop what make demo started"
	@echo "make test    set up and run the whole test suite (starts PostgreSQL and the AWS emulator)"
	@echo "make lint    ruff (with Airflow's AIR rules)"
	@echo "make drill   fresh emulated world: refresh DAGs, then a drill failover DAG (headless); one JSON line"
	@echo "make bench   the benchmarks (slow)"
	@echo "make lock    recompile requirements*.txt from requirements*.in"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/uv pip install --python $(PY) --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) -m shadowing.devstack up

stop:
	@test -x $(PY) && $(PY) -m shadowing.devstack down || true

status: venv
	$(PY) -m shadowing.devstack status

test: venv
	scripts/test.sh

test-fast: venv
	scripts/test.sh -m "not slow and not browser"

lint: venv
	$(VENV)/bin/ruff check include dags plugins tests bench

format: venv
	$(VENV)/bin/ruff format include dags plugins tests bench

lock:
	$(VENV)/bin/uv pip compile requirements.in --universal --python-version 3.11 -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-dev.in --universal --python-version 3.11 -o requirements-dev.txt

drill: venv
	@mkdir -p .shadowing; echo "drill: DAG logs in .shadowing/drill.log" >&2
	@$(PY) -m shadowing failover drill-summary 2> .shadowing/drill.log || (tail -40 .shadowing/drill.log; exit 1)

bench: venv
	$(PY) bench/fingerprint.py
	$(PY) bench/dependencies.py
	$(PY) bench/failover.py

clean: stop
	rm -rf .shadowing
