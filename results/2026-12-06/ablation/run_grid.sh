#!/usr/bin/env bash
# The issue-22 grids, one after another, one heavy job at a time; rerun to resume (finished cells are skipped,
# a killed fit resumes from its last checkpoint). Run from a worktree of the recorded commit (commit.txt):
#   git worktree add ../grid <commit> && cd ../grid
#   nohup results/2026-12-06/ablation/run_grid.sh > runs/grid.log 2>&1 &
#   python results/2026-12-06/ablation/export.py --runs runs --out <main checkout>/results/2026-12-06/ablation
# Every fit logs to CSV and to W&B offline (runs/<grid>/<cell>/<stage>/wandb: `wandb sync` uploads them).
set -uo pipefail
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p runs
status=0
python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/ablation --keep-going || status=1
python -m tl_lightning sweep configs/sweeps/pkt_subword.yaml --out runs/pkt_subword --keep-going || status=1
python -m tl_lightning sweep configs/sweeps/mae_error_rate.yaml --out runs/error_rate --keep-going || status=1
exit $status
