# hastack — the two commands: `make demo` and `make test`. Both set up what they need on a fresh
# Debian 12 machine (run as root for the Debian packages): a virtualenv with hastack and its
# development tools, Debian's fence-agents and ipmitool (outside clients of the simulated BMCs),
# etcd-server (the HA store, run as a local cluster by the tests), chromium and chromium-driver
# (the dashboard's browser test), and for the tests the
# real-Nova and real-Neutron oracles in their own virtualenvs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := fence-agents ipmitool etcd-server chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: all setup debs oracle lint test test-fast demo demo-ha bench chaos screenshot clean

all: test

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "hastack needs Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed

# Debian packages the tests and the demo use: BMC clients, and etcd for the HA store.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	fi

# Real Nova 34 + Placement 16, and real Neutron 29, each in its own virtualenv: the contract
# suite's oracles.
oracle:
	bash scripts/oracle-venv.sh nova
	bash scripts/oracle-venv.sh neutron

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: setup debs oracle lint
	HASTACK_REQUIRE_ORACLE=1 $(BIN)/pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

demo: setup debs
	$(BIN)/python -m hastack demo $(DEMO_ARGS)

# hastack's own HA: a 3-member etcd cluster, the simulator and three controllers; the leader is
# killed mid-recovery. DEMO_ARGS=--keep-running keeps it all up until Ctrl-C.
demo-ha: setup debs
	$(BIN)/python -m hastack demo --ha $(DEMO_ARGS)

# The network benchmark runs real Neutron beside hastack: it needs the Neutron oracle's venv.
bench: setup debs
	bash scripts/oracle-venv.sh neutron
	$(BIN)/python -m bench

# A long fault campaign (make test runs a fixed sample of 300 seeds): N seeded runs, a JSON
# report, and one summary line: "N runs, F faults, C invariant checks, V violations".
N ?= 1000
chaos: setup
	$(BIN)/python -m hastack.chaos run --runs $(N) --report chaos-report.json

# The README's dashboard picture, taken by the browser test (a power loss mid-recovery).
screenshot: setup debs
	HASTACK_SCREENSHOT_DIR=docs $(BIN)/pytest -q tests/functional/test_dashboard.py -k power

clean:
	rm -rf $(VENV) .venv-oracle .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
