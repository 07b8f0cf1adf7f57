# mogulflow: `make run` (demo sync on the sample warehouse and the local sandbox), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AIRFLOW_STAMP := var/airflow/.initialised

.PHONY: install run test test-fast lint format bench clean browser

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -e .
	touch $(STAMP)

# The default AIRFLOW_HOME (var/airflow): migrated metadata DB and the chartmogul_api pool, so that
# `.venv/bin/airflow dags test ...` works straight after `make`.
$(AIRFLOW_STAMP): $(STAMP) scripts/install_airflow_defaults.py
	$(BIN)/python scripts/install_airflow_defaults.py
	env -u AIRFLOW_HOME $(BIN)/airflow db migrate > var/airflow-migrate.log 2>&1 || (tail -n 30 var/airflow-migrate.log; exit 1)
	env -u AIRFLOW_HOME $(BIN)/mogulflow pool
	touch $(AIRFLOW_STAMP)

install: $(STAMP) $(AIRFLOW_STAMP)

run: install
	bash scripts/run_demo.sh

test: install lint browser
	$(BIN)/pytest -q

# The monitoring page's end-to-end test drives Debian's Chromium with Playwright (no browser download).
browser:
	@test -x /usr/bin/chromium || { \
		test "$$(id -u)" = 0 || { echo "/usr/bin/chromium is missing: run (as root) apt-get install chromium fonts-liberation"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; }

test-fast: install
	$(BIN)/pytest -q -m "not slow"

# ruff (style), ruff's Airflow rules with preview ones, and the import layers in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff check --select AIR --preview .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	bash scripts/bench.sh

clean:
	rm -rf var
