#!/bin/bash
# Packed vs padded real tokens/s with the sdpa_varlen attention (tl_lightning/attention.py), side by side with sdpa,
# on the quick-start data. Measured on 2 shared cores while other jobs ran: OMP_NUM_THREADS=1 (compute-bound, immune
# to the thread-barrier stalls a niced 2-thread process suffers on a busy machine) is the comparison to read; the
# 2-thread run is printed as well. SMALL: the tl-small-base architecture (hidden 256, 4 layers, head_dim 64,
# vocab 4096, tied) -- tl-small-base itself once tl_lightning/assets/base_small holds its config.json.
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore
cd /work/main
SMALL=${SMALL:-tl-small-base}
B="nice -n 15 python -u benchmarks/bench_sft_step.py --packing --batch-size 4"
F='│\|─\|data (\|Loading weights'
echo "=== $SMALL, tl-small tokenizer, 1 thread";  OMP_NUM_THREADS=1 $B --model "$SMALL" --tokenizer tl-small --tokens-per-batch 1536 --steps 20 --warmup 2 2>&1 | grep -v "$F"
echo "=== $SMALL, 1 thread, 2 packed rows per batch"; OMP_NUM_THREADS=1 $B --model "$SMALL" --tokenizer tl-small --tokens-per-batch 3072 --steps 16 --warmup 2 --attn sdpa_varlen 2>&1 | grep -v "$F"
echo "=== tl-tiny, 1 thread"; OMP_NUM_THREADS=1 $B --model tl-tiny --tokens-per-batch 1536 --steps 20 --warmup 2 2>&1 | grep -v "$F"
echo "=== $SMALL, 2 threads";  $B --model "$SMALL" --tokenizer tl-small --tokens-per-batch 1536 --steps 12 --warmup 2 2>&1 | grep -v "$F"
echo "=== tl-tiny, 2 threads"; $B --model tl-tiny --tokens-per-batch 1536 --steps 10 --warmup 2 2>&1 | grep -v "$F"
echo done
