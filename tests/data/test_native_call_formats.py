"""The native call formats of the model families (``hermes``, ``llama3``, ``mistral``): parsing, rendering,
and the paper's metrics on top of them (gold in each format scores 100)."""

from __future__ import annotations

import pytest

from tl_lightning.data.calls import NATIVE_FORMATS, format_calls, parse_calls
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import FINISH_TOOL, Message, Tool, ToolCall
from tl_lightning.evaluation.scoring import score_case

CALLS = [ToolCall("get_x", {"city": "Paris", "days": 3}), ToolCall("get_y", {"tags": ["a", 1, None], "q": {"k": True}})]


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
@pytest.mark.parametrize("calls", [CALLS[:1], CALLS, [ToolCall(FINISH_TOOL, {"answer": "It is 3 C in Rome."})]])
def test_rendered_calls_parse_back(fmt, calls):
    text = format_calls(calls, fmt)
    parsed = parse_calls(text, fmt)
    assert parsed.ok and parsed.format == fmt
    assert [(c.name, c.arguments) for c in parsed.calls] == [(c.name, c.arguments) for c in calls]


def test_each_family_writes_what_its_template_renders():
    assert format_calls(CALLS[:1], "hermes") == '<tool_call>\n{"name": "get_x", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
    assert format_calls(CALLS[:1], "llama3") == '{"name": "get_x", "parameters": {"city": "Paris", "days": 3}}'
    assert format_calls(CALLS[:1], "mistral") == '[TOOL_CALLS] [{"name": "get_x", "arguments": {"city": "Paris", "days": 3}}]'
    assert format_calls([ToolCall(FINISH_TOOL, {"answer": "done"})], "mistral") == "done"  # a final answer is plain text


def test_hermes_reads_qwen3_reasoning_and_plain_answers():
    out = '<think>\nThe user wants Paris.\n</think>\n\n<tool_call>\n{"name": "get_x", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    parsed = parse_calls(out, "hermes")
    assert parsed.ok and parsed.thought == "The user wants Paris." and parsed.calls[0].arguments == {"city": "Paris"}
    # a template that opens <think> in the prompt: the output starts inside the block
    assert parse_calls('Thinking.\n</think>\n\n<tool_call>{"name": "f", "arguments": {}}</tool_call>', "hermes").thought == "Thinking."
    answer = parse_calls("<think>\n\n</think>\n\nIt is sunny.<|im_end|>", "hermes")
    assert [(c.name, c.arguments) for c in answer.calls] == [(FINISH_TOOL, {"answer": "It is sunny."})]
    for bad, why in [("<think>\nstill thinking", "unclosed <think>"), ("Hi <think>x</think> done", "text before the <think>"),
                     ("<think>x</think>", "empty output"), ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "must be an object")]:
        result = parse_calls(bad, "hermes")
        assert not result.ok and why in result.error, (bad, result.error)


def test_llama3_json_python_tag_builtins_and_semicolons():
    single = parse_calls('<|python_tag|>{"name": "get_x", "parameters": {"city": "Paris"}}<|eom_id|>', "llama3")
    assert [(c.name, c.arguments) for c in single.calls] == [("get_x", {"city": "Paris"})]
    builtin = parse_calls('<|python_tag|>brave_search.call(query="weather in Paris")', "llama3")
    assert [(c.name, c.arguments) for c in builtin.calls] == [("brave_search", {"query": "weather in Paris"})]
    two = parse_calls('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}', "llama3")
    assert [c.name for c in two.calls] == ["a", "b"]
    assert parse_calls("The answer is 4.", "llama3").calls[0].arguments == {"answer": "The answer is 4."}
    assert "text after the JSON call" in parse_calls('{"name": "a", "parameters": {}} and then', "llama3").error
    assert parse_calls("<|python_tag|>os.system('ls')", "llama3").error  # positional, not a keyword call: refused, never run


