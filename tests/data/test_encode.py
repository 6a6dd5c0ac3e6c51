"""encode_trajectory: exact tensors on handmade trajectories, PKT key tokens, truncation, properties."""

from __future__ import annotations

import keyword

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_lightning.data.batch import IGNORE_INDEX
from tl_lightning.data.encode import EncodeError, TrajectoryTooLong, encode_trajectory
from tl_lightning.data.schema import FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.templates import get_template
from tl_lightning.tokenization import tokenize_with_offsets

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER_TOOLS = [
    Tool("get_weather_forecast", "", CITY, ("city",)),
    Tool("get_weather_history", "", CITY, ("city",)),
    Tool("get_stock_price", "", {"type": "object", "properties": {"symbol": {"type": "string"}}}, ("symbol",)),
]


def recovered_trajectory() -> Trajectory:
    """First call fails with a parameter hallucination, the second recovers, then the final answer."""
    return Trajectory(
        "rec",
        WEATHER_TOOLS,
        [Message("user", "Rome?")],
        [
            Step(
                [ToolCall("get_weather_history", {"town": "Rome"})],
                feedback=["get_weather_history() got an unexpected keyword argument 'town'"],
                category=FeedbackCategory.PARAMETER_HALLUCINATION,
            ),
            Step([ToolCall("get_weather_history", {"city": "Rome"})], feedback=['{"t": 3}'], category="all_right"),
        ],
        final_answer="3 C",
    )


def _bits(t: torch.Tensor) -> str:
    return "".join("." if int(x) < 0 else str(int(x)) for x in t.tolist())


def _tail_from_user(enc, tokenizer) -> int:
    """Index of the first token of the ``\\nUser:`` turn (everything before it is the system turn)."""
    toks = tokenizer.convert_ids_to_tokens(enc.input_ids.tolist())
    return next(i for i in range(len(toks) - 1) if toks[i] == "Ċ" and toks[i + 1] == "User")


# Expected tails (from the user turn on) for the recovered trajectory, token by token.
PY_TOKENS = (
    ["Ċ", "User", ":", "Ġ", "Rome", "?", "Ċ", "Assistant", ":"]
    + ["Ġget", "_", "weather", "_", "history", "(", "t", "o", "w", "n", '="', "Rome", '")', "</s>"]
    + ["Ċ", "Output", ":", "Ġget", "_", "weather", "_", "history", "(", ")", "Ġ", "g", "o", "t", "Ġ", "an", "Ġ", "un"]
    + ["e", "x", "p", "e", "ct", "e", "d", "Ġ", "k", "e", "y", "w", "or", "d", "Ġ", "argu", "me", "nt", "Ġ", "'"]
    + ["t", "o", "w", "n", "'", "Ċ", "Assistant", ":"]
    + ["Ġget", "_", "weather", "_", "history", "(", "city", '="', "Rome", '")', "</s>"]
    + ["Ċ", "Output", ":", "Ġ{\"", "t", '":', "Ġ", "3", "}", "Ċ", "Assistant", ":"]
    + ["Ġfinish", "(", "answer", '="', "3", "Ġ", "C", '")', "</s>"]
)
PY_EXPECTED = {
    "labels": "000000000" + "1" * 14 + "0" * 46 + "1" * 11 + "0" * 12 + "1" * 9,
    "error_mask": "000000000" + "1" * 14 + "0" * 78,
    # (a) first token of each called name; (b) char 4 ("weather", vs get_stock_price) and char 12 ("history",
    # vs get_weather_forecast); "finish" shares no prefix with any tool.
    "key_mask": "000000000" + "10101" + "0" * 9 + "0" * 46 + "10101" + "0" * 6 + "0" * 12 + "1" + "0" * 8,
    "step_ids": "." * 9 + "0" * 14 + "." * 46 + "1" * 11 + "." * 12 + "2" * 9,
}

REACT_TOKENS = (
    ["Ċ", "User", ":", "Ġ", "Rome", "?", "Ċ", "Assistant", ":"]
    + ["Ġ", "Thought", ":", "Ċ", "Action", ":", "Ġget", "_", "weather", "_", "history", "Ċ", "Action", "ĠInput", ":"]
    + ["Ġ{\"", "t", "o", "w", "n", '":', 'Ġ"', "Rome", '"}', "</s>"]
)


