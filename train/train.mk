# Training targets. Included from the top-level Makefile (`include train/train.mk`), which defines
# $(STAMP) (the virtualenv) and $(BIN). Every run writes into $(RUNS)/<name>/ and is resumed
# automatically when its folder holds a last.ckpt without final weights.
#
#   make synthetic-base    hrnet18s from scratch on synthetic objects (≤ 30 min) → held-out synthetic eval + curve
#   make photo-base        that base trained on coco_mval_dev photos + copy-paste + synthetic → GrabCut eval + curve
#   make bundle-reference  both bases + the best ablation adapter → models/reference/*.pt (+ curves, evals) → MODEL_CARD.md
#   make ablation          the ablation set on the same base → GrabCut + held-out synthetic HR → models/reference/ablation.md
#   make gpu-data          coco_mval_dev training photos packed (≤ 50 MiB) for train/gpu_run.sh on a GPU machine
#
# Variables: EDGECLICK_DATA (../shared/data), RUNS (runs), TRAIN_ARGS (extra key=value overrides for
# every run, e.g. "trainer.devices=2" or "max_steps=50"), ABLATION_ARGS (extra overrides for ablation
# runs only), EVAL_ARGS (extra `edgeclick evaluate` flags, e.g. --workers 2), HOLDOUT_BASE
# (the held-out synthetic set every model here is evaluated on: 40 images of 1024 px long side, seed 9001).
#
# Include this file after $(STAMP) and $(BIN) are defined (prerequisites expand when the rule is read).

EDGECLICK_DATA ?= ../shared/data
RUNS           ?= runs
REF            ?= models/reference
GRABCUT        ?= $(EDGECLICK_DATA)/grabcut
COCO           ?= $(EDGECLICK_DATA)/coco_mval_dev
ABLATION_OUT   ?= models/reference/ablation.md
TRAIN_ARGS     ?=
ABLATION_ARGS  ?=
EVAL_ARGS      ?=
CONFIGS        := train/configs

SYN_RUN   := $(RUNS)/synthetic_base_w18s
PHOTO_RUN := $(RUNS)/photo_base_w18s
BASE_RUN  := $(PHOTO_RUN)
BASE_CKPT := $(BASE_RUN)/last.pt
# Held-out synthetic set for the bases: 40 images of 1024 px (seed 9001, never used in training),
# evaluated letterboxed into the bases' pixel scale with a 10-click cap; GrabCut at the photo base's scale
# and at its own size (RITM's protocol).
HOLDOUT_BASE   ?= $(RUNS)/holdout_synthetic
SYN_EVAL_SIZE  ?= 128x192
PHOTO_EVAL_SIZE ?= 128x192
# The adapters (ablation, reference adapters) run at 2x the base's pixel scale.
ABLATION_EVAL_SIZE ?= 256x384
ABLATIONS := lora lora_bl conv conv_skip conv_skip_bl conv_skip_bl_sobel

# $(call train_run,CONFIG,OUT_DIR,EXTRA): train, resuming when OUT_DIR holds a last.ckpt.
define train_run
$(BIN)/edgeclick train --config $(1) out_dir=$(2) data.coco_dir=$(COCO) $(TRAIN_ARGS) $(3) \
	$(if $(wildcard $(2)/last.ckpt),--resume)
endef

# $(call evaluate,CHECKPOINT,DATA,OUT_DIR[,FORMAT])
define evaluate
$(BIN)/edgeclick evaluate --checkpoint $(1) --data $(2) --out $(3) $(if $(4),--dataset-format $(4)) $(EVAL_ARGS)
endef

.PHONY: ablation train-base gpu-data synthetic-base photo-base bundle-reference

# --- GPU run (train/gpu_run.sh on a lent GPU machine) ---------------------------------------------

GPU_DATA ?= $(RUNS)/gpu_data/coco_train
gpu-data: | $(STAMP)
	$(BIN)/python -m edgeclick.train.pack_data $(COCO) $(GPU_DATA) --max-mib 50

# --- bases that segment (from scratch on this CPU) ---------------------------------------------------

$(HOLDOUT_BASE)/gt: | $(STAMP)
	$(BIN)/python -m edgeclick.train.holdout $(HOLDOUT_BASE) --n 40 --size 1024

# The bases' final weights (last.pt) are what later steps use: their validation NoC@90 sat at the
# 10-click cap throughout, so "best" on it would be the first validated step.
$(SYN_RUN)/last.pt: | $(STAMP)
	$(call train_run,$(CONFIGS)/synthetic_base_w18s.yaml,$(SYN_RUN),data.coco_dir=null)

