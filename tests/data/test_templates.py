"""Templates: exact renders, prompt/supervision alignment, and the chat-template diffing (Qwen2.5 style)."""

from __future__ import annotations

import ast
import json
import pickle

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_lightning.data.batch import IGNORE_INDEX
from tl_lightning.data.chat_template import ChatTemplate
from tl_lightning.data.encode import encode_trajectory
from tl_lightning.data.literals import python_literal
from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.template_base import TemplateError
from tl_lightning.data.templates import PythonDocTemplate, get_template

# The stock Qwen2.5-Instruct chat template (tools in the system turn, <tool_call> JSON, tool responses
# as a user turn); it has no {% generation %} tags.
QWEN25_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

CITY = {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}}}
TOOLS = [
    Tool("get_weather_forecast", "Forecast.", CITY, ("city",)),
    Tool("get_weather_history", "History.", CITY, ("city",)),
    Tool("get_stock_price", "Price.", {"type": "object", "properties": {"symbol": {"type": "string"}}}, ("symbol",)),
]


def trajectory() -> Trajectory:
    return Trajectory(
        "t",
        TOOLS,
        [Message("user", "Rome?")],
        [
            Step([ToolCall("get_weather_history", {"town": "Rome"})], feedback=["get_weather_history() got an unexpected keyword argument 'town'"], category="parameter_hallucination"),
            Step(
                [ToolCall("get_weather_history", {"city": "Rome"}), ToolCall("get_stock_price", {"symbol": "A"})],
                text="Retry.",
                feedback=['{"t": 3}', '{"p": 1}'],
                category="all_right",
            ),
        ],
        final_answer="3 C",
    )


def chat() -> ChatTemplate:
    return get_template("chat_template", chat_template=QWEN25_TEMPLATE)


ALL = [("python_doc", {}), ("python_sig", {}), ("react", {}), ("chat_template", {"chat_template": QWEN25_TEMPLATE})]


def test_python_doc_exact_text(tiny_tokenizer):
    tools = [
        Tool("get_x", "Get x.", {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}, "days": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}, ("city",)),
        Tool("ping"),
    ]
    traj = Trajectory(
        "t",
        tools,
        [Message("user", "Hi")],
        [Step([ToolCall("get_x", {"city": "Paris", "days": 3}), ToolCall("ping", {})], text="Two calls.", feedback=["a", "b"], category="all_right")],
        system="Be brief.",
        final_answer='He said "ok"',
    )
    r = get_template("python_doc", add_finish_tool=False).render(traj, tiny_tokenizer)
    assert r.text == (
        "System: Be brief.\n\n"
        'Function:\ndef get_x(city: str, days: int = None, tags: list[str] = None):\n    """\n    Get x.\n\n'
        '    Args:\n        city (str): The city.\n        days (int):\n        tags (list[str]):\n    """\n\n'
        'Function:\ndef ping():\n    """\n    """\n'
        "User: Hi\n"
        'Assistant: # Two calls.\nget_x(city="Paris", days=3)\nping()</s>\n'
        "Output: a\nOutput: b\n"
        'Assistant: finish(answer="He said \\"ok\\"")</s>'
    )
    sup = [r.text[s.start : s.end] for s in r.supervised]
    assert sup == [' # Two calls.\nget_x(city="Paris", days=3)\nping()</s>', ' finish(answer="He said \\"ok\\"")</s>']
    assert [(r.text[n.start : n.end], n.step) for n in r.names] == [("get_x", 0), ("ping", 0), ("finish", 1)]
    assert r.tool_names == ("get_x", "ping")
    # A step parses back with ast (comments ignored, one call per line); values are Python literals.
    body = sup[0].removesuffix("</s>")
    calls = [node.value for node in ast.parse(body).body]
    assert [c.func.id for c in calls] == ["get_x", "ping"]
    assert {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords} == {"city": "Paris", "days": 3}


