# mapcvd: the two commands of the README, and the pieces they stand on.
#   make demo   set up (virtual environment in .venv) and run the demo campaign
#   make test   set up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST  = $(BIN)/python -m pytest

.PHONY: setup demo test test-heavy test-slurm bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/mapcvd --version
	touch $@

demo: setup
	$(BIN)/mapcvd campaign run

test: setup
	$(PYTEST) -m "not heavy and not slurm" --timeout=900 -q

# The heavier tests (ReaxFF melt-quench, MoO3 at 1500 K, HTEX campaigns); CI runs them too.
test-heavy: setup
	$(PYTEST) -m heavy --timeout=1800 -q

# The slurm site against a throwaway two-node Slurm on this machine (root; the first run
# apt-installs slurm-wlm and munge). Skipped when it cannot start, unless
# MAPCVD_REQUIRE_SLURM=1 (CI), which makes that a failure.
test-slurm: setup
	$(PYTEST) -m slurm --timeout=1200 -q

bench: setup
	$(BIN)/python benchmarks/md_engine.py
	$(BIN)/python benchmarks/map_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info
