"""The stock chat templates of the families users fine-tune (Qwen2.5, Qwen3, Llama 3.1/3.2/3.3, Mistral v3 and
Tekken, Hermes-2-Pro), end to end through the ``chat_template`` format: renders against
``apply_chat_template``, supervision / MAE / PKT spans, per-turn sequences, tool results, parsing back."""

from __future__ import annotations

import pytest
import torch
from family_helpers import FAMILIES, TEMPLATE_KWARGS, TEMPLATES, family_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_lightning.data.batch import IGNORE_INDEX
from tl_lightning.data.calls import parse_calls
from tl_lightning.data.chat_template import ChatTemplate, NotPrefixStable, detect_call_format
from tl_lightning.data.encode import encode_trajectory, encode_trajectory_sequences
from tl_lightning.data.schema import FINISH_TOOL, Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.template_base import TemplateError
from tl_lightning.tokenization import tokenize_with_offsets

NAMES = list(FAMILIES)
CITY = {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}}}
TOOLS = [
    Tool("get_weather_forecast", "Forecast.", CITY, ("city",)),
    Tool("get_weather_history", "History.", CITY, ("city",)),
    Tool("get_stock_price", "Price.", {"type": "object", "properties": {"symbol": {"type": "string", "description": "Ticker."}}}, ("symbol",)),
]


def trajectory(system: str = "", reasoning_first: bool = False) -> Trajectory:
    """A failed call (parameter hallucination), a recovery with two parallel calls and a thought, a final answer."""
    return Trajectory(
        "t",
        TOOLS,
        [Message("user", "Rome?")],
        [
            Step([ToolCall("get_weather_history", {"town": "Rome"}, id="call0A000")], text="Look it up." if reasoning_first else "",
                 feedback=["get_weather_history() got an unexpected keyword argument 'town'"], category="parameter_hallucination"),
            Step([ToolCall("get_weather_history", {"city": "Rome"}, id="call1A000"), ToolCall("get_stock_price", {"symbol": "A"}, id="call1B000")],
                 text="Retry.", feedback=['{"t": 3}', '{"p": 1}'], category="all_right"),
        ],
        system=system,
        final_answer="3 C",
    )


def template(name: str, **kw) -> ChatTemplate:
    variables = {**TEMPLATE_KWARGS.get(name, {}), **kw.pop("chat_template_kwargs", {})}
    return ChatTemplate(chat_template_kwargs=variables, **kw)