def test_python_doc_adds_finish_tool_when_missing(tiny_tokenizer):
    r = get_template("python_doc").render(trajectory(), tiny_tokenizer)
    assert 'def finish(answer: str):' in r.text and r.tool_names[-1] == "finish"
    assert PythonDocTemplate.function_block(TOOLS[0]) == (
        'Function:\ndef get_weather_forecast(city: str):\n    """\n    Forecast.\n\n    Args:\n        city (str): The city.\n    """'
    )


@pytest.mark.parametrize("name,kw", ALL)
def test_shown_tools_are_the_tools_the_render_lists(tiny_tokenizer, name, kw):
    """One rule for "which tools the model sees": PKT (``Rendered.tool_names``) and RL prompts both use it."""
    from tl_lightning.data.schema import finish_tool
    from tl_lightning.rl.data import build_prompts

    template = get_template(name, **kw)
    traj = trajectory()
    shown = [t.name for t in template.shown_tools(traj)]
    expected = [t.name for t in TOOLS] + ([] if name == "chat_template" else ["finish"])
    assert shown == expected
    assert list(template.render(traj, tiny_tokenizer).tool_names) == shown
    records, _ = build_prompts([traj], template, tiny_tokenizer)
    assert records and all([t.name for t in r.tools] == shown for r in records)
    # a trajectory that already has finish does not get a second one; add_finish_tool=False shows only the data's tools
    with_finish = Trajectory("f", [*TOOLS, finish_tool()], [Message("user", "x")], final_answer="y")
    assert [t.name for t in template.shown_tools(with_finish)].count("finish") == 1
    if name != "chat_template":
        assert [t.name for t in get_template(name, add_finish_tool=False).shown_tools(traj)] == [t.name for t in TOOLS]


def test_python_sig_lists_tools_as_signature_lines_and_keeps_python_doc_steps(tiny_tokenizer):
    traj = trajectory()
    sig = get_template("python_sig").render(traj, tiny_tokenizer)
    doc = get_template("python_doc").render(traj, tiny_tokenizer)
    head = sig.text[: sig.text.index("\nUser:")]
    assert head.splitlines()[0] == "System: Function: def get_weather_forecast(city: str)  # Forecast."
    assert head.splitlines()[-1] == (
        "Function: def finish(answer: str)  # Finish the task and give the final answer to the user."
    )
    assert [sig.text[s.start : s.end] for s in sig.supervised] == [doc.text[s.start : s.end] for s in doc.supervised]
    assert len(sig.text) < len(doc.text)


def test_react_exact_step_text(tiny_tokenizer):
    r = get_template("react").render(trajectory(), tiny_tokenizer)
    sup = [r.text[s.start : s.end] for s in r.supervised]
    assert sup == [
        ' Thought:\nAction: get_weather_history\nAction Input: {"town": "Rome"}</s>',
        ' Thought: Retry.\nAction: get_weather_history\nAction Input: {"city": "Rome"}\nAction: get_stock_price\nAction Input: {"symbol": "A"}</s>',
        ' Thought:\nAction: finish\nAction Input: {"answer": "3 C"}</s>',
    ]
    assert "\nObservation: {\"t\": 3}\nObservation: {\"p\": 1}\nAssistant:" in r.text
    assert r.text.startswith("System: You are an expert in using tools")


@pytest.mark.parametrize("value", ["a \"q\" \\ \n\t é", 3, -2.5, True, None, [1, "x", [False]], {"k": {"n": None}}, ""])
def test_python_literal_round_trips(value):
    assert ast.literal_eval(python_literal(value)) == value


