#!/usr/bin/env bash
# Recipe choice for issue 22: the quick start (1,217 trajectories, 1,400 steps) against a longer CPU recipe
# (10,000 trajectories from the same generator and training pools, 6,000 steps), 2 seeds each, SFT only (MAE+PKT, the
# shipped defaults), each tested on the quick-start test_single and test_multi sets.
# The long recipe's training file was made first (its train.jsonl is byte-identical to quickstart:train_large):
#   python -m tl_lightning.synthetic --out runs/data/large_10000 --n-train 10000 --n-val 100 --n-test 30 --n-train-multi 10
# The long recipe is now configs/small.yaml (same resolved config but for these paths).
set -euo pipefail
export TL_LIGHTNING_CACHE=/work/cache WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for seed in 0 1; do
  python -m tl_lightning cell --dir runs/recipe/quick_s$seed --irm off --fit-args='--trainer.max_time null' \
    fit --config configs/quickstart.yaml --seed_everything=$seed --trainer.enable_progress_bar=false
  python -m tl_lightning cell --dir runs/recipe/long_s$seed --irm off --fit-args='--trainer.max_time null' \
    fit --config configs/quickstart.yaml --seed_everything=$seed --trainer.enable_progress_bar=false \
    --data.init_args.train_path=runs/data/large_10000/train.jsonl --trainer.max_steps=6000 --trainer.val_check_interval=1000
done