$(SYN_RUN)/eval_holdout/summary.json: $(SYN_RUN)/last.pt | $(HOLDOUT_BASE)/gt
	$(call evaluate,$<,$(HOLDOUT_BASE),$(@D),hq) --size $(SYN_EVAL_SIZE) --max-clicks 10

$(PHOTO_RUN)/last.pt: $(SYN_RUN)/last.pt
	$(call train_run,$(CONFIGS)/photo_base_w18s.yaml,$(PHOTO_RUN),base_checkpoint=$<)

$(PHOTO_RUN)/eval_grabcut/summary.json: $(PHOTO_RUN)/last.pt
	$(call evaluate,$<,$(GRABCUT),$(@D)) --size $(PHOTO_EVAL_SIZE)

$(PHOTO_RUN)/eval_grabcut_own_size/summary.json: $(PHOTO_RUN)/last.pt
	$(call evaluate,$<,$(GRABCUT),$(@D))

$(PHOTO_RUN)/eval_holdout/summary.json: $(PHOTO_RUN)/last.pt | $(HOLDOUT_BASE)/gt
	$(call evaluate,$<,$(HOLDOUT_BASE),$(@D),hq) --size $(PHOTO_EVAL_SIZE) --max-clicks 10

%/learning_curve.png: %/last.pt
	$(BIN)/python -m edgeclick.train.curves $* --out $@

%/learning_curve.png: %/last.adapter.pt
	$(BIN)/python -m edgeclick.train.curves $* --out $@

synthetic-base: $(SYN_RUN)/eval_holdout/summary.json $(SYN_RUN)/learning_curve.png
photo-base: $(PHOTO_RUN)/eval_grabcut/summary.json $(PHOTO_RUN)/eval_grabcut_own_size/summary.json \
            $(PHOTO_RUN)/eval_holdout/summary.json $(PHOTO_RUN)/learning_curve.png
train-base: $(PHOTO_RUN)/last.pt

# Bundle: the photo base as models/reference/base_w18s.pt, the synthetic base beside it,
# each with the meta the demo reads (input size; synthetic-only), evaluated as bundled, one model card.
$(REF)/base_w18s.pt: $(PHOTO_RUN)/last.pt
	$(BIN)/python -m edgeclick.train.bundle $< $@ --input-size $(PHOTO_EVAL_SIZE)

$(REF)/synthetic_base_w18s.pt: $(SYN_RUN)/last.pt
	$(BIN)/python -m edgeclick.train.bundle $< $@ --input-size $(SYN_EVAL_SIZE) --demo-data synthetic-holdout

$(REF)/eval/grabcut_lowres_%/summary.json: $(REF)/%.pt
	$(call evaluate,$<,$(GRABCUT),$(@D)) --size $(PHOTO_EVAL_SIZE)

$(REF)/eval/holdout_%/summary.json: $(REF)/%.pt | $(HOLDOUT_BASE)/gt
	$(call evaluate,$<,$(HOLDOUT_BASE),$(@D),hq) --size $(SYN_EVAL_SIZE) --max-clicks 10

# The bundled adapter: the ablation row with the lowest NoC@90 on Boundary IoU of the held-out synthetic set,
# ties (every row sat at the 20-click cap here) broken by the higher mean Boundary IoU after 5 clicks there
# (models/reference/ablation.md): +LoRA+BL. Merged into the base, bundled with the input size it was trained for;
# its numbers are the ablation's evaluations of the same merged weights.
ADAPTER ?= lora_bl
$(REF)/adapter_w18s.pt: $(RUNS)/ablation/$(ADAPTER)/merged.pt
	$(BIN)/python -m edgeclick.train.bundle $< $@ --input-size $(ABLATION_EVAL_SIZE)

# GrabCut at each image's own size (RITM's protocol) is `make photo-base`'s eval_grabcut_own_size (~10 min
# here) of the same weights as base_w18s.pt; the 2x rows are the ablation's evaluations of the same weights.
BUNDLE_EVALS := $(REF)/eval/grabcut_lowres_base_w18s/summary.json \
                $(foreach m,base_w18s synthetic_base_w18s,$(REF)/eval/holdout_$(m)/summary.json) \
                $(PHOTO_RUN)/eval_grabcut_own_size/summary.json \
                $(foreach r,base $(ADAPTER),$(RUNS)/ablation/$(r)/eval_grabcut/summary.json $(RUNS)/ablation/$(r)/eval_holdout/summary.json)