@pytest.mark.parametrize("name,kw", ALL)
def test_segments_tile_text_and_prompt_ends_where_supervision_starts(tiny_tokenizer, name, kw):
    template = get_template(name, **kw)
    traj = trajectory()
    r = template.render(traj, tiny_tokenizer)
    assert r.segments[0].start == 0 and r.segments[-1].end == len(r.text)
    assert all(a.end == b.start for a, b in zip(r.segments[:-1], r.segments[1:], strict=True))
    sup = r.supervised
    assert [s.step for s in sup] == [0, 1, 2]
    eot = template.end_of_turn(tiny_tokenizer)
    assert all(r.text[s.start : s.end].endswith(eot) for s in sup)
    for k, seg in enumerate(sup):
        prefix = Trajectory(traj.id, traj.tools, traj.messages, traj.steps[:k])
        assert template.render_prompt(prefix, tiny_tokenizer) == r.text[: seg.start]
    # render_prompt ignores the final answer: the full trajectory prompts for the next step.
    assert template.render_prompt(traj, tiny_tokenizer) == r.text[: sup[2].start]
    # Names: every supervised call, in order, inside its step's supervised segment.
    names = [(n.name, n.step) for n in r.names]
    expected = [("get_weather_history", 0), ("get_weather_history", 1), ("get_stock_price", 1)]
    assert names[:3] == expected
    for n in r.names:
        seg = sup[n.step]
        assert seg.start <= n.start < n.end <= seg.end and r.text[n.start : n.end] == n.name


def test_chat_template_exact_render_and_encoding(tiny_tokenizer):
    template = chat()
    assert template.end_of_turn(tiny_tokenizer) == "<|im_end|>"
    assert template.call_format == "hermes"  # Qwen's <tool_call> blocks, a plain reply read as the final answer
    r = template.render(trajectory(), tiny_tokenizer)
    sup = [r.text[s.start : s.end] for s in r.supervised]
    assert sup == [
        '<tool_call>\n{"name": "get_weather_history", "arguments": {"town": "Rome"}}\n</tool_call><|im_end|>',
        'Retry.\n<tool_call>\n{"name": "get_weather_history", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_stock_price", "arguments": {"symbol": "A"}}\n</tool_call><|im_end|>',
        "3 C<|im_end|>",
    ]
    assert r.text.endswith("<|im_start|>assistant\n3 C<|im_end|>\n")
    assert "<|im_start|>user\n<tool_response>\n{\"t\": 3}\n</tool_response>\n<tool_response>\n{\"p\": 1}\n</tool_response><|im_end|>\n" in r.text
    enc = encode_trajectory(trajectory(), tiny_tokenizer, template)
    toks = tiny_tokenizer.convert_ids_to_tokens(enc.input_ids.tolist())
    assert [toks[i] for i in torch.nonzero(enc.key_mask).flatten().tolist()] == [
        "get", "weather", "history", "get", "weather", "history", "get", "stock",
    ]
    first = int(torch.nonzero(enc.labels != IGNORE_INDEX)[0])
    assert tiny_tokenizer.decode(enc.input_ids[:first]).endswith("user\nRome?<|im_end|>\n<|im_start|>assistant\n")
    assert toks[first : first + 2] == ["<", "tool"]
    assert torch.equal(enc.error_mask, enc.step_ids == 0)
    decoded = tiny_tokenizer.decode(enc.input_ids[enc.labels != IGNORE_INDEX], skip_special_tokens=False)
    assert decoded == "".join(sup)
    # The newline after <|im_end|> is not supervised: the model stops at <|im_end|>.
    last = int(torch.nonzero(enc.labels != IGNORE_INDEX)[-1])
    assert toks[last] == "<|im_end|>" and toks[last + 1 :] == ["Ċ"]


def test_chat_template_rejects_prefix_unstable_template(tiny_tokenizer):
    unstable = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.role }}: {{ m.content }}</s>\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    with pytest.raises(TemplateError, match="not prefix-stable|does not start with its generation prompt"):
        get_template("chat_template", chat_template=unstable).render(trajectory(), tiny_tokenizer)


def test_chat_template_needs_a_template(tiny_tokenizer):
    with pytest.raises(TemplateError, match="has none"):
        get_template("chat_template").render(trajectory(), tiny_tokenizer)


