"""The rollout-engine seam without vLLM: the HF engine's ids and sampling log-probs, the mismatch and TIS maths,
settings, the weights handed to an engine, and sampler log-probs through multi-turn episodes."""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch

from tl_lightning.checkpoints import load_pretrained
from tl_lightning.generation import GenerationOutput, generate, sequence_logprobs
from tl_lightning.rl.engines import (
    HFEngine,
    SamplingSettings,
    VLLMEngine,
    full_weights,
    sampler_mismatch,
    tis_weights,
)

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    loaded = load_pretrained("tl-tiny", tiny_config=TINY)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(5, 500, (int(n),), generator=g).tolist() for n in (7, 12, 3, 9)]
    return loaded.model.eval(), loaded.tokenizer, prompts


def _logprobs_of(model, out: GenerationOutput, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        return sequence_logprobs(model, out.sequences, out.attention_mask, out.prompt_length, temperature=temperature)


def test_hf_engine_gives_generates_ids_and_the_trainers_logprobs(lm, one_thread):
    model, tok, prompts = lm
    greedy = SamplingSettings(max_new_tokens=10, stop_token_ids=(tok.eos_token_id,))
    out = HFEngine(model, tok).generate(prompts, greedy)
    ref = generate(model, tok, [], prompt_ids=prompts, max_new_tokens=10, stop_token_ids=[tok.eos_token_id])
    assert torch.equal(out.sequences, ref.sequences) and out.texts == ref.texts and ref.logprobs is None
    assert torch.allclose(out.logprobs, _logprobs_of(model, out, 1.0) * out.response_mask, atol=1e-5)
    sampled = SamplingSettings(max_new_tokens=10, do_sample=True, temperature=0.7, seed=3)
    out = HFEngine(model, tok).generate(prompts, sampled)
    assert torch.allclose(out.logprobs, _logprobs_of(model, out, 0.7) * out.response_mask, atol=1e-5)


def test_top_k_logprobs_are_of_the_truncated_distribution_and_zero_on_padding(lm, one_thread):
    model, tok, prompts = lm
    out = HFEngine(model, tok).generate(prompts, SamplingSettings(max_new_tokens=10, do_sample=True, top_k=5, seed=0))
    trainer = _logprobs_of(model, out, 1.0)
    on = out.response_mask.bool()
    # renormalised over 5 tokens: every sampled token is likelier than under the full softmax
    assert torch.isfinite(out.logprobs).all() and (out.logprobs[on] > trainer[on]).all()
    assert (out.logprobs[~on] == 0).all()


def test_sampler_mismatch_by_hand():
    trainer = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    sampler = torch.log(torch.tensor([[0.25, 0.25, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding: ignored
    stats = sampler_mismatch(trainer, sampler, mask)
    # token 1: r = p_trainer / p_sampler = 2, |d| = log 2, k3 = r - 1 - log r; token 2 agrees: 0
    assert stats["abs_diff"].item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    assert stats["kl"].item() == pytest.approx((2 - 1 - math.log(2)) / 2, rel=1e-6)
    same = sampler_mismatch(trainer, trainer.clone(), mask)
    assert same["abs_diff"].item() == 0 and same["kl"].item() == 0


def test_tis_weights_by_hand():
    trainer = torch.log(torch.tensor([[0.5, 0.2, 0.1, 0.9]]))
    sampler = torch.log(torch.tensor([[0.1, 0.4, 0.1, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = tis_weights(trainer.requires_grad_(), sampler, mask, cap=2.0)
    assert w.tolist()[0] == pytest.approx([2.0, 0.5, 1.0, 0.0], rel=1e-6)  # 5 capped at 2; padding 0
    assert not w.requires_grad


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_engine_without_vllm_says_how_to_install_it(lm):
    model, tok, _ = lm
    with pytest.raises(ImportError, match=r"pip install 'tl_lightning\[vllm\]'"):
        VLLMEngine(model, tok)


def test_full_weights_of_a_plain_model_are_its_state_dict(lm):
    model = lm[0]
    weights = full_weights(model)
    state = model.state_dict()
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)


def test_full_weights_of_a_lora_model_are_the_merged_weights_under_hf_names(lm):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    base, tok, prompts = lm
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    x = torch.tensor([prompts[0]])
    before = peft_model(input_ids=x).logits
    weights = full_weights(peft_model)
    merged = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    assert weights.keys() == base.state_dict().keys()
    assert all(torch.allclose(weights[k], merged[k], atol=1e-6) for k in merged)
    assert not torch.allclose(weights["model.layers.0.self_attn.q_proj.weight"], base.state_dict()["model.layers.0.self_attn.q_proj.weight"])
    assert torch.allclose(peft_model(input_ids=x).logits, before, atol=1e-6)  # unmerged again


def _fsdp2_worker(rank: int, world: int, port: int, queue) -> None:
    import os

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = load_pretrained("tl-tiny", tiny_config=TINY).model
        expected = {k: v.clone() for k, v in model.state_dict().items()}
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        sharded = next(model.parameters())
        weights = full_weights(model)  # every rank runs the all-gather, every rank gets the full tensors
        queue.put((rank, type(sharded).__name__, weights.keys() == expected.keys(),
                   all(torch.equal(torch.as_tensor(weights[k]), expected[k]) for k in expected)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_full_weights_gathers_fsdp2_shards_on_every_rank():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").Queue()
    mp.start_processes(_fsdp2_worker, args=(2, port, queue), nprocs=2, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=30) for _ in range(2))
    assert results == [(0, "DTensor", True, True), (1, "DTensor", True, True)]