bundle-reference: $(BUNDLE_EVALS) $(REF)/adapter_w18s.pt $(PHOTO_RUN)/learning_curve.png $(SYN_RUN)/learning_curve.png $(RUNS)/ablation/$(ADAPTER)/learning_curve.png
	$(BIN)/python -m edgeclick.train.model_card --out $(REF)/MODEL_CARD.md --title "edgeclick reference models" \
		--model base_w18s $(REF)/base_w18s.pt --model synthetic_base_w18s $(REF)/synthetic_base_w18s.pt \
		--model adapter_w18s $(REF)/adapter_w18s.pt \
		--report base_w18s "GrabCut" $(REF)/eval/grabcut_lowres_base_w18s \
		--report base_w18s "held-out synthetic (1024 px)" $(REF)/eval/holdout_base_w18s \
		--report base_w18s "GrabCut" $(PHOTO_RUN)/eval_grabcut_own_size \
		--report base_w18s "GrabCut at 2x" $(RUNS)/ablation/base/eval_grabcut \
		--report base_w18s "held-out synthetic (1024 px) at 2x" $(RUNS)/ablation/base/eval_holdout \
		--report adapter_w18s "GrabCut at 2x" $(RUNS)/ablation/$(ADAPTER)/eval_grabcut \
		--report adapter_w18s "held-out synthetic (1024 px) at 2x" $(RUNS)/ablation/$(ADAPTER)/eval_holdout \
		--report synthetic_base_w18s "held-out synthetic (1024 px)" $(REF)/eval/holdout_synthetic_base_w18s \
		--curve base_w18s $(PHOTO_RUN)/learning_curve.png --curve synthetic_base_w18s $(SYN_RUN)/learning_curve.png \
		--curve adapter_w18s $(RUNS)/ablation/$(ADAPTER)/learning_curve.png

# --- ablation --------------------------------------------------------------------------------------

$(RUNS)/ablation/%/best.adapter.pt: $(BASE_CKPT)
	$(call train_run,$(CONFIGS)/ablation/$*.yaml,$(RUNS)/ablation/$*,base_checkpoint=$(BASE_CKPT) $(ABLATION_ARGS))

$(RUNS)/ablation/%/merged.pt: $(RUNS)/ablation/%/best.adapter.pt
	$(BIN)/edgeclick merge $(BASE_CKPT) $< $@

$(RUNS)/ablation/base/merged.pt: $(BASE_CKPT)
	@mkdir -p $(@D)
	cp $< $@.tmp && mv $@.tmp $@

# Every row, the base included, is evaluated at the adapters' input size: 2x the base's pixel scale.
$(RUNS)/ablation/%/eval_grabcut/summary.json: $(RUNS)/ablation/%/merged.pt
	$(call evaluate,$<,$(GRABCUT),$(@D)) --size $(ABLATION_EVAL_SIZE)

$(RUNS)/ablation/%/eval_holdout/summary.json: $(RUNS)/ablation/%/merged.pt | $(HOLDOUT_BASE)/gt
	$(call evaluate,$<,$(HOLDOUT_BASE),$(@D),hq) --size $(ABLATION_EVAL_SIZE)

ABLATION_ROWS := base:RITM_base lora:+LoRA lora_bl:+LoRA+BL conv:+conv conv_skip:+conv+skip \
                 conv_skip_bl:+conv+skip+BL conv_skip_bl_sobel:+conv+skip+BL+Sobel
ablation_name  = $(word 1,$(subst :, ,$(1)))
ablation_label = $(subst _, ,$(word 2,$(subst :, ,$(1))))
# `make ablation ABLATIONS="conv conv_skip"` runs and tabulates a subset (the base row always).
ablation_rows_run = $(foreach r,$(ABLATION_ROWS),$(if $(filter $(call ablation_name,$(r)),base $(ABLATIONS)),$(r)))

ablation: $(foreach r,base $(ABLATIONS),$(RUNS)/ablation/$(r)/eval_grabcut/summary.json $(RUNS)/ablation/$(r)/eval_holdout/summary.json)
	$(BIN)/python -m edgeclick.train.ablation --out $(ABLATION_OUT) --dataset GrabCut --dataset "Synthetic HR (held-out)" \
		$(foreach r,$(ablation_rows_run),--row "$(call ablation_label,$(r))" \
			$(RUNS)/ablation/$(call ablation_name,$(r))/eval_grabcut $(RUNS)/ablation/$(call ablation_name,$(r))/eval_holdout)

.PRECIOUS: $(RUNS)/ablation/%/best.adapter.pt $(RUNS)/ablation/%/merged.pt $(RUNS)/ablation/%/eval_grabcut/summary.json \
           $(RUNS)/ablation/%/eval_holdout/summary.json

