"""``tl-small``: the base model's sub-word tokenizer (digits one per token, tool names in pieces, PKT key tokens)."""

from __future__ import annotations

import importlib.util
import os
from itertools import combinations
from pathlib import Path

import pytest

from tl_lightning.data.encode import encode_trajectories
from tl_lightning.data.readers import read_trajectories
from tl_lightning.tokenization import (
    SHIPPED_TOKENIZERS,
    load_tokenizer,
    shipped_tokenizer_dir,
    tokenize_with_offsets,
)
from tl_lightning.tools.sandbox import default_toolkits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tl-small")


@pytest.fixture(scope="module")
def quickstart_names() -> list[str]:
    return sorted(t.name for kit in default_toolkits() for t in kit.tools)


def _script():
    spec = importlib.util.spec_from_file_location("train_tokenizer", ROOT / "scripts" / "train_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loads_by_name_as_a_fast_tokenizer_with_its_chat_template(tok):
    assert "tl-small" in SHIPPED_TOKENIZERS
    assert tok.is_fast and len(tok) == 4096
    assert tok.eos_token == "</s>" and tok.pad_token == "<pad>"
    assert "<tool_call>" in tok.chat_template
    assert tok.convert_tokens_to_ids("<|im_end|>") != tok.unk_token_id
    assert sum(f.stat().st_size for f in shipped_tokenizer_dir("tl-small").iterdir()) < 400_000
    with pytest.raises(ValueError, match="no shipped tokenizer"):
        shipped_tokenizer_dir("tl-huge")


def test_digits_are_one_per_token(tok):
    text = 'f(amount=1234.56, code="90210", when="2031-04-07", n=7)'
    pieces = [tok.decode([i]) for i in tok(text)["input_ids"]]
    assert "".join(pieces) == text
    digit_pieces = [p for p in pieces if any(c.isdigit() for c in p)]
    assert all(len(p.strip()) == 1 for p in digit_pieces), digit_pieces
    assert len(digit_pieces) == sum(c.isdigit() for c in text)


@pytest.mark.parametrize("context", ["Assistant: {}(", '"name": "{}"', "Action: {}\n"])
def test_every_quickstart_tool_name_is_several_tokens(tok, quickstart_names, context):
    """In each format's context (python call, chat JSON, ReAct), as the encoder tokenizes the whole text."""
    for name in quickstart_names:
        text = context.format(name)
        start = text.index(name)
        ids, offsets = tokenize_with_offsets(text, tok)
        inside = [k for k, (a, b) in enumerate(offsets) if a < start + len(name) and b > start]
        assert len(inside) > 1, (name, context, tok.convert_ids_to_tokens(ids))


def test_prefix_siblings_part_after_the_first_token(tok, quickstart_names):
    """For names sharing at least their first word, the first differing character is not in the first token."""
    pairs = [(a, b) for a, b in combinations(quickstart_names, 2) if a.split("_")[0] == b.split("_")[0]]
    assert len(pairs) > 20
    for a, b in pairs:
        for name, other in ((a, b), (b, a)):
            text = f"Assistant: {name}("
            start = text.index(name)
            cut = start + len(os.path.commonprefix([name, other]))
            _, offsets = tokenize_with_offsets(text, tok)
            first = next(k for k, (s, e) in enumerate(offsets) if e > start)
            diverge = next(k for k, (s, e) in enumerate(offsets) if e > cut)
            assert diverge != first, (name, other)


@pytest.mark.parametrize("template", ["python_sig", "python_doc", "react"])
def test_quickstart_key_tokens_per_step_at_least_1_5(tok, quickstart_data, template):
    """The data report's figure (key tokens on tool-call steps per tool-call step) on the quick-start training set."""
    trajs = read_trajectories(quickstart_data / "train.jsonl", format="openai")
    keys = steps = 0
    for traj, enc in zip(trajs, encode_trajectories(trajs, tok, template), strict=True):
        keys += int((enc.key_mask & (enc.step_ids < len(traj.steps))).sum())
        steps += enc.num_steps
    assert steps > 1000
    assert keys / steps >= 1.5, keys / steps


def test_tl_tiny_still_reproduces_byte_for_byte():
    assert _script().main(["--check"]) == 0


@pytest.mark.slow
def test_tl_small_reproduces_byte_for_byte():
    """About 30 s. Needs the standard library the shipped tokenizer was trained with (its docstrings are the English)."""
    script = _script()
    digest = __import__("hashlib").sha256("\n".join(script.english_texts()).encode()).hexdigest()
    if digest != script.ENGLISH_SHA256:
        pytest.skip("this Python's standard-library docstrings differ from those tl-small was trained on")
    assert script.main(["--tokenizer", "tl-small", "--check"]) == 0
