# Kubenova's developer entry points. `make up` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help venv up dev-up down images test test-unit test-integration test-e2e lint format
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml hack/bootstrap.sh hack/install-go.sh
	hack/bootstrap.sh
	@touch $@

venv: $(VENV)/.installed ## create .venv with kubenova and its dev tools

up: venv ## the local cluster, Kubenova installed in it with its Helm chart, and a demo instance
	hack/up.sh

dev-up: venv ## the local cluster with the operator and agent as host processes (what `make bench` measures)
	hack/dev-up.sh

images: venv ## build Kubenova's container images and push them to the registry on this machine
	hack/registry.sh start
	hack/images/build.sh

down: ## stop what `make up` or `make dev-up` started
	hack/down.sh

test: venv ## bring up what the tests need and run every test (unit, integration, e2e)
	hack/test.sh

test-unit: venv ## unit tests only (no services)
	$(VENV)/bin/pytest -q tests/unit

lint: venv ## ruff check, ruff format --check, mypy --strict, import-linter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/kubenova node-agent/kubenova_agent hack/kube/pki.py hack/guest/make-configdrive.py
	$(VENV)/bin/lint-imports

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: bench bench-migration bench-ec2 bench-density bench-scale
bench: venv ## benchmarks on the running `make dev-up` stack: scheduler (1000 filling 100 hosts: 5 bursts, paced 10/s and 50/s), boot, lifecycle (stop, start, soft reboot), live migration, RunInstances through EC2 against kubectl
	$(PY) hack/bench/scheduler_bench.py --mode burst --runs 5
	$(PY) hack/bench/scheduler_bench.py --mode paced
	$(PY) hack/bench/scheduler_bench.py --mode paced --interval 0.02
	$(PY) hack/bench/boot_bench.py
	$(PY) hack/bench/lifecycle_bench.py
	$(MAKE) bench-migration
	$(MAKE) bench-ec2

bench-scale: venv ## 10,000 instances on 1,000 simulated hosts (one agent process) of the `make dev-up` stack: one burst, then paced at 100/s; each run's deletes timed too
	$(PY) hack/bench/scheduler_bench.py --instances 10000 --hosts 1000 --prefix scale --mode burst --timeout 1800
	$(PY) hack/bench/scheduler_bench.py --instances 10000 --hosts 1000 --prefix scale --mode paced --interval 0.01 --timeout 1800

bench-migration: venv ## live migration on the `make dev-up` stack, to a second libvirtd on this machine and back: through Kubenova against straight through libvirt
	hack/services.sh libvirt2-up
	$(PY) hack/bench/live_migration_bench.py

bench-ec2: venv ## RunInstances of 100 through the EC2 API against the same 100 through kubectl, on 10 simulated hosts of the `make dev-up` stack
	$(PY) hack/bench/ec2_bench.py

bench-density: venv ## 100 real QEMU guests of the tiny image created 100 ms apart on this host of the `make dev-up` stack (KubeVirt's density test): p50/p95 to Running and to guest ready, memory high-water mark (not part of `make bench`)
	$(PY) hack/bench/density_bench.py

.PHONY: chaos
chaos: venv ## faults in the middle of a 200-instance burst on simulated hosts of the running `make dev-up` stack (and once with real guests), one JSON line per fault: lost, duplicate domains, orphan claims, stuck, seconds to converge (CHAOS_ARGS="--faults operator-kill --dry-run")
	$(PY) hack/chaos/chaos.py $(CHAOS_ARGS)

.PHONY: fuzz-manifests
fuzz-manifests: venv ## 1000 malformed and hostile Instance, Flavor, Image and ServerGroup manifests against the running `make dev-up` stack (5 simulated hosts): each refused naming its field, or accepted and handled with no exception logged and no domain XML or config drive changed (FUZZ_ARGS="--seed 7 --dry-run")
	$(PY) hack/fuzz/manifest_fuzz.py $(FUZZ_ARGS)

.PHONY: console-assets
console-assets: ## install noVNC and spice-html5 (npm) for kubenova-console into .kubenova/console/web
	hack/console/assets.sh

.PHONY: bootstrap-test
bootstrap-test: ## `make venv` as a new user meets it: in a freshly made Debian bookworm root (about 2 minutes)
	hack/ci/fresh-debian.sh

.PHONY: chart chart-test
chart: venv ## regenerate the chart's values.schema.json, README table and templates/crds/ from their sources
	$(PY) hack/chart/generate.py

chart-test: venv ## build Helm 4 and 3 if missing, then lint, render and test the chart with both
	hack/helm/build.sh
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/chart
