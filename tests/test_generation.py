"""Batched generation with left padding, stop tokens/strings, KV cache parity, and response log-probs."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tl_lightning.generation import generate, response_mask_from_stops, sequence_logprobs

PROMPTS = ["User: What is the weather in Paris?\nAssistant:", "get_stock_price", "Output: {\"city\": \"Rome\"}\nAssistant: finish("]


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def test_response_mask_from_stops_keeps_first_stop_only():
    responses = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8], [2, 9, 2, 9], [9, 3, 9, 9]])
    mask, stopped = response_mask_from_stops(responses, [2, 3])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert stopped.tolist() == [True, False, True, True]


def test_generate_left_pads_and_matches_one_by_one(tiny_model, tiny_tokenizer):
    out = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=6, stop_token_ids=[])
    assert out.sequences.shape[0] == 3 and out.response_mask.shape == (3, 6)
    # left padding: every prompt ends at column P, padding is on the left
    assert out.prompt_mask[:, -1].tolist() == [1, 1, 1]
    assert out.prompt_mask.sum(1).tolist() == [len(tiny_tokenizer(p)["input_ids"]) for p in PROMPTS]
    for i, prompt in enumerate(PROMPTS):
        single = generate(tiny_model, tiny_tokenizer, [prompt], max_new_tokens=6, stop_token_ids=[])
        assert single.responses[0].tolist() == out.responses[i].tolist()
        assert single.texts[0] == out.texts[i]


def test_kv_cache_gives_identical_greedy_tokens(tiny_model, tiny_tokenizer):
    with_cache = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=8, use_cache=True, stop_token_ids=[])
    without = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=8, use_cache=False, stop_token_ids=[])
    assert torch.equal(with_cache.sequences, without.sequences)


def test_stop_token_ends_each_row_and_is_excluded_from_text(tiny_model, tiny_tokenizer):
    free = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=8, stop_token_ids=[])
    stop = free.responses[0, 2].item()  # row 0 will stop on its third token
    out = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=8, stop_token_ids=[stop])
    first_stop = [(r == stop).nonzero()[0].item() + 1 if (r == stop).any() else 8 for r in free.responses]
    assert first_stop[0] <= 3
    assert out.response_lengths.tolist() == first_stop
    assert out.stopped.tolist() == [n < 8 or free.responses[i, 7].item() == stop for i, n in enumerate(first_stop)]
    n0 = first_stop[0]
    assert out.texts[0] == tiny_tokenizer.decode(free.responses[0, : n0 - 1], skip_special_tokens=True)
    # tokens before the stop are the same as without stopping
    assert out.responses[0, :n0].tolist() == free.responses[0, :n0].tolist()


def test_default_stop_is_eos_and_single_token_stop_strings_are_ids(tiny_model, tiny_tokenizer):
    from tl_lightning.generation import _stop_ids

    assert _stop_ids(tiny_tokenizer, None, None) == [tiny_tokenizer.eos_token_id]
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert _stop_ids(tiny_tokenizer, [7], ["<|im_end|>"]) == [7, im_end]
    probe = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], max_new_tokens=1, stop_token_ids=[])
    first = tiny_tokenizer.convert_ids_to_tokens(probe.responses[0, 0].item())
    out = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], max_new_tokens=4, stop_token_ids=[], stop_strings=[first])
    assert out.response_lengths.tolist() == [1] and out.stopped.tolist() == [True] and out.texts == [""]


def test_multi_token_stop_string_truncates_mask(tiny_model, tiny_tokenizer):
    free = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], max_new_tokens=8, stop_token_ids=[])
    text = free.texts[0]
    # a stop string that completes somewhere inside the greedy response
    ids = free.responses[0].tolist()
    target = tiny_tokenizer.decode(ids[:4], skip_special_tokens=False)
    stop_str = target[-3:] if len(target) >= 3 else target
    out = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], max_new_tokens=8, stop_token_ids=[], stop_strings=[stop_str])
    assert out.stopped.tolist() == [True]
    n = out.response_lengths.item()
    assert stop_str in tiny_tokenizer.decode(ids[:n], skip_special_tokens=False)
    assert stop_str not in tiny_tokenizer.decode(ids[: n - 1], skip_special_tokens=False)
    assert stop_str not in out.texts[0] and text.startswith(out.texts[0])


def test_sequence_logprobs_match_unpadded_forward(tiny_model, tiny_tokenizer):
    out = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=5, stop_token_ids=[])
    P = out.prompt_length
    logprobs, entropy = sequence_logprobs(tiny_model, out.sequences, out.attention_mask, P, return_entropy=True)
    assert logprobs.shape == (3, 5) and entropy.shape == (3, 5)
    for b in range(3):
        real = out.sequences[b][out.attention_mask[b].bool()]
        with torch.no_grad():
            logits = tiny_model(real.unsqueeze(0)).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        n_prompt = int(out.prompt_mask[b].sum())
        expected = logp[n_prompt - 1 : -1].gather(-1, real[n_prompt:].unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(logprobs[b], expected, atol=1e-5, rtol=1e-5)
        expected_entropy = -(logp.exp() * logp).sum(-1)[n_prompt - 1 : -1]
        torch.testing.assert_close(entropy[b], expected_entropy, atol=1e-5, rtol=1e-5)
    # greedy tokens are the argmax, so their log-prob is the row maximum
    assert (logprobs <= 0).all()


def test_overlong_prompt_is_an_error(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"prompts \[0\] are longer than max_prompt_length=3"):
        generate(tiny_model, tiny_tokenizer, PROMPTS[:1], max_new_tokens=2, max_prompt_length=3)


def test_shared_critic_path_gives_the_numbers_of_the_inline_computation(tiny_model, tiny_tokenizer):
    """One forward with hidden states (the shared-critic PPO step) equals the log-softmax, gather and
    entropy it replaced, at a sampling temperature, and its hidden states are the model's own."""
    out = generate(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=4, stop_token_ids=[])
    P, T, temp = out.prompt_length, out.response_mask.shape[1], 0.7
    logprobs, entropy, hidden = sequence_logprobs(
        tiny_model, out.sequences, out.attention_mask, P, temperature=temp, return_entropy=True, return_hidden=True
    )
    with torch.no_grad():
        ref = tiny_model(
            input_ids=out.sequences, attention_mask=out.attention_mask,
            position_ids=(out.attention_mask.cumsum(1) - 1).clamp(min=0), use_cache=False,
            output_hidden_states=True, logits_to_keep=T + 1,
        )
    logp_all = torch.log_softmax(ref.logits[:, :-1].float() / temp, dim=-1)
    torch.testing.assert_close(logprobs, logp_all.gather(-1, out.sequences[:, P:].unsqueeze(-1)).squeeze(-1), rtol=0, atol=0)
    torch.testing.assert_close(entropy, -(logp_all.exp() * logp_all).sum(-1), rtol=0, atol=0)
    torch.testing.assert_close(hidden, ref.hidden_states[-1], rtol=0, atol=0)
    assert hidden.shape == (3, out.sequences.shape[1], 32)
    only_hidden = sequence_logprobs(tiny_model, out.sequences, out.attention_mask, P, return_hidden=True)
    assert len(only_hidden) == 2 and only_hidden[1].shape == hidden.shape


def test_generation_and_tokenization_import_no_data_code():
    """Prompt tokenization lives in tokenization.py: generation must not reach back into data/."""
    import subprocess
    import sys

    code = (
        "import sys, tl_lightning.generation, tl_lightning.tokenization; "
        "bad = sorted(m for m in sys.modules if m.startswith('tl_lightning.data')); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seeded_sampling_repeats_itself_and_leaves_the_global_rng_alone(tiny_model, tiny_tokenizer):
    prompts = ["User: ping", "User: ping"]  # a group: two samples of one prompt
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95, stop_token_ids=[])
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = generate(tiny_model, tiny_tokenizer, prompts, seed=7, **kw)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = generate(tiny_model, tiny_tokenizer, prompts, seed=7, **kw)
    c = generate(tiny_model, tiny_tokenizer, prompts, seed=8, **kw)
    assert torch.equal(a.sequences, b.sequences)
    assert not torch.equal(a.sequences, c.sequences)
    # the G samples of one prompt differ from each other (that is what a group baseline needs)
    assert not torch.equal(a.responses[0], a.responses[1])
