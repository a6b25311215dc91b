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

# aim convert's own venv (aim, TensorFlow, every package pinned), made once and remade when the pins change
AIM_CONVERT_VENV := .bench/aim-convert-venv/.installed
$(AIM_CONVERT_VENV): benchmarks/aim_convert_requirements.txt $(STAMP)
	$(PY) -m benchmarks.aim_convert_venv

# W&B's own Python .wandb reader (wandb 0.29.0, every package pinned) for the W&B step's side-by-side, likewise
WANDB_READER_VENV := .bench/wandb-reader-venv/.installed
$(WANDB_READER_VENV): benchmarks/wandb_reader_requirements.txt $(STAMP)
	$(PY) -m benchmarks.wandb_reader_venv

bench: $(STAMP) $(AIM_CONVERT_VENV) $(WANDB_READER_VENV)
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.tf_to_mlflow

clean:
	rm -rf $(VENV) demo-logs demo-aim demo-aim.skipped.jsonl .bench
