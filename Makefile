# One entry for everything. `make demo` and `make test` create and reuse .venv by themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo_out
UTKFACE ?= ../shared/data/utkface

.PHONY: venv demo test test-fast lint bench bench-preprocess bench-input bench-train bench-export \
	bench-quality bench-ablation bench-faults bench-scaling bench-serving-memory bench-photo-accuracy \
	bench-face-preprocess bench-edge demo-photos check-serving clean

venv: $(STAMP)

# Reinstall only when the package's requirements change.
$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	touch $(STAMP)

demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo.sh

# Two processes on two cores: most tests wait on subprocesses, tracing and files, not both cores.
# Every test owns its tmp_path and free ports, so they run in any order and in parallel.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	@# ruff sees conflict markers in Python only; README and configs had some land once.
	@if git grep -nE '^(<<<<<<<|>>>>>>>)( |$$)'; then echo "merge conflict markers above"; exit 1; fi

bench: bench-preprocess bench-input bench-train bench-export

bench-preprocess: $(STAMP)
	$(PY) -m bench.preprocess_throughput --data_dir=$(UTKFACE) --limit=20107

bench-input: $(STAMP)
	$(PY) -m bench.input_throughput

bench-train: $(STAMP)
	$(PY) -m bench.train_throughput
	$(PY) -m bench.train_speed

bench-export: $(STAMP)
	$(PY) -m bench.export_latency

bench-faults: $(STAMP)
	$(PY) -m bench.faults

bench-scaling: $(STAMP)
	$(PY) -m bench.preprocess_scaling

bench-face-preprocess: $(STAMP)
	$(PY) -m bench.face_preprocess --data_dir=$(UTKFACE) --num_scenes=300

bench-ablation: $(STAMP)
	$(PY) -m bench.ablation --data_dir=$(UTKFACE)

bench-quality: $(STAMP)
	$(PY) -m bench.quality --data_dir=$(UTKFACE)

# Whole photo vs crop, rotated vs upright (UTK_MODEL: a model trained on UTK_RECORDS; the
# default is what `make bench-quality` leaves).
UTK_MODEL ?= bench_out/quality/model
UTK_RECORDS ?= bench_out/quality/data
bench-photo-accuracy: $(STAMP)
	$(PY) -m bench.photo_accuracy --model=$(UTK_MODEL) --records=$(UTK_RECORDS) \
		--faces_dir=$(UTKFACE)/images --num_faces=$(or $(NUM_FACES),100) --paste=$(or $(PASTE),rectangle)

demo-photos: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) DEMO_MODEL=$(DEMO_MODEL) PY=$(PY) bash scripts/demo_photos.sh

# The TFLite models (none/float16/int8) beside the SavedModel: validation MAE and latency.
EDGE_MODEL ?= $(DEMO_DIR)/model
bench-edge: $(STAMP)
	$(PY) -m bench.edge_model --model=$(EDGE_MODEL)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache *.egg-info

# The export against the serving runtime's own TensorFlow (not part of `make test`: it installs
# a second TF). SERVING_TF=2.19.1 checks the TensorFlow inside the pinned TF Serving image.
SERVING_TF ?= 2.15.1
SERVING_VENV ?= .venv-serving
SERVING_DIR ?= bench_out/serving_check

$(SERVING_VENV)/.tf-$(SERVING_TF):
	$(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/pip install --quiet --upgrade pip
	$(SERVING_VENV)/bin/pip install --quiet "tensorflow-cpu==$(SERVING_TF)"
	touch $@

check-serving: $(STAMP) $(SERVING_VENV)/.tf-$(SERVING_TF)
	rm -rf $(SERVING_DIR)
	$(PY) -m deploy.serving_runtime_check export --dir=$(SERVING_DIR)
	PYTHONPATH=. $(SERVING_VENV)/bin/python -m deploy.serving_runtime_check check --dir=$(SERVING_DIR)

bench-serving-memory: $(STAMP)
	$(PY) -m bench.serving_memory
