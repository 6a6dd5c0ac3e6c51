#!/usr/bin/env bash
# Issue 11 on a GPU: pretrain a 6.2M-parameter base on ~50x the tokens of the CPU runs, in one device call.
# Written for a session whose task is lent a GPU (15 minutes of device time, at most 10 per command):
#   run(command="bash results/2026-11-30/base_model/gpu_recipe.sh", timeout_s=600)
# It writes the bf16 export to $OUT within what the device tool copies back (8 files of 16 MiB): the safetensors
# shards (at most 15 MB each) as they are, and everything else (config, tokenizer, pretraining.json, logs) in
# meta.tar. Put them back together with `mkdir hf && tar -xf meta.tar -C hf && cp model*.safetensors hf/`.
# Then, on CPU, copy that folder to tl_lightning/assets/base_small and fine-tune it with
# results/2026-11-30/base_model/run_seed.sh on the branch wip/issue-11-quickstart-on-base. That branch's
# configs/experiments/random_init.yaml (the random-weights line) and sft_base.yaml's comment still say 4 layers:
# set them to the base's shape.
#
# Untested on a GPU so far; the same steps run on CPU at toy size (2–3 minutes):
#   OUT=/tmp/gpu_recipe DEVICE=cpu PRECISION=32-true DOCS=300 STEPS=4 ROWS=2 HIDDEN=32 LAYERS=2 HEADS=2 \
#       bash results/2026-11-30/base_model/gpu_recipe.sh
#
# Sizes, from the measurements in README.md ("Where this leaves issue 11"):
# - the size is capped by the quick start, not by the GPU: the base is fine-tuned on 2 CPU cores in at most 5 minutes.
#   Hidden 256, 6 layers, 4 heads, FFN 768, tl-small's 4,096 tokens: 6.2M parameters (12 MB in bf16). One epoch of
#   the quick-start fine-tune took 185 s of training (198 s for the whole fit) on 2 cores (session 7). Stage 1's 4
#   layers took 131 s. Two more layers give induction circuits more room.
# - 400k corpus documents (about 300M tokens), rows of 1,536 tokens, 64 rows a step (~98k tokens): 4,000 steps are
#   ~390M tokens, 50x stage 1's 7.8M; --max-minutes stops (and saves) earlier if the GPU is slower than guessed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
: "${OUT:?set OUT, the folder the export and logs go to}"
DEVICE=${DEVICE:-cuda} PRECISION=${PRECISION:-bf16-mixed} DOCS=${DOCS:-400000} STEPS=${STEPS:-4000} ROWS=${ROWS:-64}
HIDDEN=${HIDDEN:-256} LAYERS=${LAYERS:-6} HEADS=${HEADS:-4} MINUTES=${MINUTES:-5.5}
WORKERS=$(python3 -c "import os; print(max(1, len(os.sched_getaffinity(0))))")
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true  # the tokenizer uses every core
mkdir -p "$OUT" runs
python3 - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
{
  /usr/bin/time -f "corpus wall %e s" python3 -m tl_lightning.synthetic.pretrain --out data/pretrain_gpu --seed 0 \
    --n "$DOCS" --n-val 200 --workers "$WORKERS"
  /usr/bin/time -f "pretrain wall %e s" python3 scripts/pretrain_base.py --corpus data/pretrain_gpu --out runs/pretrain_gpu \
    --device "$DEVICE" --precision "$PRECISION" --hidden "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" \
    --seq-len 1536 --batch-rows "$ROWS" --lr 1.5e-3 --warmup $(( STEPS / 15 + 1 )) --max-steps "$STEPS" \
    --max-minutes "$MINUTES" --seed 0 --threads "$WORKERS" --log-every 50 --eval-every 500 --save-every 1000000 \
    --save-dtype bfloat16 --max-shard-size 15MB
  python3 results/2026-11-30/base_model/probe_copy.py runs/pretrain_gpu/hf --corpus data/pretrain_gpu/val.jsonl
} 2>&1 | tee "$OUT/pretrain.log"
cp runs/pretrain_gpu/hf/model*.safetensors "$OUT/"
mv "$OUT/env.txt" "$OUT/pretrain.log" runs/pretrain_gpu/hf/
tar -cf "$OUT/meta.tar" -C runs/pretrain_gpu/hf --exclude 'model*.safetensors' .
ls -la "$OUT"
