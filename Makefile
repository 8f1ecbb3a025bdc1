# palmbook: one command per job. Everything installs into ./.venv, so a fresh clone needs only python3 and make.
#   make book     install, then build the book into _build/html (the main job)
#   make pdf      the built book as one PDF (_build/pdf/palmbook.pdf), printed offline by Chromium
#   make test     install, then run the whole test suite (what CI runs through .ci/run)
#   make execute  re-execute every chapter (profile cpu) and save outputs + widget state into the notebooks
#   make lint     ruff
#   make colab-check  a fresh venv with Colab's pinned versions (tools/colab-constraints.txt): every chapter's smoke
#                     profile and the widget tests, as a Colab reader would run them (without a GPU)

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

.PHONY: book pdf test execute lint clean colab-check

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

# The book as one PDF (_build/pdf/palmbook.pdf): every built page printed by Debian's Chromium, offline.
pdf: book
	$(PY) tools/book_pdf.py

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

# Colab's image: Python 3.13 and torch 2.11 (tools/colab-constraints.txt). Where no CPU build of torch 2.11 for
# 3.13 exists (only CUDA wheels on PyPI), run e.g. `make colab-check COLAB_PYTHON=python3.11 COLAB_TORCH=torch==2.13.0`:
# every other pin stays Colab's. The venv is rebuilt every time: it must never drift from the constraints.
COLAB_PYTHON      ?= python3.13
COLAB_CONSTRAINTS := tools/colab-constraints.txt
COLAB_TORCH       ?= $(shell grep '^torch==' $(COLAB_CONSTRAINTS))
COLAB_VENV        ?= .venv-colab

colab-check:
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/pip install -q "$(COLAB_TORCH)"
	grep -v '^torch==' $(COLAB_CONSTRAINTS) > $(COLAB_VENV)/constraints.txt
	# What the chapters' install cell installs (palmbook[colab]), plus only what the tests need to run them.
	$(COLAB_VENV)/bin/pip install -q -c $(COLAB_VENV)/constraints.txt ".[colab]" "pytest>=8" "nbval>=0.11" \
		"ipykernel>=6.29" "hypothesis>=6.100"
	$(COLAB_VENV)/bin/python -c "import ipywidgets, plotly, numpy, pandas, torch, sys; print('colab-check:', \
		sys.version.split()[0], 'torch', torch.__version__, 'ipywidgets', ipywidgets.__version__, 'plotly', \
		plotly.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
	OMP_NUM_THREADS=1 PALMBOOK_PROFILE=smoke $(COLAB_VENV)/bin/python -m pytest -p no:cacheprovider \
		-o addopts="-ra --nbval-lax --nbval-current-env" book tests/test_book_widgets.py

clean:
	rm -rf _build .pytest_cache .venv-colab
