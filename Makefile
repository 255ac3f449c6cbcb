# The two README commands: `make demo` and `make test`. Both set up first (idempotent, ~1 s when nothing changed);
# `make test` includes the optional Ray extra, whose engine the tests cover.
SHELL := /bin/bash
ENV := source scripts/env.sh &&
DEMO_SECONDS ?= 10
PYTEST_ARGS ?=

.PHONY: setup setup-ray demo test bench clean

setup:
	bash scripts/setup.sh

setup-ray:
	WITH_RAY=1 bash scripts/setup.sh

demo: setup
	$(ENV) tsg demo --seconds $(DEMO_SECONDS) --out out/demo

test: setup-ray
	$(ENV) ruff check src tests launch && python -m pytest -q $(PYTEST_ARGS)

bench: setup-ray
	$(ENV) tsg bench service --out out/bench/service.json && tsg bench perception --out out/bench/perception.json && \
	  tsg bench label --out out/bench/label.json

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log out
