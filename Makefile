# palmbook: one command per job. Everything installs into ./.venv, so a fresh clone needs only python3 and make.
#   make book     install, then build the book into _build/html (the main job)
#   make test     install, then run the whole test suite (what CI runs through .ci/run)
#   make execute  re-execute every chapter (profile cpu) and save outputs + widget state into the notebooks
#   make lint     ruff

VENV    ?= .venv
PY      := $(VENV)/bin/python
# A CPU build of torch installs in seconds on the project's machines; elsewhere any torch >= 2.8 works
# (set TORCH=torch to let pip choose, e.g. a CUDA build).
TORCH   ?= torch==2.13.0
PROFILE ?= cpu
# `make execute NB=book/03_attention.ipynb` executes one chapter; without NB, every book/NN_*.ipynb.
NB      ?=
# `make book` is what the Pages workflow publishes, so it is strict: a warning (a broken link or reference, a figure
# the page cannot draw) fails the build; --keep-going lists them all first. A draft: `make book JBFLAGS=--keep-going`.
JBFLAGS ?= -W -n --keep-going

.PHONY: book test execute lint clean

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

book: $(VENV)/.installed-book
	$(PY) book/_ext/assets.py
	$(VENV)/bin/jupyter-book build . $(JBFLAGS)
	@echo "The book is built: open _build/html/index.html"

execute: $(VENV)/.installed-book
	$(PY) tools/chapters.py execute --profile $(PROFILE) $(NB)

# Two test processes on two cores: each runs torch (and every notebook kernel it starts) on ONE thread. With two
# threads each, the cores are oversubscribed and OpenMP's barriers stall: a batch-1 generation cell of chapter 8 took
# 262 s instead of 8 s. Tests that time or run 2-process jobs set their own thread counts.
test: $(VENV)/.installed-dev
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check palmbook tests tools

clean:
	rm -rf _build .pytest_cache
