# Two entry points, both safe on a fresh clone (README.md, "Set up and run"):
#   make demo   set everything up, then run the main job end to end
#   make test   set everything up, then run the whole test suite
#
# Set-up is idempotent: the virtual environment is rebuilt only when
# pyproject.toml changes.  torch is installed first, pinned to the CPU build
# (an open range would pull a multi-GB CUDA build); llama-cpp-python is built
# without ggml's AMX kernels, which crash on quantized models on AMX CPUs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# TORCH_INDEX: where torch 2.13.0 CPU comes from where the default index has only CUDA builds.
TORCH_INDEX ?=
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup demo test lint typecheck

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q -e '.[build,registry,run,test]'
	touch $@

demo: setup
	$(BIN)/phi-get demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/python -m pytest tests/test_typecheck.py