def test_python_doc_exact_tensors_with_failed_then_recovered_call(tiny_tokenizer):
    enc = encode_trajectory(recovered_trajectory(), tiny_tokenizer, "python_doc")
    first = _tail_from_user(enc, tiny_tokenizer)
    assert tiny_tokenizer.convert_ids_to_tokens(enc.input_ids[first:].tolist()) == PY_TOKENS
    assert (enc.labels[:first] == IGNORE_INDEX).all() and (enc.step_ids[:first] == -1).all()
    assert not enc.error_mask[:first].any() and not enc.key_mask[:first].any()
    assert _bits((enc.labels[first:] != IGNORE_INDEX).int()) == PY_EXPECTED["labels"]
    assert _bits(enc.error_mask[first:].int()) == PY_EXPECTED["error_mask"]
    assert _bits(enc.key_mask[first:].int()) == PY_EXPECTED["key_mask"]
    assert _bits(enc.step_ids[first:]) == PY_EXPECTED["step_ids"]
    sup = enc.labels != IGNORE_INDEX
    assert torch.equal(enc.labels[sup], enc.input_ids[sup])
    # MAE: exactly the failed step's supervised tokens.
    assert torch.equal(enc.error_mask, enc.step_ids == 0)
    assert enc.num_steps == 2 and not enc.truncated and enc.id == "rec"


def test_react_exact_tensors(tiny_tokenizer):
    enc = encode_trajectory(recovered_trajectory(), tiny_tokenizer, "react")
    first = _tail_from_user(enc, tiny_tokenizer)
    toks = tiny_tokenizer.convert_ids_to_tokens(enc.input_ids[first:].tolist())
    assert toks[: len(REACT_TOKENS)] == REACT_TOKENS
    n0 = len(REACT_TOKENS) - 9  # supervised tokens of step 0
    assert _bits((enc.labels[first : first + len(REACT_TOKENS)] != IGNORE_INDEX).int()) == "0" * 9 + "1" * n0
    assert _bits(enc.key_mask[first : first + len(REACT_TOKENS)].int()) == "0" * 15 + "10101" + "0" * 14
    assert torch.equal(enc.error_mask, enc.step_ids == 0)
    assert int(enc.error_mask.sum()) == n0
    # Three supervised segments, each ending with EOS, and the final answer is step 2.
    assert (enc.step_ids.unique().tolist()) == [-1, 0, 1, 2]
    eos = tiny_tokenizer.eos_token_id
    assert (enc.input_ids[enc.labels != IGNORE_INDEX] == eos).sum() == 3


def test_error_categories_narrow_mae(tiny_tokenizer):
    traj = recovered_trajectory()
    only_instability = encode_trajectory(traj, tiny_tokenizer, "python_doc", error_categories=["tool_instability"])
    assert not only_instability.error_mask.any()
    both = encode_trajectory(traj, tiny_tokenizer, "python_doc", error_categories=["parameter_hallucination"])
    assert torch.equal(both.error_mask, both.step_ids == 0)


def _key_tokens(tokenizer, enc) -> list[str]:
    return tokenizer.convert_ids_to_tokens(enc.input_ids[enc.key_mask].tolist())


def _one_call(name: str, tools: list[Tool]) -> Trajectory:
    return Trajectory("k", tools, [Message("user", "q")], [Step([ToolCall(name, {"city": "Rome"})])])


@pytest.mark.parametrize("template", ["python_doc", "react"])
def test_key_tokens_prefix_sharing_names(tiny_tokenizer, template):
    traj = _one_call("get_weather_history", WEATHER_TOOLS)
    enc = encode_trajectory(traj, tiny_tokenizer, template)
    idx = torch.nonzero(enc.key_mask).flatten().tolist()
    toks = tiny_tokenizer.convert_ids_to_tokens(enc.input_ids.tolist())
    assert [toks[i] for i in idx] == ["Ġget", "weather", "history"]
    # Exactly the tokens holding characters 0, 4 and 12 of the name.
    rendered = get_template(template).render(traj, tiny_tokenizer)
    (span,) = rendered.names
    _, offsets = tokenize_with_offsets(rendered.text, tiny_tokenizer)
    for i, char in zip(idx, (0, 4, 12), strict=True):
        assert offsets[i][0] <= span.start + char < offsets[i][1]


def test_key_tokens_no_shared_prefix_marks_only_first_token(tiny_tokenizer):
    tools = WEATHER_TOOLS + [Tool("search_flights", "", CITY)]
    enc = encode_trajectory(_one_call("search_flights", tools), tiny_tokenizer, "python_doc")
    assert int(enc.key_mask.sum()) == 1
    first_sup = int(torch.nonzero(enc.labels != IGNORE_INDEX)[0])
    assert bool(enc.key_mask[first_sup])  # the token holding "s" (" search" glued to its space)


