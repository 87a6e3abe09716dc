# Every task of the project, each calling the script or command that does it.
# `make help` lists them.

TMPDIR ?= /tmp
CLIENTS_VENV ?= $(or $(FLIGHT_COUNTER_CLIENTS_VENV),$(TMPDIR)/flight-counter-clients-venv)
# monitoring/generate.py needs grafanalib and PyYAML (.ci/clients/requirements.txt):
# the virtualenv .ci/check-clients.sh builds has them.
MONITORING_PYTHON ?= $(firstword $(wildcard $(CLIENTS_VENV)/bin/python) python3)

.PHONY: help run test bench lint lint-rust lint-scripts check-infra check-clients docs ci

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-14s %s\n", $$1, $$2 }'

run: ## run the service on the embedded store under ./data/
	cargo run --release -p flight-counter

test: ## the whole test suite, as CI runs it
	scripts/test.sh

bench: ## the HTTP benchmark (bench/run.sh)
	bench/run.sh

lint: lint-rust lint-scripts ## rustfmt, clippy, ruff and shellcheck

lint-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

lint-scripts: ## ruff and shellcheck only
	bash .ci/check-lint.sh

check-infra: ## the infrastructure checks (Terraform, Kubernetes, monitoring)
	bash .ci/check-infra.sh

check-clients: ## the checks with real clients (browsers, generated clients, Prometheus)
	bash .ci/check-clients.sh

docs: ## regenerate the Terraform roots' READMEs and the monitoring files
	./terraform-docs.sh
	$(MONITORING_PYTHON) monitoring/generate.py

ci: ## everything CI runs
	.ci/run
