# Thin wrappers over the `edgeclick` CLI. Every target first creates/updates the local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   ?= ../shared/data/grabcut
SIZE   ?=
CKPT   ?=

TARGET ?= onnx
FUSION ?=
PRECISION ?= fp32

.PHONY: venv test test-all demo eval export calibrate bench-model import-ritm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

demo: $(STAMP)
	$(BIN)/edgeclick demo --data $(DATA) $(if $(CKPT),--checkpoint $(CKPT)) $(if $(SIZE),--size $(SIZE))

eval: $(STAMP)
	@test -n "$(CKPT)" || (echo "usage: make eval CKPT=path/to/checkpoint.pt [DATA=dir]"; exit 2)
	$(BIN)/edgeclick evaluate --checkpoint $(CKPT) --data $(DATA)

export: $(STAMP)
	@test -n "$(CKPT)" || (echo "usage: make export TARGET=onnx|trt|coreml|all CKPT=model.pt [SIZE=640x960] [FUSION=late|early] [PRECISION=fp32|fp16]"; exit 2)
	$(BIN)/edgeclick export --target $(TARGET) --checkpoint $(CKPT) --precision $(PRECISION) $(if $(SIZE),--size $(SIZE)) $(if $(FUSION),--fusion $(FUSION))

# Variants of CKPT (default: the bundled reference) for TARGET, calibrated on CALIB_DATA click sessions and
# gated on DATA: reports/calibration/<name>/calibration.md, artifacts/calibration/<name>/final/.
CALIB_CKPT     ?= models/reference/conv_adapter_w18s.pt
CALIB_DATA     ?= $(EDGECLICK_DATA)/coco_mval_dev
CALIBRATE_ARGS ?=
calibrate: $(STAMP)
	$(BIN)/edgeclick calibrate --checkpoint $(or $(CKPT),$(CALIB_CKPT)) --target $(TARGET) --data $(DATA) \
		--calib-data $(CALIB_DATA) $(if $(SIZE),--size $(SIZE)) $(CALIBRATE_ARGS)

bench-model: $(STAMP)
	$(BIN)/python -m edgeclick.bench_model

import-ritm: $(STAMP)
	@test -n "$(SRC)" -a -n "$(DST)" || (echo "usage: make import-ritm SRC=ritm.pth DST=out.pt"; exit 2)
	$(BIN)/edgeclick import-ritm $(SRC) $(DST)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# train-reference, train-base, ablation
include train/train.mk
