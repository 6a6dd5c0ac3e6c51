#!/usr/bin/env bash
# The error-rate grid as run (issue 22, second session of it), from the worktree of commit.txt, after run_grid.sh's
# first two grids. The 0.17 training file is byte-identical to the main grid's (quickstart:train_large), so the
# 0.17 cells would repeat the main grid's Standard SFT and +MAE cells (seeds 0-2) number for number. Running all of
# them would cost 6 cells (~55 min of a 2-core machine) to learn nothing new, so the new rates run first, seed by
# seed, and then one 0.17 rate (seed 0, MAE off and on) runs through this sweep as the reproduction check
# (check_reproduction.py --pairs). The error-rate table takes its 0.17 point from the main grid's SFT evaluations
# for every (seed, MAE) that this grid did not rerun (export.py says which).
set -uo pipefail
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
sweep=configs/sweeps/mae_error_rate.yaml
status=0
python -m tl_lightning sweep $sweep --out runs/error_rate --keep-going \
  --only '*error_rate_0.00*' '*error_rate_0.35*' '*error_rate_0.50*' || status=1
python -m tl_lightning sweep $sweep --out runs/error_rate --keep-going \
  --only 'seed_everything_0-*error_rate_0.17*' || status=1
exit $status
