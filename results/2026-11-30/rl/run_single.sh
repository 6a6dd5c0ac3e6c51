#!/bin/bash
# usage: run_single.sh SEED  -> GRPO quick start from /tmp/h13/sft/hf, then test_single eval
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd /work/main
S=$1
start=$(date +%s)
python -m tl_lightning fit --config configs/grpo_quickstart.yaml --model.init_args.actor /tmp/h13/sft/hf \
  --data.init_args.tokenizer /tmp/h13/sft/hf --trainer.default_root_dir /tmp/h13/grpo_s$S --seed_everything $S \
  --model.init_args.sampling_seed $S ${EXTRA} > /tmp/h13/grpo_s$S.log 2>&1
echo "fit seconds $(( $(date +%s) - start ))" >> /tmp/h13/grpo_s$S.log
python -m tl_lightning test --config configs/eval/synthetic_single.yaml --model.init_args.model /tmp/h13/grpo_s$S/hf \
  --trainer.default_root_dir /tmp/h13/eval_grpo_s$S > /tmp/h13/eval_grpo_s$S.log 2>&1
