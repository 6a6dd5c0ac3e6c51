#!/bin/bash
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore
cd /work/main
echo "=== vocab"; /usr/bin/time -v python benchmarks/bench_sft_step.py --vocab 32000 128256 151936 --batch-size 4 --steps 5 --warmup 1 2>&1 | grep -v "│\|─\|data (" | grep -v "^\s*\(Page\|Volun\|Invol\|Swaps\|File\|Socket\|Signals\|Average\|Exit\|Minor\|Major\|Percent\|System\|User\|Command\)"
echo "=== chunks 32k"; python benchmarks/bench_sft_step.py --vocab 32000 --batch-size 16 --chunks 0 128 256 512 1024 --steps 3 --warmup 1 2>&1 | grep -v "│\|─\|data ("
echo "=== chunks 152k"; python benchmarks/bench_sft_step.py --vocab 151936 --batch-size 4 --chunks 0 32 64 128 --steps 3 --warmup 1 2>&1 | grep -v "│\|─\|data ("
echo done