def test_get_template_and_pickling(tiny_tokenizer):
    with pytest.raises(ValueError, match="unknown template"):
        get_template("alpaca")
    for name, kw in ALL:
        t = get_template(name, **kw)
        assert get_template(t) is t
        clone = pickle.loads(pickle.dumps(t))
        assert clone.render(trajectory(), tiny_tokenizer).text == t.render(trajectory(), tiny_tokenizer).text
    assert [get_template(n, **kw).call_format for n, kw in ALL] == ["python", "python", "react", "hermes"]
    assert get_template("react").end_of_turn(tiny_tokenizer) == "</s>"


def test_react_action_input_is_json(tiny_tokenizer):
    r = get_template("react").render(trajectory(), tiny_tokenizer)
    line = next(line for line in r.text.splitlines() if line.startswith("Action Input: {\"symbol\""))
    assert json.loads(line.removeprefix("Action Input: ").removesuffix("</s>")) == {"symbol": "A"}


_TEXT = st.text(alphabet="abcXYZ 019.,:;!?()'{}[]_-=\n", max_size=25)
_NAME = st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(_NAME, min_size=1, max_size=4, unique=True),
    n_steps=st.integers(0, 3),
    texts=st.lists(_TEXT, min_size=8, max_size=8),
    final=st.booleans(),
)
def test_chat_template_properties(tiny_tokenizer, names, n_steps, texts, final):
    tools = [Tool(n, texts[0], CITY) for n in names]
    steps = [
        Step([ToolCall(names[i % len(names)], {"city": texts[i + 1]})], text=texts[i + 4], feedback=[texts[i + 2]], category="others" if i == 0 else "all_right")
        for i in range(n_steps)
    ]
    traj = Trajectory("h", tools, [Message("user", texts[7] or "q")], steps, final_answer=texts[3] if final or not steps else None)
    template = chat()
    r = template.render(traj, tiny_tokenizer)
    enc = encode_trajectory(traj, tiny_tokenizer, template)
    sup = enc.labels != IGNORE_INDEX
    decoded = tiny_tokenizer.decode(enc.input_ids[sup], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert decoded == r.supervised_text
    assert not (enc.key_mask & ~sup).any() and not (enc.error_mask & ~sup).any()
    assert int(enc.key_mask.sum()) >= n_steps
    assert torch.equal(enc.error_mask, (enc.step_ids == 0) & (n_steps > 0))
    for k, seg in enumerate(r.supervised[: len(steps)]):
        prefix = Trajectory(traj.id, traj.tools, traj.messages, traj.steps[:k])
        assert template.render_prompt(prefix, tiny_tokenizer) == r.text[: seg.start]


@pytest.mark.parametrize("name,kw", ALL)
def test_supervised_steps_parse_back_with_call_format(tiny_tokenizer, name, kw):
    """What the model is trained to generate is what evaluation parses (D's parse_calls)."""
    from tl_lightning.data.calls import parse_calls

    template = get_template(name, **kw)
    traj = trajectory()
    r = template.render(traj, tiny_tokenizer)
    eot = template.end_of_turn(tiny_tokenizer)
    for step, seg in zip(traj.steps, r.supervised, strict=False):
        parsed = parse_calls(r.text[seg.start : seg.end].removesuffix(eot), template.call_format)
        assert parsed.error is None
        assert [(c.name, c.arguments) for c in parsed.calls] == [(c.name, c.arguments) for c in step.calls]


# ---------------------------------------------------------------------------------------- names that read back
# Tool and argument names: plain identifiers, dotted paths, keywords, and anything else text can hold (hyphens,
# emoji, NFKC-folded letters, blanks, quotes, backticks, line breaks...).
_NAME_OR_ARG = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}(\.[A-Za-z_][A-Za-z0-9_]{0,5})?", fullmatch=True),
    st.sampled_from(["class", "from", "None", "__debug__", "get-weather", "🌤", "ﬁnd", "get weather", " x", "x ", "a`b",
                     "x`", 'say"hi', "back\\slash", "a\nb", "Action: x", "finish"]),
    st.text(min_size=1, max_size=12),
)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(ALL), name=_NAME_OR_ARG, args=st.lists(_NAME_OR_ARG, max_size=3, unique=True))
def test_every_template_reads_back_every_tool_it_accepts_and_refuses_the_rest(tiny_tokenizer, which, name, args):
    """The property of issue 23: encoding either refuses a trajectory, with a TemplateError naming the tool (and the
    argument), or its supervised call parses back, with the template's own call format, to the same name and
    argument names. A refused one indeed does not read back when rendered anyway."""
    from tl_lightning.data.calls import parse_calls

    template = get_template(which[0], **which[1])
    tool = Tool(name, "A tool.", {"type": "object", "properties": {a: {"type": "string"} for a in args}})
    traj = Trajectory("p", [tool], [Message("user", "q")], [Step([ToolCall(name, dict.fromkeys(args, "v"))], feedback=["ok"])],
                      final_answer="done")
    eot = template.end_of_turn(tiny_tokenizer)

    def read_back() -> list[tuple[str, list[str]]] | None:
        try:
            r = template.render(traj, tiny_tokenizer)
        except TemplateError:
            return None
        seg = r.supervised[0]
        parsed = parse_calls(r.text[seg.start : seg.end].removesuffix(eot), template.call_format)
        return [(c.name, list(c.arguments)) for c in parsed.calls] if parsed.ok else None

    try:
        encode_trajectory(traj, tiny_tokenizer, template)  # the path every training trajectory takes
    except TemplateError as e:
        message, head = str(e), f"trajectory p: tool {name!r}"
        assert message.startswith(head) and "\n" not in message  # one line, naming the tool
        rest = message[len(head):]
        assert rest.startswith(": the ") or any(rest.startswith(f", argument {a!r}: the ") for a in args)
        assert read_back() != [(name, args)]
        return
    assert read_back() == [(name, args)]


