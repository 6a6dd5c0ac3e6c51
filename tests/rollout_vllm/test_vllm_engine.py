"""The colocated vLLM engine against HF generate and the trainer's own forward pass (CPU, float32, tl-tiny).

Runs where vLLM imports (``.ci/run``'s vLLM lane installs the CPU build); skipped elsewhere. On CPU the engine
runs in-process on one thread (``OMP_NUM_THREADS=1``), as the lane sets.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (the vLLM lane of .ci/run installs it)")

from tl_lightning.checkpoints import load_pretrained  # noqa: E402
from tl_lightning.generation import sequence_logprobs, tokenize_prompts  # noqa: E402
from tl_lightning.rl.data import PromptDataModule  # noqa: E402
from tl_lightning.rl.engines import HFEngine, SamplingSettings, VLLMEngine, VLLMSettings  # noqa: E402

#: CPU memory for the KV cache: on the CPU build gpu_memory_utilization is a share of host RAM
SETTINGS = VLLMSettings(kv_cache_memory_bytes=256 * 2**20, enforce_eager=True)
NEW = 16


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    loaded = load_pretrained("tl-tiny")
    model, tok = loaded.model.float().eval(), loaded.tokenizer
    dm = PromptDataModule(train_path="quickstart", template="python_sig", tokenizer=tok, batch_size=32, max_train_prompts=32)
    dm.setup("fit")
    prompts = tokenize_prompts(tok, [r.text for r in dm.train_prompts])
    assert len(prompts) == 32
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    engine = VLLMEngine(model, tok, SETTINGS)
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1])
    engine.rng_kept = torch.equal(rng[0], after[0]) and rng[1] == after[1] and (rng[2] == after[2]).all()
    yield model, tok, prompts, engine
    engine.close()


def test_engine_start_up_leaves_the_trainers_random_state_alone(setup):
    assert setup[3].rng_kept  # vLLM reseeds python, numpy and torch when it starts


@pytest.fixture(scope="module")
def greedy(setup):
    """Greedy, stopping at eos, as PPO's rollouts do."""
    return SamplingSettings(max_new_tokens=NEW, stop_token_ids=(setup[1].eos_token_id,))


def compare(engine, model, tok, prompts, sampling: SamplingSettings) -> tuple[int, float]:
    """(rows whose response ids equal HF's, max |engine log-prob - trainer log-prob| over response tokens)."""
    ours = engine.generate(prompts, sampling)
    same = len(prompts)
    if not sampling.do_sample:  # sampled rows differ by RNG, not by model: only greedy ids are comparable
        hf = HFEngine(model, tok).generate(prompts, sampling)
        same = sum(
            ours.responses[b, : int(ours.response_lengths[b])].tolist() == hf.responses[b, : int(hf.response_lengths[b])].tolist()
            for b in range(len(prompts))
        )
    temperature = sampling.temperature if sampling.do_sample else 1.0
    with torch.no_grad():
        trainer = sequence_logprobs(model, ours.sequences, ours.attention_mask, ours.prompt_length, temperature=temperature)
    diff = ((trainer - ours.logprobs).abs() * ours.response_mask).max().item()
    return same, diff


def test_greedy_ids_and_logprobs_equal_hf_before_and_after_three_optimizer_steps_with_syncs(setup, greedy):
    model, tok, prompts, engine = setup
    assert compare(engine, model, tok, prompts, greedy) == (32, pytest.approx(0.0, abs=1e-4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    target = torch.randint(3, len(tok), (8, 40), generator=g)
    for _ in range(3):
        # any loss will do: the point is weights far enough from the engine's that a stale engine is caught
        loss = -sequence_logprobs(model, target, torch.ones_like(target), 8).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        same, diff = compare(engine, model, tok, prompts, greedy)
        assert same < 32 or diff > 1e-2, "the step did not move the weights enough to tell a stale engine"
        engine.sync_weights(model)
        same, diff = compare(engine, model, tok, prompts, greedy)
        assert same == 32 and diff <= 1e-4, (same, diff)


def test_sampling_logprobs_equal_the_trainers_at_temperature(setup):
    model, tok, prompts, engine = setup
    sampling = SamplingSettings(max_new_tokens=NEW, do_sample=True, temperature=0.7, seed=0)
    _, diff = compare(engine, model, tok, prompts, sampling)
    assert diff <= 1e-4
    # per-request seeds: the same seed samples the same ids
    a, b = engine.generate(prompts[:4], sampling), engine.generate(prompts[:4], sampling)
    assert torch.equal(a.sequences, b.sequences)


def test_a_skipped_prefix_cache_reset_is_caught(setup, greedy, monkeypatch):
    model, tok, prompts, engine = setup
    engine.generate(prompts, greedy)  # the prompts' KV blocks are now cached under the current weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    monkeypatch.setattr(engine.llm, "reset_prefix_cache", lambda *a, **k: True)
    engine.sync_weights(model)
    same, diff = compare(engine, model, tok, prompts, greedy)
    assert same < 32 or diff > 1e-4, "stale prefix-cache entries went unnoticed"
    monkeypatch.undo()
    engine.sync_weights(model)  # the real sync resets the cache: equal again
    assert compare(engine, model, tok, prompts, greedy) == (32, pytest.approx(0.0, abs=1e-4))


def test_stop_token_and_stop_string_end_rows_as_hf_does(setup, greedy):
    model, tok, prompts, engine = setup
    first = HFEngine(model, tok).generate(prompts[:4], greedy)
    stop = int(first.responses[0, 3])  # the 4th token row 0 generates: that row must stop on it
    by_id = SamplingSettings(max_new_tokens=NEW, stop_token_ids=(stop,))
    ours, hf = engine.generate(prompts[:4], by_id), HFEngine(model, tok).generate(prompts[:4], by_id)
    assert int(ours.response_lengths[0]) <= 4 and bool(ours.stopped[0])
    text = tok.decode(first.responses[1, 2:5])  # a multi-token string row 1 writes
    by_string = SamplingSettings(max_new_tokens=NEW, stop_strings=(text,))
    ours_s, hf_s = engine.generate(prompts[:4], by_string), HFEngine(model, tok).generate(prompts[:4], by_string)
    for a, b in ((ours, hf), (ours_s, hf_s)):
        assert torch.equal(a.response_mask.sum(1), b.response_mask.sum(1)) and torch.equal(a.stopped, b.stopped)
        assert a.texts == b.texts
        for r in range(4):
            n = int(a.response_lengths[r])
            assert a.responses[r, :n].tolist() == b.responses[r, :n].tolist()
    assert bool(ours_s.stopped[1])