def hand_messages(traj: Trajectory, name: str) -> list[dict]:
    """The OpenAI messages a user would pass to ``apply_chat_template``, written out independently of ChatTemplate:
    Qwen3 gets each thought as ``reasoning_content``; Llama (one call per message) one message per call."""
    reasoning, split = name == "qwen3", FAMILIES[name].call_format == "llama3"
    msgs = [{"role": "system", "content": traj.system}] if traj.system else []
    msgs += [{"role": m.role, "content": m.content} for m in traj.messages]
    for step in traj.steps:
        numbered = list(zip(step.calls, step.feedback, strict=True))
        groups = [[x] for x in numbered] if split else [numbered]
        for g, group in enumerate(groups):
            thought = step.text.strip() if g == 0 else ""
            msg = {"role": "assistant", "content": "" if reasoning else thought,
                   "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c, _ in group]}
            if reasoning:
                msg["reasoning_content"] = thought
            msgs.append(msg)
            msgs += [{"role": "tool", "content": fb, "name": c.name, "tool_call_id": c.id} for c, fb in group]
    if traj.final_answer is not None:
        msgs.append({"role": "assistant", "content": traj.final_answer.strip()})
    return msgs


def apply(name: str, msgs: list[dict], generation: bool, tools: list[Tool] = TOOLS) -> str:
    tok = family_tokenizer(name)
    return tok.apply_chat_template(msgs, tools=[t.to_openai() for t in tools], tokenize=False,
                                   add_generation_prompt=generation, **TEMPLATE_KWARGS.get(name, {}))


def check_against_apply_chat_template(name: str, traj: Trajectory, seqs) -> None:
    """Training sees what inference sees: before every supervised turn, exactly the template's generation-time
    prompt; the turn itself, exactly the text the template renders for that message (with its end of turn)."""
    msgs = hand_messages(traj, name)
    assistant = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    segments = [(r, s) for r in seqs for s in r.supervised]
    assert len(segments) == len(assistant)
    for k, (r, seg) in zip(assistant, segments, strict=True):
        assert r.text[: seg.start] == apply(name, msgs[:k], True, traj.tools)
        after = apply(name, msgs[: k + 1], False, traj.tools)
        sup = r.text[seg.start : seg.end]
        assert after.endswith(sup) or after.endswith(sup + "\n"), (sup, after[-200:])


# ------------------------------------------------------------------------------------------- the fixtures


def test_every_fixture_template_is_documented_with_source_and_licence():
    readme = (TEMPLATES / "README.md").read_text()
    files = sorted(p.name for p in TEMPLATES.glob("*.jinja"))
    assert files == sorted(f.file for f in FAMILIES.values())
    for f in files:
        row = next((line for line in readme.splitlines() if f"`{f}`" in line), "")
        assert "huggingface.co/" in row and ("Apache-2.0" in row or "Llama" in row), f


@pytest.mark.parametrize("name", NAMES)
def test_call_format_and_end_of_turn_are_read_off_the_template(name):
    fam, tok = FAMILIES[name], family_tokenizer(name)
    assert detect_call_format(fam.template) == fam.call_format
    t = template(name)
    assert t.call_format_for(tok) == fam.call_format  # the tokenizer's own template
    assert ChatTemplate(chat_template=fam.template).call_format == fam.call_format  # a template given as text
    assert t.end_of_turn(tok) == fam.end_of_turn
    assert ChatTemplate(call_format="json").call_format_for(tok) == "json"  # set in config, it wins


# ------------------------------------------------------------------------------------------- exact renders

SUPERVISED = {
    "qwen2_5": [
        '<tool_call>\n{"name": "get_weather_history", "arguments": {"town": "Rome"}}\n</tool_call><|im_end|>',
        'Retry.\n<tool_call>\n{"name": "get_weather_history", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_stock_price", "arguments": {"symbol": "A"}}\n</tool_call><|im_end|>',
        "3 C<|im_end|>",
    ],
    "qwen3": [  # the thought is reasoning; a turn without any shows an empty block while it is the last message
        '<think>\n\n</think>\n\n<tool_call>\n{"name": "get_weather_history", "arguments": {"town": "Rome"}}\n</tool_call><|im_end|>',
        '<think>\nRetry.\n</think>\n\n<tool_call>\n{"name": "get_weather_history", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_stock_price", "arguments": {"symbol": "A"}}\n</tool_call><|im_end|>',
        "<think>\n\n</think>\n\n3 C<|im_end|>",
    ],
    "llama3_1": [  # one call per message; the template drops a message's text when it calls a tool
        '{"name": "get_weather_history", "parameters": {"town": "Rome"}}<|eot_id|>',
        '{"name": "get_weather_history", "parameters": {"city": "Rome"}}<|eot_id|>',
        '{"name": "get_stock_price", "parameters": {"symbol": "A"}}<|eot_id|>',
        "3 C<|eot_id|>",
    ],
    "mistral_v3": [
        '[TOOL_CALLS] [{"name": "get_weather_history", "arguments": {"town": "Rome"}, "id": "call0A000"}]</s>',
        '[TOOL_CALLS] [{"name": "get_weather_history", "arguments": {"city": "Rome"}, "id": "call1A000"}, '
        '{"name": "get_stock_price", "arguments": {"symbol": "A"}, "id": "call1B000"}]</s>',
        " 3 C</s>",
    ],
    "mistral_tekken": [
        '[TOOL_CALLS][{"name": "get_weather_history", "arguments": {"town": "Rome"}, "id": "call0A000"}]</s>',
        '[TOOL_CALLS][{"name": "get_weather_history", "arguments": {"city": "Rome"}, "id": "call1A000"}, '
        '{"name": "get_stock_price", "arguments": {"symbol": "A"}, "id": "call1B000"}]</s>',
        "3 C</s>",
    ],
    "hermes2_pro": [
        '<tool_call>\n{"name": "get_weather_history", "arguments": {"town": "Rome"}}\n</tool_call><|im_end|>',
        '<tool_call>\n{"name": "get_weather_history", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_stock_price", "arguments": {"symbol": "A"}}\n</tool_call><|im_end|>',
        "3 C<|im_end|>",
    ],
}
SUPERVISED["llama3_2"] = SUPERVISED["llama3_1"]
#: What the model reads right before its first turn: the end of the generation prompt.
PROMPT_END = {
    "qwen2_5": "Rome?<|im_end|>\n<|im_start|>assistant\n", "qwen3": "Rome?<|im_end|>\n<|im_start|>assistant\n",
    "llama3_1": "Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama3_2": "Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral_v3": "[INST] Rome?[/INST]", "mistral_tekken": "[INST]Rome?[/INST]",
    "hermes2_pro": "Rome?<|im_end|>\n<|im_start|>assistant\n",
}
#: Sequences per trajectory: Qwen3 re-renders turn 0 without its empty think block once a tool reply follows;
#: Hermes-2-Pro ends the last tool reply before a turn differently from one before another message.
SEQUENCES = {"qwen3": 2, "hermes2_pro": 2}


@pytest.mark.parametrize("name", NAMES)
def test_renders_equal_apply_chat_template_with_hand_written_spans(name):
    tok, traj, t = family_tokenizer(name), trajectory(), template(name)
    seqs = t.render_sequences(traj, tok)
    assert len(seqs) == SEQUENCES.get(name, 1)
    assert [r.text[s.start : s.end] for r in seqs for s in r.supervised] == SUPERVISED[name]
    check_against_apply_chat_template(name, traj, seqs)
    if len(seqs) == 1:  # prefix-stable: one pass, and it is exactly the template's render of the conversation
        assert seqs[0].text == apply(name, hand_messages(traj, name), generation=False)
        assert t.render(traj, tok).text == seqs[0].text
    else:
        with pytest.raises(NotPrefixStable, match="not prefix-stable"):
            t.render(traj, tok)
    first = seqs[0].supervised[0]
    assert seqs[0].text[: first.start].endswith(PROMPT_END[name])
    # PKT names: every call's name inside its own turn, in order
    names = [(r.text[n.start : n.end], n.step) for r in seqs for n in r.names]
    assert names == [("get_weather_history", 0), ("get_weather_history", 1), ("get_stock_price", 1)]


@pytest.mark.parametrize("name", NAMES)
def test_supervision_mae_and_pkt_tokens_by_hand(name):
    """Supervised: exactly the assistant's own tokens with its end of turn; MAE: exactly the failed step's;
    PKT: the tokens holding the first letter of each called name and where it parts from a sibling's
    (history vs forecast at "h", vs stock_price at "w"; stock_price vs the weather tools at "s")."""
    tok, traj = family_tokenizer(name), trajectory()
    encs = encode_trajectory_sequences(traj, tok, template(name))
    assert len(encs) == SEQUENCES.get(name, 1)

    def text(enc, mask):
        return tok.decode(enc.input_ids[mask], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    sup = [e.labels != IGNORE_INDEX for e in encs]
    assert "".join(text(e, m) for e, m in zip(encs, sup, strict=True)) == "".join(SUPERVISED[name])
    assert "".join(text(e, e.error_mask) for e in encs) == SUPERVISED[name][0]
    for e, m in zip(encs, sup, strict=True):
        assert torch.equal(e.error_mask, m & (e.step_ids == 0))
        assert not (e.key_mask & ~m).any()
    keys = [(tok.convert_ids_to_tokens(int(i)), int(s)) for e in encs for i, s in zip(e.input_ids[e.key_mask], e.step_ids[e.key_mask], strict=True)]
    assert keys == [("get", 0), ("w", 0), ("history", 0), ("get", 1), ("w", 1), ("history", 1), ("get", 1), ("st", 1)]
    last = encs[-1]
    end = int(torch.nonzero(sup[-1])[-1])
    assert end == len(last) - 1 or not sup[-1][end + 1 :].any()  # nothing after the final end of turn is supervised
    assert tok.convert_ids_to_tokens(int(last.input_ids[end])) == FAMILIES[name].end_of_turn


@pytest.mark.parametrize("name", NAMES)
def test_every_rendered_turn_parses_back_with_the_family_parser(name):
    tok, traj, t = family_tokenizer(name), trajectory(), template(name)
    fmt, eot = t.call_format_for(tok), t.end_of_turn(tok)
    turns = [r.text[s.start : s.end].removesuffix(eot) for r in t.render_sequences(traj, tok) for s in r.supervised]
    parsed = [parse_calls(x, fmt) for x in turns]
    assert all(p.ok for p in parsed), [p.error for p in parsed]
    got = [(c.name, c.arguments) for p in parsed for c in p.calls]
    assert got == [(c.name, c.arguments) for s in traj.steps for c in s.calls] + [(FINISH_TOOL, {"answer": "3 C"})]
    if fmt == "mistral":  # the ids the model wrote come back with the calls
        assert [c.id for p in parsed for c in p.calls][:3] == ["call0A000", "call1A000", "call1B000"]
    if name == "qwen3":
        assert parsed[1].thought == "Retry."
    assert parse_calls(turns[0], "auto").calls[0].name == "get_weather_history"  # auto finds every family's calls


OBSERVATION = {  # a step's results and the next turn's opening, in the family's own role and format
    "qwen2_5": '\n<|im_start|>user\n<tool_response>\n{"t": 3}\n</tool_response>\n<tool_response>\n{"p": 1}\n</tool_response><|im_end|>\n<|im_start|>assistant\n',
    "llama3_1": '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"t\\": 3}"<|eot_id|>'
                '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"p\\": 1}"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    "mistral_v3": '[TOOL_RESULTS] {"content": {"t": 3}, "call_id": "call1A000"}[/TOOL_RESULTS]'
                  '[TOOL_RESULTS] {"content": {"p": 1}, "call_id": "call1B000"}[/TOOL_RESULTS]',
    "mistral_tekken": '[TOOL_RESULTS]{"content": {"t": 3}, "call_id": "call1A000"}[/TOOL_RESULTS]'
                      '[TOOL_RESULTS]{"content": {"p": 1}, "call_id": "call1B000"}[/TOOL_RESULTS]',
    "hermes2_pro": '\n<|im_start|>tool\n<tool_response>\n{"t": 3}\n</tool_response>\n<tool_response>\n{"p": 1}\n</tool_response><|im_end|><|im_start|>assistant\n',
}
OBSERVATION["qwen3"], OBSERVATION["llama3_2"] = OBSERVATION["qwen2_5"], OBSERVATION["llama3_1"]


@pytest.mark.parametrize("name", NAMES)
def test_tool_results_go_back_in_the_family_format(name):
    """What a multi-turn episode appends after the model's turn (its ids are kept: Mistral echoes them)."""
    tok, t = family_tokenizer(name), template(name)
    full = trajectory()
    traj = Trajectory(full.id, full.tools, full.messages, full.steps)  # the episode so far, no final answer
    obs = t.observation(traj, tok)
    assert obs == OBSERVATION[name]
    if FAMILIES[name].call_format != "llama3":
        assert t.render_prompt(traj, tok).endswith(obs)
    else:  # training shows one call per turn, each answered; a turn that made two calls gets both answers after it
        assert t.render_prompt(traj, tok).endswith(obs[obs.index("<|start_header_id|>ipython", 1) :])


# ------------------------------------------------------------------------------------------- per-turn strategy


def test_qwen3_with_reasoning_in_every_step_is_one_pass():
    tok, traj = family_tokenizer("qwen3"), trajectory(reasoning_first=True)
    seqs = template("qwen3").render_sequences(traj, tok)
    assert len(seqs) == 1
    assert seqs[0].text == apply("qwen3", hand_messages(traj, "qwen3"), generation=False)
    assert [seqs[0].text[s.start : s.end][:30] for s in seqs[0].supervised][0] == "<think>\nLook it up.\n</think>\n\n"


def test_qwen3_per_turn_keeps_the_failed_step_in_context_and_states_its_cost():
    tok, traj = family_tokenizer("qwen3"), trajectory()
    encs = encode_trajectory_sequences(traj, tok, template("qwen3"))
    assert [sorted(set(e.step_ids[e.step_ids >= 0].tolist())) for e in encs] == [[0], [1, 2]]
    second = encs[1]
    context = tok.decode(second.input_ids[second.labels == IGNORE_INDEX], skip_special_tokens=False)
    assert '{"name": "get_weather_history", "arguments": {"town": "Rome"}}' in context  # MAE: still read, never trained
    assert "unexpected keyword argument 'town'" in context
    assert not second.error_mask.any()
    # Cost: the context of turn 1 is encoded twice; one pass over the full conversation would be shorter.
    one_pass = len(tok(apply("qwen3", hand_messages(traj, "qwen3"), False), add_special_tokens=False).input_ids)
    per_turn = sum(len(e) for e in encs)
    assert one_pass < per_turn < 2 * one_pass
    # the same supervised tokens as one pass would train, none twice
    assert sum(int((e.labels != IGNORE_INDEX).sum()) for e in encs) == len(tok("".join(SUPERVISED["qwen3"]), add_special_tokens=False).input_ids)


def test_a_later_sequence_that_does_not_fit_ends_the_trajectory():
    from tl_lightning.data.encode import TrajectoryTooLong

    tok, traj, t = family_tokenizer("qwen3"), trajectory(), template("qwen3")
    full = encode_trajectory_sequences(traj, tok, t)
    cut = encode_trajectory_sequences(traj, tok, t, max_length=len(full[0]))  # turn 1's context is longer than that
    assert len(cut) == 1 and cut[0].truncated and torch.equal(cut[0].input_ids, full[0].input_ids)
    with pytest.raises(TrajectoryTooLong, match="trajectory t: its first supervised step ends at token"):
        encode_trajectory_sequences(traj, tok, t, max_length=len(full[0]) - 5)


def test_a_split_step_cut_between_its_calls_is_not_counted_as_kept():
    tok, traj = family_tokenizer("llama3_1"), trajectory()
    (full,) = encode_trajectory_sequences(traj, tok, template("llama3_1"))
    sup = torch.nonzero(full.labels != IGNORE_INDEX).flatten()
    second_call_end = int(sup[(full.step_ids[sup] == 1)][-1])  # the end of step 1's second message
    first_call_end = max(i for i in sup.tolist() if i < second_call_end and full.labels[i + 1] == IGNORE_INDEX)
    (cut,) = encode_trajectory_sequences(traj, tok, template("llama3_1"), max_length=first_call_end + 1)
    assert cut.truncated and cut.num_steps == 1 and int(cut.step_ids.max()) == 1  # step 1 half trained, not counted
    (whole,) = encode_trajectory_sequences(traj, tok, template("llama3_1"), max_length=second_call_end + 1)
    assert whole.truncated and whole.num_steps == 2


def test_strategies():
    tok, traj = family_tokenizer("qwen3"), trajectory()
    with pytest.raises(NotPrefixStable, match="strategy 'auto' or 'per_turn'"):
        template("qwen3", strategy="one_pass").render_sequences(traj, tok)
    with pytest.raises(NotPrefixStable):
        encode_trajectory(traj, tok, template("qwen3"))  # one sequence was asked for
    every = template("qwen3", strategy="per_turn").render_sequences(traj, tok)
    assert [len(r.supervised) for r in every] == [1, 1, 1]  # the official code's layout: a sequence per turn
    assert [r.text[s.start : s.end] for r in every for s in r.supervised] == SUPERVISED["qwen3"]
    stable = template("qwen2_5", strategy="per_turn").render_sequences(traj, family_tokenizer("qwen2_5"))
    assert len(stable) == 3 and sum(len(r.text) for r in stable) > len(template("qwen2_5").render(traj, family_tokenizer("qwen2_5")).text)
    with pytest.raises(ValueError, match="strategy must be one of"):
        ChatTemplate(strategy="twice")


def test_qwen3_without_thinking_puts_the_empty_block_in_the_prompt():
    tok, traj = family_tokenizer("qwen3"), trajectory()
    traj.steps[1].text = ""
    t = template("qwen3", chat_template_kwargs={"enable_thinking": False})
    seqs = t.render_sequences(traj, tok)
    assert [r.text[s.start : s.end] for r in seqs for s in r.supervised] == [x.removeprefix("<think>\n\n</think>\n\n") for x in
                                                                           (SUPERVISED["qwen3"][0], SUPERVISED["qwen2_5"][1].removeprefix("Retry.\n"), SUPERVISED["qwen3"][2])]
    assert all(r.text[: s.start].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") for r in seqs for s in r.supervised)
    with pytest.raises(TemplateError, match="trajectory t: message .* does not continue its generation prompt"):
        t.render_sequences(trajectory(), tok)  # a thought, which that prompt has no room for


def test_mistral_system_prompt_is_dropped_after_the_first_turn_as_at_inference():
    """Mistral v3's template puts the system prompt in the last user message only while it is the last message:
    the first turn is trained with it, later turns without it, as the model sees them at inference."""
    tok, traj = family_tokenizer("mistral_v3"), trajectory(system="Be brief.")
    seqs = template("mistral_v3").render_sequences(traj, tok)
    assert len(seqs) == 2
    assert "[INST] Be brief.\n\nRome?[/INST][TOOL_CALLS]" in seqs[0].text
    assert "Be brief." not in seqs[1].text and "[INST] Rome?[/INST][TOOL_CALLS]" in seqs[1].text
    check_against_apply_chat_template("mistral_v3", traj, seqs)


def test_refusals_are_one_line_template_errors():
    tok, traj = family_tokenizer("llama3_1"), trajectory()
    with pytest.raises(TemplateError, match=r"trajectory t: the chat template refused .*single tool-calls.*parallel_calls: split"):
        template("llama3_1", parallel_calls="keep").render_sequences(traj, tok)
    with pytest.raises(ValueError, match="parallel_calls must be"):
        ChatTemplate(parallel_calls="merge")
    with pytest.raises(ValueError, match="call_format must be one of"):
        ChatTemplate(call_format="xml")
    bad_id = Trajectory("b", TOOLS, [Message("user", "x")], [Step([ToolCall("get_stock_price", {"symbol": "A"}, id="too-long-id")], feedback=["1"])])
    assert "id" in template("mistral_v3").render_sequences(bad_id, family_tokenizer("mistral_v3"))[0].text  # replaced by a valid one


# ------------------------------------------------------------------------------------------- generated trajectories

_TEXT = st.text(alphabet="abcXYZ 019.,:;!?()'{}[]_-=\n", max_size=20)
_NAME = st.from_regex(r"get_[a-z]{1,3}(_[a-z]{1,3})?", fullmatch=True)


@st.composite
def trajectories(draw) -> Trajectory:
    names = draw(st.lists(_NAME, min_size=1, max_size=4, unique=True))
    tools = [Tool(n, "Does it.", CITY) for n in names]
    steps = []
    for i in range(draw(st.integers(0, 3))):
        k = draw(st.integers(1, 2))
        calls = [ToolCall(draw(st.sampled_from(names)), {"city": draw(_TEXT)}, id=f"c{i:04d}{j:04d}") for j in range(k)]
        steps.append(Step(calls, text=draw(_TEXT), feedback=[draw(_TEXT) for _ in calls], category="others" if i == 0 else "all_right"))
    final = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .,]{0,15}", fullmatch=True)) if draw(st.booleans()) or not steps else None
    system = draw(st.sampled_from(["", "Be brief."]))
    return Trajectory("h", tools, [Message("user", draw(st.from_regex(r"[A-Za-z?][A-Za-z ?]{0,12}", fullmatch=True)))], steps,
                      system=system, final_answer=final)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traj=trajectories())
def test_generated_trajectories_keep_every_span_property(name, traj):
    tok, t = family_tokenizer(name), template(name)
    seqs = t.render_sequences(traj, tok)
    check_against_apply_chat_template(name, traj, seqs)
    encs = encode_trajectory_sequences(traj, tok, t)
    eot, fmt = t.end_of_turn(tok), t.call_format_for(tok)
    for r, e in zip(seqs, encs, strict=True):
        sup = e.labels != IGNORE_INDEX
        decoded = tok.decode(e.input_ids[sup], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert decoded == r.supervised_text
        assert torch.equal(e.error_mask, sup & (e.step_ids == 0) & bool(traj.steps))
        assert not (e.key_mask & ~sup).any()
        _, offsets = tokenize_with_offsets(r.text, tok)  # the ids the encoder used, with the tokenizer's offsets
        for n in r.names:  # the token holding each called name's first letter is a key token
            holder = [i for i, (a, b) in enumerate(offsets.tolist()) if a <= n.start < b]
            assert len(holder) == 1 and e.key_mask[holder[0]], (n, holder)
    parsed = [parse_calls(r.text[s.start : s.end].removesuffix(eot), fmt) for r in seqs for s in r.supervised]
    want = [[(c.name, c.arguments)] for s in traj.steps for c in s.calls] if fmt == "llama3" else [[(c.name, c.arguments) for c in s.calls] for s in traj.steps]
    if traj.final_answer is not None:
        want.append([(FINISH_TOOL, {"answer": traj.final_answer.strip()})])
    assert [[(c.name, c.arguments) for c in p.calls] for p in parsed] == want
