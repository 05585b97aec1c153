# The two commands of the README. Both set up the pinned environment first
# (tools/setup_env.sh: minutes the first time, seconds afterwards).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON_ENV = $$(bash tools/setup_env.sh)
LINT_PATHS = mmslak tools tests configs setup.py

.PHONY: env demo test lint unit format mutation gpu-check

env:
	@bash tools/setup_env.sh >/dev/null

## Set up, then run the main job end to end on generated data.
demo:
	@PY=$(PYTHON_ENV); $$PY tools/demo.py

## Set up, then lint and run the whole test suite (slow tests included):
## two pytest workers (pytest-xdist, one thread each: two cores, no
## oversubscription), then the multi-rank tests one by one.
test:
	@PY=$(PYTHON_ENV); \
	$(MAKE) --no-print-directory lint PY=$$PY; \
	OMP_NUM_THREADS=1 $$PY -m pytest tests -q -n 2 --dist worksteal -m "not multi_rank" --durations=15; \
	$$PY -m pytest tests -q -m multi_rank --durations=5

lint:
	@$(PY) -m flake8 $(LINT_PATHS)
	@$(PY) -m isort --check-only --diff $(LINT_PATHS)
	@$(PY) -m yapf --diff --recursive --parallel $(LINT_PATHS)

## Fast tests only (skips those marked slow).
unit:
	@PY=$(PYTHON_ENV); $$PY -m pytest tests -q -m "not slow"

format:
	@PY=$(PYTHON_ENV); $$PY -m isort $(LINT_PATHS); \
	$$PY -m yapf -i --recursive $(LINT_PATHS)

## Mutation testing of one module (not in CI), e.g.
## make mutation MODULE=mmslak/sparse/prune_grow.py TESTS="tests/sparse"
mutation:
	@PY=$(PYTHON_ENV); $$PY tools/misc/mutation.py $(MODULE) $(TESTS)

## GPU acceptance check (one GPU, < 10 min; says so and exits 0 without one).
gpu-check:
	@PY=$(PYTHON_ENV); PY=$$PY bash tools/misc/gpu_check.sh
