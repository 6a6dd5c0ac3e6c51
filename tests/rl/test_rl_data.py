"""RL data: prompts from trajectories and the prompt datamodule."""

from __future__ import annotations

import json

from tl_lightning.data.schema import FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.templates import get_template
from tl_lightning.rl.data import PromptDataModule, build_prompts

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
