# mnog — one target per table and figure of "Machine Unlearning under Overparameterization".
# `make help` lists them. PROFILE=smoke|cpu|paper picks the budget (default: auto, which is
# paper with a GPU and cpu otherwise; Table 5 runs the paper's protocol at both).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
PYTHON      := $(VENV)/bin/python
PROFILE     ?= auto
export PROFILE

.DEFAULT_GOAL := help
.PHONY: help venv test table5 table2 figure1 figure3 figure4 figure5 smoke bench all clean

help: ## List the targets with their paper labels
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9_-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  PROFILE=smoke|cpu|paper (now: $(PROFILE))"

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create .venv with the pinned environment (torch 2.14.1, torchvision 0.29.1)

test: venv ## Run the test suite (CI runs exactly this)
	$(PYTHON) -m pytest -q

table5: venv ## Table 5 (= Table 1): Data Poisoning, sup-norm error of every method
	$(PYTHON) -m artifact.table5_data_poisoning

table2: venv ## Table 2 (= Table 17): Representation Collapse, color accuracy of every method
	$(PYTHON) -m artifact.table2_representation_collapse

figure1: venv ## Figure 1: Data Poisoning fits of every method, T = 100
	$(PYTHON) -m artifact.figure1_data_poisoning_fits --epochs 100 --name figure1

figure3: venv ## Figure 3: Data Poisoning fits, T = 10
	$(PYTHON) -m artifact.figure1_data_poisoning_fits --epochs 10 --name figure3

figure4: venv ## Figure 4: Data Poisoning fits, T = 100 (the appendix copy of Figure 1)
	$(PYTHON) -m artifact.figure1_data_poisoning_fits --epochs 100 --name figure4

figure5: venv ## Figure 5: Data Poisoning fits, T = 1000
	$(PYTHON) -m artifact.figure1_data_poisoning_fits --epochs 1000 --name figure5

all: table5 table2 figure1 figure3 figure4 figure5 ## Every table and figure above, at PROFILE

smoke: ## Every target at the smoke profile (about a minute)
	$(MAKE) table5 table2 figure1 PROFILE=smoke

bench: venv ## Speed benchmarks (prints tables; see benchmarks/)
	$(PYTHON) -m benchmarks.bench_projection
	$(PYTHON) -m benchmarks.bench_table5
	$(PYTHON) -m benchmarks.bench_images

clean: ## Remove results/ (keeps data/ and .venv/)
	rm -rf results
