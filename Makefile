# wb: two commands do all the setup on a fresh machine.
#   make demo   - venv, torch CPU, the project, the default models, index the sample corpus, run queries
#   make test   - the same setup, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.wb-installed
DEMO_WS := .wb-demo
# where pip's own index would pick a CUDA build: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: demo test test-all setup models bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and explicitly: the CPU build (a bare requirement would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(STAMP)

models: $(STAMP)
	$(BIN)/wb models install

demo: models
	$(BIN)/wb index sample_corpora/python-docs --workspace $(DEMO_WS)
	$(BIN)/wb query "itertools.groupby" --workspace $(DEMO_WS) -k 5
	$(BIN)/wb query "run a function on many inputs in parallel" --workspace $(DEMO_WS) -k 5 --pipeline hybrid+rerank

test: models
	$(BIN)/python -m pytest -q

test-all: models
	$(BIN)/python -m pytest -q -m "slow or not slow"

# make bench [WS=ws-scifact] [SMALL=1]: every CPU benchmark (SMALL=1: smallest sizes, a smoke pass)
bench: models
	$(BIN)/python bench/run_all.py $(if $(WS),-w $(WS),) $(if $(SMALL),--small,)

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache
