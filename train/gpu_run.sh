#!/usr/bin/env bash
# One time-boxed run of the full training recipe on a lent GPU machine (the device tool), results in $OUT.
#
#   here:  make gpu-data                       # coco_mval_dev training photos → runs/gpu_data (≤ 50 MiB)
#          (optional) wheels of missing packages in .whl/ (see the device tool's README)
#   there: run(command="bash train/gpu_run.sh", carry=["runs/gpu_data", ".whl"], timeout_s=600)
#   back:  $OUT/throughput.json, $OUT/weights.pt (fp16 if the fp32 file is over 15.5 MiB), $OUT/config.yaml,
#          $OUT/train.log; then evaluate weights.pt on GrabCut here, on the CPU.
#
# Extra key=value overrides pass through: bash train/gpu_run.sh batch_size=96 trainer.max_minutes=7
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder whose files come back}"
PY="${PYTHON:-python3}"
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$PY" - <<'PY'
import importlib.util
need = ["torch", "lightning", "albumentations", "cv2", "yaml", "scipy", "tensorboard", "tqdm"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gpu_run: missing Python packages on this machine: $missing; carry their wheels in .whl/ (device README)" >&2
  exit 2
fi
# The package maps train/ to edgeclick.train (pyproject package-dir): install it in place, no dependencies.
"$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null
[ -d runs/gpu_data/coco_train ] || { echo "gpu_run: runs/gpu_data/coco_train missing: run make gpu-data here and carry runs/gpu_data" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONUNBUFFERED=1 "$PY" -m edgeclick.train.gpu_run --config train/configs/gpu_base_w18s.yaml --out "$OUT" \
  out_dir=/tmp/gpu_run "$@" 2>&1 | tee "$OUT/train.log" | grep -v "Warning" | tail -n 40
