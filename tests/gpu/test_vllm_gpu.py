"""The colocated vLLM engine on a GPU (the real ``vllm`` package): bf16, sharing the device with the trainer.

Deselected by default and skipped without CUDA or vLLM (``pip install -e '.[vllm]'``); ``scripts/gpu_check.sh``
runs it. In bf16 vLLM's kernels and HF's round differently, so greedy ids agree on most rows rather than all,
and log-probs within bf16 noise; the CPU lane (float32) holds the exact checks.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_vllm_engine_on_gpu_matches_the_trainer_and_follows_weight_syncs(tmp_path):
    pytest.importorskip("vllm")
    from tl_lightning.checkpoints import load_pretrained
    from tl_lightning.generation import sequence_logprobs, tokenize_prompts
    from tl_lightning.rl.data import PromptDataModule
    from tl_lightning.rl.engines import (
        HFEngine,
        SamplingSettings,
        VLLMEngine,
        VLLMSettings,
        sampler_mismatch,
    )

    torch.manual_seed(0)
    loaded = load_pretrained("tl-tiny", dtype="bfloat16", tiny_config={"num_hidden_layers": 6, "hidden_size": 256, "intermediate_size": 768})
    model, tok = loaded.model.cuda().eval(), loaded.tokenizer
    dm = PromptDataModule(train_path="quickstart", template="python_sig", tokenizer=tok, batch_size=32, max_train_prompts=32)
    dm.setup("fit")
    prompts = tokenize_prompts(tok, [r.text for r in dm.train_prompts])
    engine = VLLMEngine(model, tok, VLLMSettings(gpu_memory_utilization=0.3))
    greedy = SamplingSettings(max_new_tokens=32, stop_token_ids=(tok.eos_token_id,))

    def check() -> tuple[int, float]:
        ours, hf = engine.generate(prompts, greedy), HFEngine(model, tok).generate(prompts, greedy)
        same = sum(ours.responses[b, :8].tolist() == hf.responses[b, :8].tolist() for b in range(len(prompts)))
        with torch.no_grad():
            trainer = sequence_logprobs(model, ours.sequences, ours.attention_mask, ours.prompt_length)
        return same, sampler_mismatch(trainer, ours.logprobs, ours.response_mask)["abs_diff"].item()

    same, diff = check()
    assert same >= 28 and diff < 0.05, (same, diff)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert check()[1] > 5 * diff  # the engine still holds the old weights: the mismatch shows it
    seconds = engine.sync_weights(model)
    same, diff_after = check()
    assert same >= 28 and diff_after < 0.05 and seconds < 10, (same, diff_after, seconds)
    engine.close()
