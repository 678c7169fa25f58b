# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.trustser-installed
DEMO_DIR ?= runs/demo
EMODB_ROOT ?= ../shared/data/emodb

.PHONY: venv system-deps test lint demo demo-emodb bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

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
	$(VENV)/bin/trustser run --corpus emodb --root "$(EMODB_ROOT)" --backbone whisper_tiny_en_offline -o runs/emodb

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
