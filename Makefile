# Two commands do all the set-up on a fresh machine (see README.md):
#   make book   build the executed book into _build/html
#   make test   run the whole test suite (unit tests, SymPy checks, smoke build of the book)
#
# Variables: DGM_PROFILE=smoke|cpu|full, DGM_DATA=<data root>, VENV=<virtual environment>.

PYTHON  ?= python3
VENV    ?= .venv
JOBS    ?= 2
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.dgm-installed
MATHJAX := book/_static/mathjax/tex-chtml.js
MATHJAX_VERSION ?= 3.2.2
MJ_SRC  := _build/npm/node_modules/mathjax/es5

# Chapters execute with book/ as their working folder: hand them an absolute data root.
ifneq ($(strip $(DGM_DATA)),)
override DGM_DATA := $(abspath $(DGM_DATA))
export DGM_DATA
endif

.PHONY: book test install mathjax browser bubblewrap slurm clean help

help:
	@sed -n '1,7p' Makefile

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# MathJax comes from the npm registry at build time and is served by the site (no CDN).
$(MATHJAX):
	rm -rf _build/npm book/_static/mathjax
	mkdir -p _build/npm book/_static/mathjax/output/chtml/fonts book/_static/mathjax/input/tex
	npm install --silent --no-audit --no-fund --prefix _build/npm mathjax@$(MATHJAX_VERSION)
	cp -r $(MJ_SRC)/a11y $(MJ_SRC)/ui book/_static/mathjax/
	cp -r $(MJ_SRC)/input/tex/extensions book/_static/mathjax/input/tex/
	cp -r $(MJ_SRC)/output/chtml/fonts/woff-v2 book/_static/mathjax/output/chtml/fonts/
	cp _build/npm/node_modules/mathjax/LICENSE book/_static/mathjax/
	cp $(MJ_SRC)/tex-chtml.js $(MATHJAX)

mathjax: $(MATHJAX)

book: install mathjax
	$(BIN)/python -m dgm.build

# Debian's Chromium for the browser test of the site (never a browser downloaded by a tool).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get install -y chromium; fi; }

# Debian's bubblewrap: the grader runs every student kernel in it and refuses to start without it.
bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else sudo apt-get install -y bubblewrap; fi; }

# Debian's slurm-wlm and munge: tests/test_slurm.py grades through a one-node cluster it starts.
slurm:
	@{ command -v slurmctld || test -x /usr/sbin/slurmctld; } >/dev/null 2>&1 && \
	  { command -v munged || test -x /usr/sbin/munged; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; \
	  else sudo -n apt-get install -y slurm-wlm munge || \
	    echo "slurm-wlm and munge not installed (not root, no sudo): tests/test_slurm.py is skipped"; fi; }

# JOBS test processes share the cores: one math thread each avoids oversubscribing them.
test: install mathjax browser bubblewrap slurm
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest tests -n $(JOBS) --dist loadscope

clean:
	rm -rf _build book/_static/mathjax