def test_key_tokens_strict_prefix_and_hallucinated_name(tiny_tokenizer):
    # "get_weather" is not a tool (hallucinated) and a strict prefix of two tool names: (b) marks the
    # character right after the name, "(", plus char 4 against get_stock_price.
    enc = encode_trajectory(_one_call("get_weather", WEATHER_TOOLS), tiny_tokenizer, "python_doc")
    assert _key_tokens(tiny_tokenizer, enc) == ["Ġget", "weather", "("]
    # A called name that extends a shorter tool name diverges right after the shorter one ends.
    tools = [Tool("get", "", CITY), Tool("get_weather_history", "", CITY)]
    enc = encode_trajectory(_one_call("get_weather_history", tools), tiny_tokenizer, "python_doc")
    assert _key_tokens(tiny_tokenizer, enc) == ["Ġget", "_"]


def test_key_tokens_kept_in_erroneous_steps(tiny_tokenizer):
    enc = encode_trajectory(recovered_trajectory(), tiny_tokenizer, "python_doc")
    assert (enc.key_mask & enc.error_mask).sum() == 3


def test_truncation_keeps_complete_steps(tiny_tokenizer):
    traj = recovered_trajectory()
    full = encode_trajectory(traj, tiny_tokenizer, "python_doc")
    eos = tiny_tokenizer.eos_token_id
    eos_pos = torch.nonzero(full.input_ids == eos).flatten().tolist()  # ends of the three supervised steps
    assert len(eos_pos) == 3
    cut = encode_trajectory(traj, tiny_tokenizer, "python_doc", max_length=eos_pos[1] + 1)
    assert cut.truncated and cut.num_steps == 2 and len(cut) == eos_pos[1] + 1
    assert torch.equal(cut.labels, full.labels[: len(cut)]) and torch.equal(cut.key_mask, full.key_mask[: len(cut)])
    cut = encode_trajectory(traj, tiny_tokenizer, "python_doc", max_length=eos_pos[2])  # one short of the answer
    assert cut.truncated and cut.num_steps == 2 and len(cut) == eos_pos[1] + 1
    cut = encode_trajectory(traj, tiny_tokenizer, "python_doc", max_length=eos_pos[1])
    assert cut.num_steps == 1 and len(cut) == eos_pos[0] + 1 and cut.step_ids.max() == 0
    with pytest.raises(TrajectoryTooLong, match="max_length=10"):
        encode_trajectory(traj, tiny_tokenizer, "python_doc", max_length=10)
    exact = encode_trajectory(traj, tiny_tokenizer, "python_doc", max_length=len(full))
    assert not exact.truncated and len(exact) == len(full)


def test_nothing_supervised_is_an_error(tiny_tokenizer):
    prompt = Trajectory("p", WEATHER_TOOLS, [Message("user", "q")])
    with pytest.raises(EncodeError, match="no supervised step"):
        encode_trajectory(prompt, tiny_tokenizer, "python_doc")


def test_slow_tokenizer_is_rejected(tiny_tokenizer):
    class Slow:
        is_fast = False
        eos_token = "</s>"

    with pytest.raises(TypeError, match="slow tokenizer"):
        encode_trajectory(recovered_trajectory(), Slow(), "python_doc")


def test_bos_convention_is_followed(tiny_tokenizer):
    from conftest import _CORPUS
    from tokenizers import processors

    from tl_lightning.tokenization import train_bpe_tokenizer

    tok = train_bpe_tokenizer(_CORPUS * 5, vocab_size=300)
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.Sequence(
        [processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])]
    )
    enc = encode_trajectory(recovered_trajectory(), tok, "python_doc")
    assert int(enc.input_ids[0]) == bos and int(enc.labels[0]) == IGNORE_INDEX
    assert int((enc.input_ids == bos).sum()) == 1
    # Same supervision as without the BOS, shifted by one.
    plain = encode_trajectory(recovered_trajectory(), tiny_tokenizer, "python_doc")
    assert int((enc.labels != IGNORE_INDEX).sum()) > 0 and int(enc.key_mask.sum()) == int(plain.key_mask.sum())


# ---- property tests -------------------------------------------------------------------------

_TEXT = st.text(alphabet="abcdefgh XYZ0123456789.,:;!?()'{}[]_-=+\n", min_size=0, max_size=30)
# Python keywords (`as`, `if`) are names python_doc cannot write readably: the encoder refuses them (test_templates covers it)
_NAME = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
_VALUE = st.one_of(st.integers(-999, 9999), st.booleans(), st.none(), _TEXT, st.lists(st.integers(0, 9), max_size=3))