# --- late fusion from an early checkpoint: the fast path with trained weights ----------------------------
# `make late-from-early` trains variant (a) (train/configs/late_from_early.yaml: backbone frozen, encoder outputs
# cached) from the bundled early base, then evaluates every row of the protocol table with one protocol:
# GrabCut at each image's own size (RITM's) and letterboxed to 256x384, and the held-out synthetic objects at
# 256x384, 20 clicks each; `make late-table` writes models/reference/late_fusion.md. Other rows:
# LATE_VARIANTS="lora conv scratch" (train/configs/late/*.yaml).
# By absolute path: the bundled base is a file to read here, not `bundle-reference`'s target to rebuild from runs/.
LATE_BASE      ?= $(abspath $(REF)/base_w18s.pt)
LATE_RUN       := $(RUNS)/late_from_early_w18s
LATE_VARIANTS  ?=
LATE_TABLE     ?= $(REF)/late_fusion.md
PROTOCOL       := $(RUNS)/protocol
PROTOCOL_SIZE  ?= 256x384

$(LATE_RUN)/last.pt: $(LATE_BASE)
	$(call train_run,$(CONFIGS)/late_from_early.yaml,$(LATE_RUN),base_checkpoint=$<)

$(RUNS)/late/%/last.pt: $(LATE_BASE)
	$(call train_run,$(CONFIGS)/late/$*.yaml,$(RUNS)/late/$*,$(if $(filter scratch,$*),,base_checkpoint=$<))

# Each row's weights, copied once, so that one set of pattern rules evaluates them all.
$(PROTOCOL)/early_base/model.pt: $(LATE_BASE)
$(PROTOCOL)/early_adapter/model.pt: $(abspath $(REF)/adapter_w18s.pt)
$(PROTOCOL)/late_a/model.pt: $(LATE_RUN)/last.pt
$(foreach v,$(LATE_VARIANTS),$(eval $(PROTOCOL)/late_$(v)/model.pt: $(RUNS)/late/$(v)/last.pt))
$(PROTOCOL)/%/model.pt:
	@mkdir -p $(@D)
	cp $< $@.tmp && mv $@.tmp $@

$(PROTOCOL)/%/grabcut_own/summary.json: $(PROTOCOL)/%/model.pt
	$(call evaluate,$<,$(GRABCUT),$(@D))

$(PROTOCOL)/%/grabcut_letterbox/summary.json: $(PROTOCOL)/%/model.pt
	$(call evaluate,$<,$(GRABCUT),$(@D)) --size $(PROTOCOL_SIZE)

$(PROTOCOL)/%/holdout/summary.json: $(PROTOCOL)/%/model.pt | $(HOLDOUT_BASE)/gt
	$(call evaluate,$<,$(HOLDOUT_BASE),$(@D),hq) --size $(PROTOCOL_SIZE)

protocol_evals = $(foreach d,grabcut_own grabcut_letterbox holdout,$(PROTOCOL)/$(1)/$(d)/summary.json)
LATE_ROWS := early_base late_a $(foreach v,$(LATE_VARIANTS),late_$(v))

.PHONY: late-from-early late-table
late-from-early: $(foreach r,$(LATE_ROWS),$(call protocol_evals,$(r))) $(LATE_RUN)/learning_curve.png \
                 $(foreach v,$(LATE_VARIANTS),$(RUNS)/late/$(v)/learning_curve.png)

late-table: late-from-early
	$(BIN)/python -m edgeclick.train.protocol_table --out $(LATE_TABLE) \
		--dataset "GrabCut (own size)" --dataset "GrabCut ($(PROTOCOL_SIZE))" --dataset "held-out synthetic ($(PROTOCOL_SIZE))" \
		$(foreach r,$(LATE_ROWS),--row $(r) $(PROTOCOL)/$(r)/model.pt $(patsubst %/summary.json,%,$(call protocol_evals,$(r))))

.PRECIOUS: $(PROTOCOL)/%/model.pt $(PROTOCOL)/%/grabcut_own/summary.json $(PROTOCOL)/%/grabcut_letterbox/summary.json \
           $(PROTOCOL)/%/holdout/summary.json $(RUNS)/late/%/last.pt

# The bundled late model: variant (a)'s final weights at the protocol's letterbox size, named by its table row
# (the demo's DEMO_RULE reads that row's GrabCut NoC@90 in late_fusion.json).
$(REF)/late_w18s.pt: $(LATE_RUN)/last.pt
	$(BIN)/python -m edgeclick.train.bundle $< $@ --input-size $(PROTOCOL_SIZE) --protocol-row late_a

# The bundled late + conv adapter model (variant c): the trained weights of the deploy table's fastest configuration.
$(REF)/late_conv_w18s.pt: $(RUNS)/late/conv/last.pt
	$(BIN)/python -m edgeclick.train.bundle $< $@ --input-size $(PROTOCOL_SIZE) --protocol-row late_conv
