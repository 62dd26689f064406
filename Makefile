# The two commands a newcomer types (see README.md):
#   make run    create the environment if needed, then run the default workflow
#   make test   create the environment if needed, then run the test suite
#   make env    only create the environment (then: .venv/bin/entmap audit my_lora.safetensors)
PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.entmap-installed

.PHONY: env run test dry-run lint

$(STAMP): pyproject.toml requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/local

test: $(STAMP)
	$(VENV)/bin/python -m pytest

dry-run: $(STAMP)
	$(VENV)/bin/snakemake -n

# The four linters CI runs before the tests; each must report nothing.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile rules/
	$(VENV)/bin/snakemake --lint