@st.composite
def trajectories(draw):
    names = draw(st.lists(_NAME, min_size=1, max_size=5, unique=True))
    tools = [Tool(n, draw(_TEXT), CITY) for n in names]
    steps = []
    for _ in range(draw(st.integers(0, 3))):
        calls = [
            ToolCall(draw(st.one_of(st.sampled_from(names), _NAME)), draw(st.dictionaries(_NAME, _VALUE, max_size=2)))
            for _ in range(draw(st.integers(1, 2)))
        ]
        feedback = [draw(_TEXT) for _ in calls]
        category = draw(st.sampled_from(list(FeedbackCategory)))
        steps.append(Step(calls, text=draw(_TEXT), feedback=feedback, category=category))
    final = draw(st.one_of(st.none(), _TEXT)) if steps else draw(_TEXT)
    return Trajectory("h", tools, [Message("user", draw(_TEXT) or "q")], steps, final_answer=final)


def check_properties(traj: Trajectory, tokenizer, template) -> None:
    """The encoder's invariants, checked against a plain per-character reference."""
    rendered = template.render(traj, tokenizer)
    enc = encode_trajectory(traj, tokenizer, template)
    char_sup = np.zeros(len(rendered.text), dtype=bool)
    for seg in rendered.supervised:
        char_sup[seg.start : seg.end] = True
    _, offsets = tokenize_with_offsets(rendered.text, tokenizer)
    expected, prev_end = [], 0
    for _, end in offsets.tolist():  # a token owns the characters since the previous token's end
        expected.append(bool(end > prev_end and char_sup[prev_end:end].any()))
        prev_end = max(prev_end, end)
    supervised = (enc.labels != IGNORE_INDEX).tolist()
    assert supervised == expected  # -100 exactly outside supervised spans
    decoded = tokenizer.decode(enc.input_ids[enc.labels != IGNORE_INDEX], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert decoded == rendered.supervised_text
    sup = enc.labels != IGNORE_INDEX
    assert not (enc.error_mask & ~sup).any() and not (enc.key_mask & ~sup).any()
    assert torch.equal(enc.step_ids >= 0, sup)
    errors = {i for i, s in enumerate(traj.steps) if s.is_error}
    assert torch.equal(enc.error_mask, torch.tensor([int(s) in errors for s in enc.step_ids.tolist()], dtype=torch.bool) & sup)
    n_calls = sum(len(s.calls) for s in traj.steps)
    assert int(enc.key_mask.sum()) >= min(n_calls, 1)


@pytest.fixture(scope="module")
def trimmed_tokenizer():
    """A GPT-2-style variant whose offsets exclude leading whitespace (lone spaces get empty offsets)."""
    from conftest import _CORPUS
    from tokenizers import processors

    from tl_lightning.tokenization import train_bpe_tokenizer

    tok = train_bpe_tokenizer(_CORPUS * 20, vocab_size=512)
    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok


@pytest.mark.parametrize("name", ["python_doc", "react"])
@pytest.mark.parametrize("which", ["tiny", "trimmed"])
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traj=trajectories())
def test_encode_properties(tiny_tokenizer, trimmed_tokenizer, which, name, traj):
    tokenizer = tiny_tokenizer if which == "tiny" else trimmed_tokenizer
    check_properties(traj, tokenizer, get_template(name))


def test_trimmed_offsets_keep_lone_space_tokens_supervised(trimmed_tokenizer):
    _, offsets = tokenize_with_offsets("Assistant: Thought:", trimmed_tokenizer)
    assert offsets.tolist()[2] == [11, 11]  # the lone "Ġ" of " Thought" reports an empty span
    enc = encode_trajectory(recovered_trajectory(), trimmed_tokenizer, "react")
    toks = trimmed_tokenizer.convert_ids_to_tokens(enc.input_ids.tolist())
    first = int(torch.nonzero(enc.labels != IGNORE_INDEX)[0])
    assert toks[first - 2 : first + 2] == ["Assistant", ":", "Ġ", "Thought"]
    assert int(((enc.labels != IGNORE_INDEX) & (enc.input_ids == trimmed_tokenizer.eos_token_id)).sum()) == 3


def test_batched_encoding_matches_single(tiny_tokenizer):
    from tl_lightning.data.encode import encode_trajectories

    long = Trajectory("long", WEATHER_TOOLS, [Message("user", "x " * 900)], [Step([ToolCall("get_stock_price", {})])])
    prompt = Trajectory("p", WEATHER_TOOLS, [Message("user", "q")])
    trajs = [recovered_trajectory(), long, prompt, _one_call("get_weather", WEATHER_TOOLS)]
    out = list(encode_trajectories(trajs, tiny_tokenizer, "react", max_length=900, chunk_size=3))
    assert isinstance(out[1], TrajectoryTooLong) and isinstance(out[2], EncodeError)
    for i in (0, 3):
        single = encode_trajectory(trajs[i], tiny_tokenizer, "react", max_length=900)
        for f in ("input_ids", "labels", "error_mask", "key_mask", "step_ids"):
            assert torch.equal(getattr(out[i], f), getattr(single, f))
