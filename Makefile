# mnog — one target per table and figure of "Machine Unlearning under Overparameterization".
# `make help` lists them. PROFILE=smoke|cpu|paper picks the budget (default: auto, which is
# paper with a GPU and cpu otherwise; Table 5 runs the paper's protocol at both).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
PYTHON      := $(VENV)/bin/python
PROFILE     ?= auto
export PROFILE
# Extra options for the target's script, e.g. ARGS="--executor ray --address HOST:PORT" or "--workers 4".
ARGS        ?=
# Where the scripts write (mnog/results.py reads the same variable).
RESULTS     := $(or $(MNOG_RESULTS),results)
# Runs one target's script and records its wall time and exit status in
# $(RESULTS)/<target>/<profile>/run.json, for the report's provenance.
RUN          = $(PYTHON) -m artifact.report run
UV_VERSION  := 0.13.9
# On an AMD CPU, MKL keeps its fast kernels for Intel's: everything below runs with mnog's
# one-function library preloaded, which lets MKL choose by instruction set (mnog/mkl.py;
# MNOG_MKL_INTEL=0 turns it off). Elsewhere this leaves LD_PRELOAD as it is.
MKL_PRELOAD := $(shell $(PYTHON_BASE) mnog/mkl.py ld-preload)
ifneq ($(MKL_PRELOAD),)
export LD_PRELOAD := $(MKL_PRELOAD)
endif

# Every table and figure, in the order `make all` runs them, from the one table of targets
# (mnog/targets.py: each target's paper label and script; `make help` prints it).
TARGETS := $(shell $(PYTHON_BASE) mnog/targets.py names)
# What a finished target's results depend on: rerun when the code or the paper's numbers change.
SOURCES := $(filter-out artifact/report.py,$(wildcard mnog/*.py artifact/*.py)) $(wildcard paper_tables/*)

.DEFAULT_GOAL := help
.PHONY: help venv test $(TARGETS) smoke rehearse plan calibrate bench all finished report check docs data verify lock clean
# One experiment at a time: each script already uses every core (or the GPU).
.NOTPARALLEL:

help: ## List the targets with their paper labels
	@echo "The paper's tables and figures (mnog/targets.py):"
	@$(PYTHON_BASE) mnog/targets.py help
	@echo "Everything else:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9_ -]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  PROFILE=smoke|cpu|paper (now: $(PROFILE))"

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create .venv with the pinned environment (torch 2.14.1, torchvision 0.29.1)

test: venv ## Run the test suite (CI runs exactly this)
	$(PYTHON) -m pytest -q

# One rule for every table and figure: `artifact.report run` looks up its script in
# mnog/targets.py, runs first what it needs (Figure 1 needs Table 5's results) and records
# the wall time and exit status in results/<target>/<profile>/run.json.
$(TARGETS): venv
	$(RUN) $@ $(if $(ARGS),-- $(ARGS))

# `make all` resolves the profile once (printing it), runs every target whose results are
# missing or older than the code, keeps going past a failed one (-k), always writes the
# report, and fails if any target failed.
all: venv ## Every table and figure above at PROFILE, skipping finished ones; then `make report`
	@profile=$$($(PYTHON) -m artifact.report profile) || exit 1; \
	todo=; for t in $(TARGETS); do \
		$(MAKE) --no-print-directory -q PROFILE=$$profile $(RESULTS)/$$t/$$profile/.done || todo="$$todo $$t"; done; \
	echo "make all: profile $$profile; to run:$${todo:- nothing (all finished)}"; \
	if [ -n "$$todo" ]; then $(PYTHON) -m mnog.plan --profile $$profile $$todo || echo "make all: the plan failed; running anyway"; fi; \
	status=0; $(MAKE) --no-print-directory -k PROFILE=$$profile finished || status=1; \
	$(MAKE) --no-print-directory PROFILE=$$profile report || status=1; \
	exit $$status

# A target is finished when its script exited 0 at this profile (the stamp .done).
finished: $(TARGETS:%=$(RESULTS)/%/$(PROFILE)/.done)

# (Through SUBMAKE: a recipe line naming $(MAKE) itself would run even under `make -q`, which
# `make all` uses to list what is left.)
SUBMAKE = $(MAKE) --no-print-directory
$(RESULTS)/%/$(PROFILE)/.done: $(SOURCES) | $(VENV)/.installed
	$(SUBMAKE) $*
	@mkdir -p $(@D) && touch $@

# ARGS="--dataset folder:PATH --tiny-imagenet synthetic ..." (python -m mnog.rehearse --help); writes
# $(RESULTS)/rehearsal/ only, never the results a real run reads.
rehearse: venv ## Rehearse the paper profile of every image target: paper shapes, every loop cut short (docs/gpu.md)
	$(PYTHON) -m mnog.rehearse $(ARGS)

plan: venv ## Print every target's models to train, sweep jobs and projected time at PROFILE; runs nothing
	$(PYTHON) -m mnog.plan --profile $(PROFILE)

calibrate: venv ## Measure this machine's rates for `make plan` (results/calibration-<device>.json)
	$(PYTHON) -m mnog.plan --calibrate --profile $(PROFILE)

report: venv ## Write results/REPORT.md and REPORT.html: ours beside the paper's, claims, provenance
	$(PYTHON) -m artifact.report write

check: venv ## Exit non-zero if a stored tolerance or claim fails (reads results/, runs nothing)
	$(PYTHON) -m artifact.report check

docs: venv ## Regenerate the tables of README.md and docs/ from mnog/targets.py and reference/
	$(PYTHON) -m artifact.docs

smoke: ## Kick the tires: one target of each experiment (the standard benchmark, the ablation) at the smoke profile, then its report
	$(MAKE) table5 table2 figure1 figure6 table3 random_forgetting ablation PROFILE=smoke
	$(MAKE) report PROFILE=smoke

# CHECKSUMS=<file> reads another checksums table (the tests use one); MNOG_DATA moves data/,
# MNOG_MIRROR=<url> downloads <url>/<file name> instead of each file's own URL.
data: venv ## Download and verify every data set and weight file of checksums.txt (into data/)
	$(PYTHON) -m mnog.download fetch $(if $(CHECKSUMS),--checksums $(CHECKSUMS))

verify: venv ## Re-check the files of checksums.txt already present; fails on a corrupt one
	$(PYTHON) -m mnog.download verify $(if $(CHECKSUMS),--checksums $(CHECKSUMS))

# uv resolves for the image's platform (Linux x86_64, CPython 3.11) from any machine. It keeps
# the versions already locked; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest.
lock: venv ## Regenerate requirements.lock (versions and SHA-256 hashes) from pyproject.toml
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
		--output-file requirements.lock $(LOCK_FLAGS)

bench: venv ## Speed benchmarks (prints tables; see benchmarks/), then `make calibrate`
	$(PYTHON) -m benchmarks.bench_projection
	$(PYTHON) -m benchmarks.bench_mkl
	$(PYTHON) -m benchmarks.bench_table5
	$(PYTHON) -m benchmarks.bench_images
	$(PYTHON) -m benchmarks.bench_scoring
	$(PYTHON) -m benchmarks.bench_executors
	$(PYTHON) -m mnog.plan --calibrate --profile $(PROFILE)

clean: ## Remove results/ (keeps data/ and .venv/)
	rm -rf $(RESULTS)
