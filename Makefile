# Thin wrappers over the `edgeclick` CLI. Every target first creates/updates the local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
WEB_STAMP := web/node_modules/.package-lock.json
DATA   ?= ../shared/data/grabcut
# demo data: default GrabCut, or held-out synthetic images for a synthetic-only model (edgeclick demo --help)
DEMO_DATA ?=
SIZE   ?=
CKPT   ?=

TARGET ?= onnx
FUSION ?=
PRECISION ?= fp32

.PHONY: venv test test-all test-portable demo weights eval export calibrate bench-model import-ritm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test,executorch]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) $(WEB_STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP) $(WEB_STAMP)
	$(BIN)/python -m pytest -m ""

# The tests that compare float outputs of torch, onnxruntime, OpenCV and CoreML conversion, again under torch's
# portable kernels: a check that holds only on this CPU's vectorised path (AVX2 / AVX-512) fails here, not on
# another machine. .ci/run runs it after `make test`.
NUMERIC_TESTS ?= tests/test_model.py tests/test_split.py tests/test_lora.py tests/test_ritm_import.py tests/test_losses.py \
	tests/test_train_data.py tests/test_metrics.py tests/test_export_onnx.py tests/test_parity.py tests/test_export_coreml.py
test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -r fEs $(NUMERIC_TESTS)

# Browser runtime: onnxruntime-web at the version pinned in web/package-lock.json, into ignored web/node_modules.
ARTIFACT ?=
PORT ?= 8000
HOST ?= 127.0.0.1
.PHONY: web web-deps
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --ignore-scripts
	touch $(WEB_STAMP)

web-deps: $(WEB_STAMP)

web: $(STAMP) $(WEB_STAMP)
	@test -n "$(ARTIFACT)" || (echo "usage: make web ARTIFACT=artifacts/<name> [PORT=8000] [HOST=127.0.0.1|0.0.0.0]"; exit 2)
	$(BIN)/edgeclick web $(ARTIFACT) --port $(PORT) --host $(HOST)

# MODEL: a registered weights name (make weights NAME=ritm-hrnet18s first) or a checkpoint path; CKPT works too.
MODEL ?=
demo: $(STAMP)
	$(BIN)/edgeclick demo $(if $(DEMO_DATA),--data $(DEMO_DATA)) $(if $(or $(MODEL),$(CKPT)),--checkpoint $(or $(MODEL),$(CKPT))) $(if $(SIZE),--size $(SIZE))

# RITM's published checkpoints: `make weights` lists them, `make weights NAME=ritm-hrnet18s` downloads one.
weights: $(STAMP)
	$(BIN)/edgeclick weights $(if $(NAME),get $(NAME),list)

eval: $(STAMP)
	@test -n "$(CKPT)" || (echo "usage: make eval CKPT=path/to/checkpoint.pt [DATA=dir]"; exit 2)
	$(BIN)/edgeclick evaluate --checkpoint $(CKPT) --data $(DATA)

export: $(STAMP)
	@test -n "$(CKPT)" || (echo "usage: make export TARGET=onnx|trt|coreml|executorch|all CKPT=model.pt [SIZE=640x960] [FUSION=late|early] [PRECISION=fp32|fp16]"; exit 2)
	$(BIN)/edgeclick export --target $(TARGET) --checkpoint $(CKPT) --precision $(PRECISION) $(if $(SIZE),--size $(SIZE)) $(if $(FUSION),--fusion $(FUSION))

# Variants of CKPT (default: the bundled reference) for TARGET, calibrated on CALIB_DATA click sessions and
# gated on DATA: reports/calibration/<name>/calibration.md, artifacts/calibration/<name>/final/.
CALIB_CKPT     ?= models/reference/base_w18s.pt
CALIB_DATA     ?= $(EDGECLICK_DATA)/coco_mval_dev
CALIBRATE_ARGS ?=
calibrate: $(STAMP)
	$(BIN)/edgeclick calibrate --checkpoint $(or $(CKPT),$(CALIB_CKPT)) --target $(TARGET) --data $(DATA) \
		--calib-data $(CALIB_DATA) $(if $(SIZE),--size $(SIZE)) $(CALIBRATE_ARGS)

# The "which configuration to deploy" table: every fusion × adapter × precision (+ SAM peers when the
# peers extra is installed: DEPLOY_ARGS="--peer sam-vit-b --peer mobilesam") → reports/deploy/{deploy.md,table.md,
# deploy.json,sessions.png}, and the table replaces docs/deploy.md's deploy-table block (README.md quotes its rows).
DEPLOY_ARGS ?=
.PHONY: deploy-table
deploy-table: $(STAMP)
	$(BIN)/edgeclick deploy-table --doc docs/deploy.md $(DEPLOY_ARGS)

# ONNX Runtime Mobile readiness of an ONNX artifact: NNAPI / CoreML EP partitions, .ort files checked against the .onnx
# → reports/phone-readiness/<artifact>/ (readiness.md, readiness.json, encoder.ort, decoder.ort).
.PHONY: phone-readiness
phone-readiness: $(STAMP)
	@test -n "$(ARTIFACT)" || (echo "usage: make phone-readiness ARTIFACT=artifacts/<name>-onnx"; exit 2)
	$(BIN)/edgeclick phone-readiness $(ARTIFACT)

bench-model: $(STAMP)
	$(BIN)/python -m edgeclick.bench_model

import-ritm: $(STAMP)
	@test -n "$(SRC)" -a -n "$(DST)" || (echo "usage: make import-ritm SRC=ritm.pth DST=out.pt"; exit 2)
	$(BIN)/edgeclick import-ritm $(SRC) $(DST)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# synthetic-base, photo-base, bundle-reference, ablation, gpu-data
include train/train.mk
