# Entry point for people and CI. Everything runs from the project venv (.venv), which
# `make venv` builds from requirements.txt.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
FLEET := $(PY) tools/fleet.py
APPS ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv image cluster cluster-down status lint test test-molecule test-cluster

help:
	@echo "make cluster       bring up the local fleet, deploy the example app, print its URL"
	@echo "make cluster-down  remove the local fleet"
	@echo "                   (FLEET_NAME=name selects another fleet, APPS=n the number of app hosts)"
	@echo "make status        show the local fleet"
	@echo "make lint          ansible-lint (production profile) and yamllint"
	@echo "make test          lint, the example project's tests, every Molecule scenario, the whole-cluster tests"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@echo "installing the pinned toolchain into $(VENV) (about a minute)"
	@# A fresh Debian lacks the venv module (python3-venv) and may lack the SSH client Ansible uses;
	@# as root with apt, install them rather than fail (the fleet tool does the same for Docker).
	@missing=""; python3 -c 'import ensurepip' 2>/dev/null || missing="python3-venv"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing: $$missing (install them, then re-run)"; exit 1; fi; \
	fi
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

image: venv
	$(FLEET) image

# The fleet tool prints where it wrote the inventory (inventories/local for the default fleet,
# .fleet/NAME/inventory for FLEET_NAME=NAME).
cluster: venv
	@inventory=$$($(FLEET) up --apps $(APPS) | tail -n 1 | xargs dirname) && \
	$(BIN)/ansible-playbook -i "$$inventory" playbooks/site.yml && \
	$(PY) tools/smoke.py "$$inventory"

cluster-down: venv
	@echo "removing the local fleet '$${FLEET_NAME:-djcluster}'"
	$(FLEET) down

status: venv
	$(FLEET) status

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline --profile production

test: venv
	$(PY) tools/run_tests.py

test-molecule: venv
	$(PY) tools/run_tests.py --only molecule $(if $(S),--scenario $(S))

test-cluster: venv
	$(PY) tools/run_tests.py --only cluster
