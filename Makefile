# Aquatope testbed: `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
# the package and what it runs on (all that `make demo` needs); then the development tools
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
RESULTS ?= results
PLATFORM ?= testbed

.PHONY: help venv demo evaluate test test-fast lint bench mutation testbed-up testbed-down system-deps clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(DEV)

venv: $(DEV) ## create .venv with the package, its dependencies and the development tools

demo: $(STAMP) ## the comparison in miniature: the simulator (curves, intervals, oracle), then a short live run
	$(BIN)/aquatope evaluate experiments/demo-sim.yaml --fresh -o $(RESULTS)/demo/sim --results-md $(RESULTS)/demo/RESULTS.md
	$(BIN)/aquatope experiment run experiments/demo.yaml -o $(RESULTS)/demo/live
	$(BIN)/aquatope compare $(RESULTS)/demo/live
	$(BIN)/aquatope report $(RESULTS)/demo/live -o $(RESULTS)/demo/live/report.html

evaluate: $(STAMP) ## the headline comparison on the simulator (all policies x traces x seeds) -> docs/RESULTS.md
	$(BIN)/aquatope evaluate experiments/evaluation.yaml -o $(RESULTS)/evaluation --results-md docs/RESULTS.md $(EVALUATE_ARGS)

system-deps: ## install Chromium (report rendering test) and start a Docker engine, when root
	bash scripts/ensure-system-deps.sh

test: $(DEV) system-deps ## run the whole test suite (Docker tests included)
	$(BIN)/pytest -q

test-fast: $(DEV) ## run the tests that need neither Docker nor slow runs
	$(BIN)/pytest -q -m "not docker and not slow"

lint: $(DEV) ## ruff check, format check and mypy
	$(BIN)/ruff check testbed loadgen scheduler functions tests bench
	$(BIN)/ruff format --check testbed loadgen scheduler functions tests bench
	$(BIN)/mypy

MUTATE ?= --sample 120 --max-children 2 --max-minutes 10
mutation: $(DEV) ## mutation score per module (mutmut; slow, not part of `make test`)
	$(PY) scripts/mutation.py $(MUTATE)

bench: $(STAMP) ## run every benchmark (prints one JSON object per script)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

testbed-up: $(STAMP) ## start the testbed (PLATFORM=testbed|openfaas|k3d; testbed: Docker replicas)
ifeq ($(PLATFORM),k3d)
	bash scripts/k3d-up.sh
else ifeq ($(PLATFORM),openfaas)
	bash scripts/ensure-system-deps.sh
	$(BIN)/aquatope up --platform openfaas
else
	bash scripts/ensure-docker.sh
	$(BIN)/aquatope build
	$(BIN)/aquatope up --backend docker
endif

testbed-down: $(STAMP) ## stop the gateway and remove its containers
	$(BIN)/aquatope down

clean: ## remove the virtual environment and results
	rm -rf $(VENV) $(RESULTS) *.egg-info
