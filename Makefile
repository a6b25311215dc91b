# Every target sets itself up on a fresh machine: `make demo`, `make test`, `make bench`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): setup.py constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is required"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[gcs,s3,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf demo-logs demo-aim demo-aim.skipped.jsonl
	$(PY) -m samples.demo demo-logs
	$(PY) -m pipelines.tf_to_aim --logdir demo-logs --repo demo-aim

test: $(STAMP)
	bash tools/install-test-deps.sh
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.tf_to_mlflow

clean:
	rm -rf $(VENV) demo-logs demo-aim demo-aim.skipped.jsonl .bench
