#!/usr/bin/env bash
# Issue 11's measurements, in order, resumable (each step skips what is done):
#   bash results/2026-11-30/base_model/run_all.sh > runs/base_model.log 2>&1
set -euo pipefail
here=$(dirname "$0")
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The base model alone, prompted with the quick-start tools (configs/eval/* default to tl-small-base).
for set in single multi; do
  out=runs/base_model/base/eval/$set
  [ -f "$out/report.json" ] || /usr/bin/time -f "test base $set wall %e s" \
    python -m tl_lightning test --config configs/eval/synthetic_$set.yaml --model.init_args.output_dir "$out"
done
bash "$here/run_seed.sh" 0 runs/base_model
bash "$here/run_seed.sh" 1 runs/base_model
bash "$here/run_seed.sh" 0 runs/base_model_random --config configs/experiments/random_init.yaml
bash "$here/run_seed.sh" 1 runs/base_model_random --config configs/experiments/random_init.yaml