def test_mistral_keeps_call_ids_and_survives_a_decoded_away_marker():
    out = '[TOOL_CALLS] [{"name": "get_x", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}, {"name": "get_y", "arguments": {}, "id": "zzzzzzzzz"}]</s>'
    parsed = parse_calls(out, "mistral")
    assert [(c.name, c.id) for c in parsed.calls] == [("get_x", "a1B2c3D4e"), ("get_y", "zzzzzzzzz")]
    assert parsed.calls[0] == ToolCall("get_x", {"city": "Paris"}, raw=parsed.calls[0].raw)  # ids are not part of equality
    # decoding with skip_special_tokens drops [TOOL_CALLS]: the list still reads as calls
    assert [c.name for c in parse_calls('[{"name": "get_x", "arguments": {}}]', "mistral").calls] == ["get_x"]
    assert parse_calls(" Sunny, 21 degrees.", "mistral").calls[0].arguments == {"answer": "Sunny, 21 degrees."}
    assert "nothing after [TOOL_CALLS]" in parse_calls("[TOOL_CALLS]", "mistral").error
    assert "text after the [TOOL_CALLS] list" in parse_calls('[TOOL_CALLS][{"name": "a", "arguments": {}}] ok', "mistral").error


def test_auto_recognises_the_native_markers():
    assert parse_calls('[TOOL_CALLS][{"name": "a", "arguments": {}}]', "auto").format == "mistral"
    assert parse_calls('<|python_tag|>{"name": "a", "parameters": {}}', "auto").format == "llama3"
    assert parse_calls('<tool_call>{"name": "a", "arguments": {}}</tool_call>', "auto").format == "json"
    assert parse_calls('{"name": "a", "parameters": {"x": 1}}', "auto").calls[0].arguments == {"x": 1}  # Llama's plain JSON


def test_a_plain_text_reply_to_an_irrelevant_query_is_not_a_call():
    case = EvalCase("irr", 0, [Tool("get_x")], [Message("user", "Tell me a joke.")], gold=[[]], scenario="irrelevance")
    for fmt in NATIVE_FORMATS:
        assert score_case(parse_calls("I cannot help with that.", fmt), case, "corrected").CF
        assert not score_case(parse_calls(format_calls([ToolCall("get_x")], fmt), fmt), case, "corrected").TS
    assert not score_case(parse_calls('finish(answer="no")', "python"), case, "corrected").TS  # the paper's formats: unchanged


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_gold_in_every_native_format_scores_100(fmt):
    """TS/PI/CF and DE/CE/VA work unchanged on the native formats: the quick-start sets' gold, written as each
    family writes it (the final answer as plain text), is perfect; so is BFCL's in its own mode."""
    from pathlib import Path

    from tl_lightning.benchmarks import load_benchmark
    from tl_lightning.evaluation.predictions import gold_predictions
    from tl_lightning.evaluation.score import score_predictions

    single = load_benchmark("synthetic", "quickstart:test_single")
    rep = score_predictions(single, gold_predictions(single.cases, fmt), "corrected", fmt)
    assert (rep["TS"], rep["PI"], rep["CF"], rep["n"]) == (100.0, 100.0, 100.0, 300)
    multi = load_benchmark("synthetic", "quickstart:test_multi")
    rep = score_predictions(multi, gold_predictions(multi.cases, fmt), "corrected", fmt)
    assert (rep["DE"], rep["CE"], rep["VA"], rep["n"]) == (0.0, 0.0, 100.0, 100)
    bfcl = load_benchmark("bfcl", Path(__file__).resolve().parents[1] / "fixtures" / "bfcl")  # irrelevance included
    rep = score_predictions(bfcl, gold_predictions(bfcl.cases, fmt), "bfcl", fmt)
    assert (rep["TS"], rep["CF"], rep["n"]) == (100.0, 100.0, 6)


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_gold_scores_100_on_the_public_sets(fmt, benchmarks_dir):
    from tl_lightning.benchmarks import load_benchmark
    from tl_lightning.evaluation.predictions import gold_predictions
    from tl_lightning.evaluation.score import score_predictions

    for bench in (load_benchmark("rotbench", benchmarks_dir / "rotbench", category="clean"),
                  load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca", repair=True)):
        rep = score_predictions(bench, gold_predictions(bench.cases, fmt), "corrected", fmt)
        assert (rep["TS"], rep["PI"], rep["CF"]) == (100.0, 100.0, 100.0), bench.name
