#!/bin/bash
# usage: run_multi.sh SEED -> multi-turn GRPO from /tmp/h13/sft/hf, then synthetic_multi test
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd /work/main
S=$1
start=$(date +%s)
python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml --model.init_args.actor /tmp/h13/sft/hf \
  --data.init_args.tokenizer /tmp/h13/sft/hf --data.init_args.train_path /tmp/h13/mt_tasks/test_multi.jsonl \
  --trainer.default_root_dir /tmp/h13/mt_s$S --seed_everything $S --model.init_args.sampling_seed $S ${EXTRA} > /tmp/h13/mt_s$S.log 2>&1
echo "fit seconds $(( $(date +%s) - start ))" >> /tmp/h13/mt_s$S.log
python -m tl_lightning test --config configs/eval/synthetic_multi.yaml --model.init_args.model /tmp/h13/mt_s$S/hf \
  --trainer.default_root_dir /tmp/h13/eval_mt_s$S > /tmp/h13/eval_mt_s$S.log 2>&1
