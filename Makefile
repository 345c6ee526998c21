# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment and install the pinned dependencies first.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIPELINE := $(BIN)/aegis-pipeline
PROMTOOL := $(BIN)/promtool

.PHONY: install demo test lint clean airflow

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# promtool checks the alert rules in the tests. It comes from Debian's `prometheus` package: only the binary is
# unpacked into the venv (no Prometheus service is installed or started); one already on PATH is linked instead.
$(PROMTOOL): | $(STAMP)
	@set -e; if command -v promtool >/dev/null 2>&1; then ln -sf "$$(command -v promtool)" $@; exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; \
	dpkg-deb -x prometheus_*.deb unpacked; cd - >/dev/null; cp "$$tmp/unpacked/usr/bin/promtool" $@; \
	echo "installed $@ from Debian's prometheus package"

install: $(STAMP) $(PROMTOOL)

# Brings the embedded stack up (unless one is already running), runs the pipeline's main job on it, prints the
# results, and stops the engines it started. KEEP=1 leaves them running for a look around.
demo: install
	@already_running=0; $(PIPELINE) dev status >/dev/null 2>&1 && already_running=1; \
	stop_engines() { if [ "$$already_running" = 0 ] && [ -z "$(KEEP)" ]; then $(PIPELINE) dev down; fi; }; \
	trap stop_engines EXIT; \
	set -e; \
	echo "== starting the embedded stack"; $(PIPELINE) dev up; \
	echo "== engine status"; $(PIPELINE) dev status; \
	echo "== one record through each engine"; $(PIPELINE) dev roundtrip; \
	LOG_JSON=false LOG_LEVEL=ERROR $(PIPELINE) dev demo

# Airflow 3 standalone (API server and UI, scheduler, DAG processor, triggerer) against the embedded stack (started
# if needed): its home and SQLite metadata database under the data dir, this repository's dags/ as its DAG folder.
# It prints the UI's address and the admin password; Ctrl-C stops Airflow (the engines stay up: `dev down`).
AIRFLOW_PORT ?= 8080
airflow: install
	$(PIPELINE) dev up
	@data_dir=$$(realpath -m "$${AEGIS_DATA_DIR:-.aegis}"); \
	export AEGIS_DATA_DIR="$$data_dir" AIRFLOW_HOME="$$data_dir/airflow" AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	  AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$(AIRFLOW_PORT)/execution/ \
	  PATH="$(CURDIR)/$(BIN):$$PATH"; \
	echo "== Airflow: home $$AIRFLOW_HOME, DAGs from $$AIRFLOW__CORE__DAGS_FOLDER, UI http://localhost:$(AIRFLOW_PORT)"; \
	exec $(BIN)/airflow standalone

# ruff, then the floors of the package (pyproject.toml, [tool.importlinter]): an import that breaks a floor fails.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Tests start their own engines in a temporary directory (tests/conftest.py) and stop them afterwards.
test: install lint
	$(BIN)/pytest -q

clean:
	-$(PIPELINE) dev down
	rm -rf $(VENV) .aegis .pytest_cache .ruff_cache
