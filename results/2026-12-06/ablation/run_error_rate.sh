#!/usr/bin/env bash
# The rest of issue 22 as run (2026-12-07, second session), from the worktree of commit.txt, after run_grid.sh's
# first two grids:
# 1. The error-rate grid's new rates (0, 0.35, 0.5), seed by seed.
# 2. The main grid's seed-2 Standard SFT cell, rerun through `sweep configs/sweeps/tl_ablation.yaml --only`. Its
#    committed SFT was cut by a session's end at about step 4,300 and resumed from last.ckpt, so this checks both
#    that the sweep reproduces a committed cell and that a resumed fit equals an uninterrupted one
#    (check_reproduction.py --rerun runs/again/seed_everything_2-use_mae_false-use_pkt_false).
# 3. Not reached in that session (the machine was shared with two CI runs): one 0.17 cell of the error-rate grid.
#    Its training file is byte-identical to the main grid's (quickstart:train_large) and its configuration the same,
#    so it must equal the main grid's cell (check_reproduction.py --pairs). Running all six 0.17 cells would cost
#    ~45 min of a 2-core machine to learn nothing new: export.py fills the 0.17 point from the main grid's SFT
#    evaluations instead.
set -uo pipefail
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
python -m tl_lightning sweep configs/sweeps/mae_error_rate.yaml --out runs/error_rate --keep-going \
  --only '*error_rate_0.00*' '*error_rate_0.35*' '*error_rate_0.50*' || status=1
python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/again \
  --only 'seed_everything_2-use_mae_false-use_pkt_false' || status=1
python -m tl_lightning sweep configs/sweeps/mae_error_rate.yaml --out runs/error_rate --keep-going \
  --only 'seed_everything_0-*error_rate_0.17*use_mae_false*' || status=1
exit $status
