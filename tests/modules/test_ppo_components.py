"""PPO building blocks: RL prompts from trajectories, the prompt datamodule, and the value model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tl_lightning.data.schema import FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.templates import get_template
from tl_lightning.rl.data import PromptDataModule, build_prompts
from tl_lightning.rl.value_model import ValueHead, ValueModel, response_slice

OK, ERR = FeedbackCategory.ALL_RIGHT, FeedbackCategory.PARAMETER_MISSING


def _traj(tid: str = "t1") -> Trajectory:
    tools = [Tool("get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}, required=("city",))]
    steps = [
        Step([ToolCall("get_weather", {"city": "Paris"})], feedback=['{"temp": 21}'], category=OK),
        Step([ToolCall("get_weather", {})], feedback=["get_weather() missing 1 required positional argument: 'city'"], category=ERR),
        Step([ToolCall("get_weather", {"city": "Rome"})], feedback=['{"temp": 25}'], category=OK),
    ]
    return Trajectory(tid, tools, [Message("user", "Weather in Paris and Rome?")], steps=steps, final_answer="21 and 25")


def test_every_all_right_step_becomes_a_prompt_with_its_context(tiny_tokenizer):
    template = get_template("python_doc")
    records, report = build_prompts([_traj()], template, tiny_tokenizer)
    assert [r.step_index for r in records] == [0, 2]
    assert report.n_trajectories == 1 and report.n_steps == 3 and report.n_prompts == 2
    assert report.skipped == {"category:parameter_missing": 1}
    second = records[1]
    assert len(second.context.steps) == 2  # the failed step stays in the context, as in SFT
    assert second.text == template.render_prompt(second.context, tiny_tokenizer)
    assert second.text.endswith("Assistant:") and "missing 1 required positional argument" in second.text
    assert 'city="Rome"' not in second.text  # the answer is not in its own prompt
    assert second.gold == [ToolCall("get_weather", {"city": "Rome"})]
    assert [t.name for t in second.tools] == ["get_weather", "finish"]  # the template shows a finish tool
    assert second.call_format == "python" and second.end_of_turn == tiny_tokenizer.eos_token


def test_prompt_limits_are_counted_not_silent(tiny_tokenizer):
    template = get_template("python_doc")
    records, report = build_prompts([_traj("a"), _traj("b")], template, tiny_tokenizer, max_per_trajectory=1)
    assert [r.id for r in records] == ["a#step0", "b#step0"] and report.skipped["max_per_trajectory"] == 2
    records, report = build_prompts([_traj()], template, tiny_tokenizer, max_prompt_length=5)
    assert records == [] and report.skipped["too_long"] == 2
    records, _ = build_prompts([_traj()], template, tiny_tokenizer, categories=["all_right", "parameter_missing"])
    assert [r.step_index for r in records] == [0, 1, 2]


def test_prompt_datamodule_batches_are_lists_of_records(tiny_tokenizer, tmp_path):
    path = tmp_path / "train.jsonl"
    rec = {
        "id": "w1",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "21 degrees"},
        ],
    }
    path.write_text("\n".join(json.dumps({**rec, "id": f"w{i}"}) for i in range(3)) + "\n")
    dm = PromptDataModule(train_path=str(path), val_path=str(path), tokenizer=tiny_tokenizer, batch_size=2, max_val_prompts=1)
    assert dm.tokenizer is tiny_tokenizer
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list) and len(batch) == 2 and [c.to_dict() for c in batch[0].gold] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert len(dm.val_prompts) == 1 and dm.reports["val"].skipped["max_prompts"] == 2


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
