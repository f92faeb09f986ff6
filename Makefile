# Two commands do everything on a fresh machine with Python 3.11:
#   make book   create .venv from the lock, execute every chapter, write the HTML
#   make test   create .venv from the lock, run the tests (unit tests, the book built from
#               scratch with every chapter executed and warnings as errors, pairing checks)
# Both create the virtual environment .venv on first use (and again when the lock changes).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := $(shell find src -name '*.py' 2>/dev/null)

.PHONY: book test env doctor clean lock FORCE
.PHONY: gpu-env drift
.PHONY: bench bench-quick
.PHONY: browser pdf

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "requirements.lock is verified on Python 3.11, found %d.%d; run: make PYTHON=/path/to/python3.11" % v)'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $@

# jupyter-cache keys a notebook on its code cells only: drop the cache when the package or the
# pinned environment change, so the book never shows results of old code. Sphinx's saved
# environment (_build/.doctrees) goes too: with it, Sphinx would not even read the notebooks that
# did not change, and their pages would keep the old results.
# The profile (COMPANION_PROFILE) changes what the chapters compute but not their code, so it is
# part of the key as well: _build/.profile is rewritten only when the profile differs.
_build/.cache-key: $(SOURCES) requirements.lock _build/.profile
	rm -rf _build/.jupyter_cache _build/.doctrees
	mkdir -p _build && touch $@

PROFILE_KEY := $(or $(COMPANION_PROFILE),default)
_build/.profile: FORCE
	@mkdir -p _build
	@echo "$(PROFILE_KEY)" | cmp -s - $@ || echo "$(PROFILE_KEY)" > $@

FORCE:

book: $(STAMP) _build/.cache-key
	COMPANION_PROGRESS=0 $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The whole book as one PDF (proofs and solutions open, code wrapped):
# the chapters as `make book` executes them (its cache), laid out as one page by Sphinx, printed by
# the website test's Chromium to _build/pdf/companion-book.pdf. A later `make book` publishes it in
# the site (its execution cache is the one this target filled), and every page's download button
# links to it.
pdf: $(STAMP) _build/.cache-key browser
	COMPANION_PROGRESS=0 $(BIN)/jupyter-book build . --builder singlehtml -W -n --keep-going
	$(BIN)/python tools/pdf.py _build/singlehtml _build/pdf/companion-book.pdf

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The website test (tests/test_site.py) drives the system's Chromium: find it, or install Debian's
# chromium and chromium-driver where apt-get can; elsewhere the test is skipped and says why.
browser: $(STAMP)
	@$(BIN)/python tools/browser.py

doctor: $(STAMP)
	$(BIN)/python -m companion doctor

lock:
	bash tools/update-lock.sh

# The CUDA 12 build of the pinned JAX, for the `full` profile on an NVIDIA GPU (tools/run-full.sh).
gpu-env: $(STAMP)
	$(BIN)/python -m pip install --quiet "jax[cuda12]==$$(sed -n 's/^jax==//p' requirements.lock)"

# The weekly drift check: install the book as the Colab cell does, in a fresh environment, on the
# newest jax/flax/optax that pyproject.toml admits, and execute every chapter (needs PyPI).
drift:
	$(PYTHON) tools/drift.py

# Benchmarks (benchmarks/README.md): their own environment, the lock plus the PyTorch baseline
# (benchmarks/requirements.txt), so that the book's .venv stays exactly the lock. On a machine
# with an NVIDIA GPU it gets the CUDA 12 build of the pinned JAX, as `make gpu-env` does.
BENCH_VENV := _build/venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements.lock pyproject.toml benchmarks/requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "requirements.lock is verified on Python 3.11, found %d.%d; run: make PYTHON=/path/to/python3.11" % v)'
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -r requirements.lock
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps --editable .
	if command -v nvidia-smi >/dev/null 2>&1; then $(BENCH_VENV)/bin/python -m pip install --quiet "jax[cuda12]==$$(sed -n 's/^jax==//p' requirements.lock)"; fi
	touch $@

# Every benchmark at full size; results in benchmarks/results/<device>-full.json.
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py $(BENCH_ARGS)

# Small sizes: a few minutes on 2 CPU cores; results in benchmarks/results/<device>-quick.json.
bench-quick: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf _build
