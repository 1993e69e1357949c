# One place for every command; CI (.ci/run) calls these targets verbatim.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0: a CPU build where a local wheel exists, otherwise PyPI's default (CUDA) build.
# Override for another build, e.g. `make install TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
PROTO_FILES := protos/lossd/v1/loss_service.proto protos/lossd/oip/grpc_predict_v2.proto
# The stubs come from an old grpcio-tools whose code the newest protobuf still loads: its gencode (protobuf
# 5.29.0) runs on protobuf 5.29.1 up to 7.x and on grpcio 1.71 up, the range users have. It lives in a venv of its own, since
# it needs protobuf < 6 and the rest of the project does not.
GRPC_TOOLS_SPEC ?= grpcio-tools==1.71.0
PROTOC_VENV ?= .venv-protoc
PROTOC = $(PROTOC_VENV)/bin/python -m grpc_tools.protoc -Iprotos

.PHONY: install test-deps serve test fuzz soak lint protos check-protos readme bench gpu-check wheelhouse \
	gpu-offline clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[server,test,dev,bench,score,ray,tracing,xgboost,lightgbm,jax]"
	touch $@

serve: install
	$(BIN)/lossd serve

test: install test-deps check-protos lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fuzz tests with many more, random examples (CI runs a fixed, smaller set).
fuzz: install
	LOSSD_FUZZ_EXAMPLES=$${LOSSD_FUZZ_EXAMPLES:-5000} LOSSD_FUZZ_RANDOM=1 $(BIN)/python -m pytest tests/test_fuzz.py -q

# 64 concurrent clients for 60 s against a fresh server (the test suite runs a shorter one).
soak: install
	$(BIN)/lossd soak --seconds 60 --clients 64

# Debian's prometheus, for the test that scrapes lossd with a real Prometheus (skipped where it cannot be had).
test-deps:
	@command -v prometheus >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   prometheus) >/dev/null 2>&1; } || echo "prometheus unavailable: its test will be skipped"

lint: install
	$(BIN)/ruff check .

$(PROTOC_VENV)/.installed: Makefile
	test -x $(PROTOC_VENV)/bin/python || $(PYTHON) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/python -m pip install -q "$(GRPC_TOOLS_SPEC)"
	touch $@

# Regenerate the Python stubs from the .proto (the only way they are ever changed).
protos: $(PROTOC_VENV)/.installed
	$(PROTOC) --python_out=protos --pyi_out=protos --grpc_python_out=protos $(PROTO_FILES)

# Fails when the committed stubs differ from a fresh generation.
check-protos: $(PROTOC_VENV)/.installed
	@tmp=$$(mktemp -d) && \
	$(PROTOC) --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTO_FILES) && \
	for f in $$tmp/lossd/*/*_pb2*; do \
	  rel=$${f#$$tmp/}; \
	  diff -u "protos/$$rel" "$$f" >/dev/null || \
	  { echo "stale stub: protos/$$rel differs from a fresh generation; run 'make protos'"; \
	    rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "stubs match $(PROTO_FILES)"

# Rewrite the README's loss table from the registry.
readme: install
	$(BIN)/python tests/readme_table.py --write

# lossd against the gRPC echo ceiling and torch in-process; writes docs/bench/ and the README's table.
bench: install
	$(BIN)/lossd bench --out docs/bench --readme README.md

# The cuda-marked tests (they skip cleanly without CUDA), including the end-to-end GPU smoke test.
gpu-check: install
	$(BIN)/python -m pytest -m cuda -v $(PYTEST_ARGS)

# For a CUDA host without access to a package registry, whose Python already holds torch, numpy, grpcio,
# protobuf, prometheus-client, pytest and matplotlib (a typical PyTorch image): `make wheelhouse` on a
# connected machine gathers lossd's wheel and the rest, at the versions installed here, for that host's
# Python (WHEEL_PY); copy the tree over and run `make gpu-offline` there. It installs them into
# .offline-site (never into the image), runs the GPU tests and the benchmark's GPU mode into bench-gpu/.
WHEEL_PY ?= 3.12
OFFLINE_PACKAGES := grpcio grpcio-health-checking grpcio-reflection grpcio-status googleapis-common-protos \
	pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv
wheelhouse: install
	rm -rf wheelhouse && mkdir wheelhouse
	$(BIN)/python -m pip wheel -q --no-deps -w wheelhouse .
	$(BIN)/python -m pip freeze | grep -iE '^($(subst -,[-_],$(subst $(eval) ,|,$(OFFLINE_PACKAGES))))==' > wheelhouse/requirements.txt
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $(WHEEL_PY) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d wheelhouse -r wheelhouse/requirements.txt

gpu-offline:
	$(PYTHON) -m pip install -q --no-index --no-deps --no-compile --upgrade --target .offline-site wheelhouse/*.whl
	PYTHONPATH=$(CURDIR)/.offline-site $(PYTHON) -m pytest -p no:cacheprovider -m cuda -v \
		tests/test_cuda.py tests/test_faults.py tests/test_placement.py
	PYTHONPATH=$(CURDIR)/.offline-site $(PYTHON) -m lossd.cli bench --gpu --out bench-gpu

clean:
	rm -rf $(VENV) $(PROTOC_VENV) build *.egg-info .pytest_cache .ruff_cache wheelhouse .offline-site bench-gpu
