# Backprop from Scratch: the whole set-up is `make lab` or `make test`.
#
#   make lab     create .venv, install the course, open JupyterLab on notebooks/
#   make test    create .venv with the dev extra, then run every test
#
# Overrides: PYTHON=python3.12, TORCH_SPEC="torch==2.5.1" (or TORCH_SPEC= to let
# pip choose), LAB_ARGS="--no-browser --port 8899", PYTEST_ARGS="-x".

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
LAB_ARGS   ?=
PYTEST_ARGS ?=
JOBS       ?= auto
KERNEL_NAME := backprop-from-scratch
# Jupyter refuses to run as root (containers, CI) without --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

BIN := $(VENV)/bin
PY  := $(BIN)/python
BASE_STAMP := $(VENV)/.stamp-base
DEV_STAMP  := $(VENV)/.stamp-dev
NBVAL := --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: lab test install install-dev lint format unit notebooks browser colab nbgrader chromium exercises badges grade outputs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Torch first, from the pinned spec: a local CPU wheel here, instead of letting
# the resolver pick a multi-GB CUDA build. If the pin is unavailable, fall back
# to whatever satisfies the package's own range.
$(BASE_STAMP): pyproject.toml | $(PY)
	@if ! $(PY) -c "import torch" 2>/dev/null && [ -n "$(TORCH_SPEC)" ]; then \
		$(PY) -m pip install "$(TORCH_SPEC)" || echo "note: '$(TORCH_SPEC)' unavailable; pip will pick torch"; \
	fi
	$(PY) -m pip install -e . "jupyterlab>=4.0"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "Python (Backprop from Scratch)"
	@touch $@

$(DEV_STAMP): $(BASE_STAMP) pyproject.toml
	$(PY) -m pip install -e ".[dev]"
	@touch $@

install: $(BASE_STAMP)
install-dev: $(DEV_STAMP)

lab: $(BASE_STAMP)
	$(BIN)/jupyter lab --notebook-dir=. --ServerApp.default_url=/lab/tree/notebooks $(ROOT_FLAG) $(LAB_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(DEV_STAMP)
	$(BIN)/pytest tests --ignore=tests/browser --ignore=tests/colab --ignore=tests/nbgrader -n $(JOBS) --durations=10 $(PYTEST_ARGS)

# Lessons and solutions: outputs compared. Exercises: must run, outputs not compared.
notebooks: $(DEV_STAMP)
	$(BIN)/pytest --nbval $(NBVAL) notebooks solutions -n $(JOBS) --dist loadscope --durations=15 $(PYTEST_ARGS)
	$(BIN)/pytest --nbval-lax $(NBVAL) exercises -n $(JOBS) --dist loadscope --durations=15 $(PYTEST_ARGS)

# JupyterLab driven by headless Chromium: the notebooks as students see them.
browser: $(DEV_STAMP) chromium
	$(BIN)/pytest tests/browser -v --durations=5 $(PYTEST_ARGS)

# The Colab install path, simulated in fresh virtual environments.
colab: $(DEV_STAMP)
	$(BIN)/pytest tests/colab -v -n $(JOBS) --durations=5 $(PYTEST_ARGS)

# nbgrader (installed in a throwaway venv) on solutions/: generate_assignment gives exercises/,
# autograde agrees with coursekit's bulk grading. One venv for both tests: no -n.
nbgrader: $(DEV_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest tests/nbgrader -v --durations=5 $(PYTEST_ARGS)

# Debian's Chromium for the browser tests (no browser download: Playwright drives this one).
chromium:
	@command -v chromium >/dev/null 2>&1 || ( \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; } || \
		echo "WARNING: could not install chromium; the browser tests will be skipped" )

test: lint unit notebooks colab nbgrader browser

# Instructors: the course's own install is enough for these three (no test tools).
# make exercises [ARGS=--force]   make badges   make grade ARGS="submissions/ --csv grades.csv"
exercises: $(BASE_STAMP)
	$(PY) tools/make_exercises.py $(ARGS)

badges: $(BASE_STAMP)
	$(PY) tools/colab.py

grade: $(BASE_STAMP)
	$(PY) -m coursekit.grading $(ARGS)

# Re-run notebooks in place to refresh their stored outputs (after editing a lesson).
outputs: $(DEV_STAMP)
	$(PY) tools/execute_notebooks.py $(or $(NB),notebooks/*.ipynb solutions/*.ipynb)

bench: $(BASE_STAMP)
	$(PY) -m coursekit.bench

# One command for a GPU machine: the gpu tests, the benchmark on cuda, every notebook on
# CUDA, a data-parallel step; a report in $(OUT) (see BENCHMARKS.md). Needs only a Python
# with torch (CUDA build): the rest is installed from the wheels in $(WHEELS), never torch.
# Without CUDA it says so and runs the rest on the CPU. GPU_ARGS=--quick: a short run.
OUT      ?= .gpu-check
WHEELS   ?= .whl
GPU_ARGS ?=
GPU_PY   := $(if $(wildcard $(PY)),$(PY),python3)
.PHONY: gpu gpu-wheels
gpu:
	$(GPU_PY) tools/gpu_check.py --out $(OUT) --wheels $(WHEELS) $(GPU_ARGS)

# The wheels of tools/gpu-requirements.txt for CPython 3.12 on x86_64 Linux, into $(WHEELS).
gpu-wheels:
	$(GPU_PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform manylinux1_x86_64 -d $(WHEELS) -r tools/gpu-requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
