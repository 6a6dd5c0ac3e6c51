#!/bin/bash
# usage: mt_long.sh SEED STEPS [EPOCHS] -> multi-turn GRPO on quickstart:train_multi from the SFT quick start, then
# test_multi. STEPS caps the steps per epoch (an epoch is 100; "null": the whole epoch); EPOCHS defaults to 1.
#   one epoch, as run:    mt_long.sh SEED 400          -> runs/mt_long/s${SEED}_n400
#   three epochs, as run: mt_long.sh SEED null 3       -> runs/mt_long/s${SEED}_e3
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd "$(git rev-parse --show-toplevel)"
S=$1; N=$2; E=${3:-1}
D=runs/mt_long/s${S}_n${N}; [ "$E" != 1 ] && D=runs/mt_long/s${S}_e${E}
mkdir -p $D
start=$(date +%s)
python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml --model.init_args.actor runs/quickstart/hf \
  --data.init_args.tokenizer runs/quickstart/hf --trainer.default_root_dir $D --seed_everything $S \
  --model.init_args.sampling_seed $S --trainer.limit_train_batches $N --trainer.max_epochs $E \
  --trainer.max_time 00:00:40:00 > $D/fit.log 2>&1
echo "fit seconds $(( $(date +%s) - start ))" >> $D/fit.log
python -m tl_lightning test --config configs/eval/synthetic_multi.yaml --model.init_args.model $D/hf \
  --trainer.default_root_dir $D/eval > $D/eval.log 2>&1
echo "total seconds $(( $(date +%s) - start ))" >> $D/fit.log
