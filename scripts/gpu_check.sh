#!/usr/bin/env bash
# The GPU checks in one go, for whenever a CUDA device is available (they are deselected in a plain pytest run):
# an FSDP auto-wrap bf16 SFT step, a bf16 PPO step, and benchmarks/bench_sft_step.py --device cuda.
#
#     bash scripts/gpu_check.sh            # extra pytest arguments pass through, e.g. -x or -k ppo
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing to check" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# The last -m wins over pyproject's addopts (-m 'not gpu'); -rs lists any skip, which here would be a failure to look at.
python -m pytest -q -rs -m gpu tests/gpu "$@"
