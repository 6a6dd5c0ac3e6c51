#!/bin/bash
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore
cd /work/main
echo "=== packing"; python -u benchmarks/bench_sft_step.py --packing --batch-size 4 --tokens-per-batch 1536 --steps 30 --warmup 2 2>&1 | grep -v "│\|─\|data ("
echo "=== epoch"; python -u benchmarks/bench_epoch.py --trajectories 240 2>&1 | grep -v "│\|─\|data ("
echo done