@pytest.mark.parametrize(("name", "args", "culprit"), [
    ("get-weather", [], "tool 'get-weather'"),
    ("🌤", [], "tool '🌤'"),
    ("ﬁnd", [], "tool 'ﬁnd'"),  # Python reads this identifier as 'find' (NFKC)
    ("get_weather", ["city", "class"], "tool 'get_weather', argument 'class'"),
    ("get_weather", ["from"], "tool 'get_weather', argument 'from'"),
])
def test_python_templates_refuse_names_python_cannot_write(tiny_tokenizer, name, args, culprit):
    tool = Tool(name, "", {"type": "object", "properties": {a: {"type": "string"} for a in args}})
    traj = Trajectory("t7", [tool], [Message("user", "q")], final_answer="done")  # the tool is listed, never called
    for template in ("python_doc", "python_sig"):
        with pytest.raises(TemplateError, match="^trajectory t7: " + culprit.replace("(", r"\(") + ": the "):
            encode_trajectory(traj, tiny_tokenizer, get_template(template))
    encode_trajectory(traj, tiny_tokenizer, get_template("react"))  # an Action line holds these names


def test_a_training_file_with_an_unwritable_tool_fails_naming_file_record_and_tool(tmp_path, tiny_tokenizer):
    from tl_lightning.data.datamodule import ToolTrajectoryDataModule
    from tl_lightning.data.readers import write_openai_jsonl

    tools = [Tool("get-weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}, ("city",))]
    step = Step([ToolCall("get-weather", {"city": "Rome"})], feedback=['{"t": 3}'])
    path = tmp_path / "train.jsonl"
    write_openai_jsonl([Trajectory("w1", tools, [Message("user", "Rome?")], [step], final_answer="3 C")], path)
    dm = ToolTrajectoryDataModule(train_path=str(path), template="python_sig", tokenizer=tiny_tokenizer, cache=False)
    with pytest.raises(TemplateError, match=rf"^{path}: trajectory w1: tool 'get-weather': the python_sig template writes "
                                            r"it as 'get-weather\(\)', which does not parse"):
        dm.setup("fit")
    lenient = ToolTrajectoryDataModule(train_path=str(path), template="react", tokenizer=tiny_tokenizer, cache=False)
    lenient.setup("fit")  # react writes it on an Action line, and reads it back
    assert len(lenient.datasets["train"]) == 1
