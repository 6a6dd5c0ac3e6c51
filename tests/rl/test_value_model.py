"""The critics: a separate value model, a value head on the actor's hidden states, and the choice between them."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tl_lightning.rl.value_model import CRITICS, SharedValueHead, ValueHead, ValueModel, response_slice


def _tiny_lm(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, pad_token_id=0)
    return LlamaForCausalLM(cfg)


def test_value_model_is_a_copy_with_zero_head_and_respects_left_padding():
    lm = _tiny_lm()
    critic = ValueModel.from_causal_lm(lm)
    assert critic.backbone is not lm.model
    for (k, v), (_, w) in zip(critic.backbone.state_dict().items(), lm.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    seqs = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 4, 5, 6, 7, 8]])
    attn = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert torch.equal(critic(seqs, attn, response_start=4), torch.zeros(2, 2))
    torch.nn.init.normal_(critic.head.proj.weight)
    values = critic(seqs, attn, response_start=4)
    assert values.shape == (2, 2) and values.dtype == torch.float32
    # row 0 is left-padded: its values equal those of the unpadded sequence [5, 6, 7, 8], response from index 2
    alone = critic(torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4, dtype=torch.long), response_start=2)
    torch.testing.assert_close(values[0], alone[0], atol=1e-5, rtol=1e-5)


def test_value_head_and_response_slice():
    head = ValueHead(3)
    with torch.no_grad():
        head.proj.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        head.proj.bias.fill_(0.5)
    hidden = torch.arange(2 * 4 * 3, dtype=torch.bfloat16).reshape(2, 4, 3)
    out = head(response_slice(hidden, 2))  # positions 1 and 2 predict response tokens 2 and 3
    expected = torch.tensor([[3 + 8 + 15 + 0.5, 6 + 14 + 24 + 0.5], [15 + 32 + 51 + 0.5, 18 + 38 + 60 + 0.5]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="response_start=4"):
        response_slice(hidden, 4)


def test_the_critic_choices_build_a_separate_model_or_a_head_that_reads_the_actors_hidden_states():
    lm = _tiny_lm()
    separate, shared = CRITICS["separate"](lm), CRITICS["shared"](lm)
    assert isinstance(separate, ValueModel) and not separate.shares_actor
    assert isinstance(shared, SharedValueHead) and shared.shares_actor
    seqs, attn = torch.tensor([[3, 4, 5, 6]]), torch.ones(1, 4, dtype=torch.long)
    hidden = lm(input_ids=seqs, attention_mask=attn, output_hidden_states=True).hidden_states[-1]
    with torch.no_grad():
        shared.proj.weight.fill_(1.0)
    torch.testing.assert_close(shared(seqs, attn, 2, hidden=hidden), hidden[:, 1:3].sum(-1))
    with pytest.raises(ValueError, match="hidden"):
        shared(seqs, attn, 2)
