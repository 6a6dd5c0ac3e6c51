#!/usr/bin/env bash
# One seed of the issue-11 measurement: the quick-start fine-tune of tl-small-base, then the test stage on
# synthetic_single (300), synthetic_multi (100) and a test_single set generated with seed 7 (nobody tuned on it).
#   bash results/2026-11-30/base_model/run_seed.sh SEED [RUN_ROOT] [extra fit args...]
# Resumable: a finished fit (run_status.json completed) or test (report.json present) is skipped.
set -euo pipefail
seed=$1; root=${2:-runs/base_model}; shift $(( $# >= 2 ? 2 : 1 ))
run=$root/sft_s$seed
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! grep -q '"completed": true' "$run/run_status.json" 2>/dev/null; then
  resume=(); [ -f "$run/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$run/checkpoints/last.ckpt" --trainer.max_time null)
  /usr/bin/time -f "fit wall %e s" python -m tl_lightning fit --config configs/quickstart.yaml --seed_everything "$seed" \
    --trainer.default_root_dir "$run" "${resume[@]}" "$@"
fi
[ -d runs/qs_seed7 ] || python -m tl_lightning.synthetic --out runs/qs_seed7 --seed 7
evaluate() {  # name config extra...
  local name=$1 cfg=$2; shift 2
  [ -f "$run/eval/$name/report.json" ] && return 0
  /usr/bin/time -f "test $name wall %e s" python -m tl_lightning test --config "configs/eval/$cfg.yaml" \
    --model.init_args.model "$run/hf" --model.init_args.output_dir "$run/eval/$name" "$@"
}
evaluate single synthetic_single
evaluate multi synthetic_multi
evaluate single_seed7 synthetic_single --data.init_args.path runs/qs_seed7/test_single.jsonl
