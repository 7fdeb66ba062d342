# The front door. `make demo` and `make test` set up everything they need
# (a project venv, a Docker engine, the base image) on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PYTHON ?= python3
export MOLECULE_DISTRO ?= debian12
# the molecule scenarios: the one list in scripts/test.sh
SCENARIOS ?= $(shell sed -n 's/^SCENARIOS=(\(.*\))$$/\1/p' scripts/test.sh)

.PHONY: help venv docker image demo down demo-cluster down-cluster test lint molecule unit bench bench-cluster clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## install the pinned tools into ./.venv

$(VENV)/.installed: requirements-dev.txt app/requirements.txt
	@scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

docker:  ## make sure a Docker engine answers (installs docker.io as root on Debian/Ubuntu)
	@scripts/ensure-docker.sh

image: docker  ## build the systemd base image for MOLECULE_DISTRO (cached)
	@molecule/resources/build-image.sh "$(MOLECULE_DISTRO)" >/dev/null

demo: venv image  ## start the local VM, converge site.yml on it, print its URL
	@scripts/demo.sh up

down:  ## remove the local VM
	@scripts/demo.sh down

demo-cluster: venv image  ## the cluster scenario (LB, 2 web, Redis+worker, Pebble) converged, print its URL
	@molecule/resources/build-image.sh --prepared "$(MOLECULE_DISTRO)" >/dev/null
	@scripts/cluster.sh up

down-cluster:  ## remove the cluster's containers (molecule destroy -s cluster)
	@scripts/cluster.sh down

test: venv  ## lint, unit tests, molecule and the demo re-run, as parallel jobs (the CI command)
	@scripts/test.sh

lint: venv  ## yamllint + ansible-lint (production profile)
	@$(VENV)/bin/yamllint --strict . && $(VENV)/bin/ansible-lint --profile production

unit: venv  ## the app's tests and the inventory/model tests
	@scripts/ensure-apt.sh redis-server
	@$(VENV)/bin/pytest -q app/tests && $(VENV)/bin/pytest -q tests/unit tests/inventory tests/load

molecule: venv image  ## molecule test on every scenario (SCENARIOS), one after the other
	@molecule/resources/build-image.sh --prepared "$(MOLECULE_DISTRO)" >/dev/null
	@for s in $(SCENARIOS); do PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/molecule test -s $$s || exit 1; done

bench: venv image  ## measure the demo VM: throughput, redeploy and crash under load, env builds, converge
	@$(VENV)/bin/python scripts/bench.py $(BENCH_ARGS)

bench-cluster: venv image  ## measure the converged cluster (make demo-cluster first): LB with 1 and 2 hosts, overhead, rolling deploy
	@scripts/cluster.sh bench $(BENCH_ARGS)

clean: down  ## remove the venv and caches (images stay)
	rm -rf $(VENV) .cache .state
