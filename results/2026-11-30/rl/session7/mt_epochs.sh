#!/bin/bash
# usage: mt_epochs.sh SEED EPOCHS -> multi-turn GRPO on quickstart:train_multi from the SFT quick start, then test_multi
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd "$(git rev-parse --show-toplevel)"
S=$1; E=$2; D=runs/mt_long/s${S}_e${E}
mkdir -p $D
start=$(date +%s)
python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml --model.init_args.actor runs/quickstart/hf \
  --data.init_args.tokenizer runs/quickstart/hf --trainer.default_root_dir $D --seed_everything $S \
  --model.init_args.sampling_seed $S --trainer.max_epochs $E --trainer.max_time 00:00:40:00 > $D/fit.log 2>&1
echo "fit seconds $(( $(date +%s) - start ))" >> $D/fit.log
python -m tl_lightning test --config configs/eval/synthetic_multi.yaml --model.init_args.model $D/hf \
  --trainer.default_root_dir $D/eval > $D/eval.log 2>&1
echo "total seconds $(( $(date +%s) - start ))" >> $D/fit.log
