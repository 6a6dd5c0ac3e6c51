"""The pretraining corpus: deterministic, every format, copyable values, and disjoint from the quick start."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import tl_lightning.synthetic.scenarios as scenarios_pkg
from tl_lightning.data.calls import parse_calls
from tl_lightning.data.readers import read_trajectories
from tl_lightning.data.templates import get_template
from tl_lightning.synthetic.pretrain import FORMATS, corpus, documents, write_corpus
from tl_lightning.synthetic.pretrain.apis import schema_key
from tl_lightning.synthetic.pretrain.corpus import main
from tl_lightning.synthetic.pretrain.episodes import FOLLOW_FRAMES, QUERY_FRAMES, STEP_WEIGHTS
from tl_lightning.synthetic.pretrain.words import VERBS
from tl_lightning.tokenization import SMALL_CHAT_TEMPLATE, load_tokenizer
from tl_lightning.tools.sandbox import default_toolkits

N = 300  # documents per check: every format and every step count appear (checked below)


@pytest.fixture(scope="module")
def docs():
    return list(documents(seed=0, split="train", n=N))


@pytest.fixture(scope="module")
def sandbox_tools():
    return [t for kit in default_toolkits() for t in kit.tools]


def test_same_seed_same_bytes_and_longer_corpus_extends_shorter(tmp_path):
    write_corpus(tmp_path / "a", seed=5, n=30, n_val=5)
    write_corpus(tmp_path / "b", seed=5, n=30, n_val=5)
    main(["--out", str(tmp_path / "c"), "--seed", "5", "--n", "40", "--n-val", "5"])
    for name in ("train.jsonl", "val.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    longer = (tmp_path / "c" / "train.jsonl").read_text().splitlines()
    assert (tmp_path / "a" / "train.jsonl").read_text().splitlines() == longer[:30]
    other = [d["text"] for _, d in documents(seed=6, split="train", n=30)]
    assert other != [json.loads(line)["text"] for line in longer[:30]]


def test_train_and_val_differ(tmp_path):
    write_corpus(tmp_path, seed=0, n=20, n_val=20)
    train = {json.loads(x)["text"] for x in (tmp_path / "train.jsonl").read_text().splitlines()}
    val = {json.loads(x)["text"] for x in (tmp_path / "val.jsonl").read_text().splitlines()}
    assert not train & val


def test_every_format_and_every_step_count_present(docs):
    assert {d["format"] for _, d in docs} == set(FORMATS) == {"python_doc", "python_sig", "react", "chat_template"}
    assert {t.meta["n_calls"] for t, _ in docs} == set(range(1, len(STEP_WEIGHTS) + 1))
    markers = {"python_doc": 'Function:\ndef ', "python_sig": "Function: def ", "react": "\nAction Input: {",
               "chat_template": "<tool_call>{\"name\": "}
    for _, d in docs:
        assert markers[d["format"]] in d["text"], d["id"]


def test_rendered_calls_parse_back_to_the_episode(docs):
    """The supervised text of every step reads back (with the package's call parser) as the episode's calls."""
    chat = load_tokenizer("tl-tiny")
    for traj, d in docs[:80]:
        if d["format"] == "chat_template":
            tpl = get_template("chat_template", chat_template=SMALL_CHAT_TEMPLATE, end_of_turn="<|im_end|>")
            rendered = tpl.render(traj, chat)
        else:
            tpl = get_template(d["format"])
            rendered = tpl.render(traj, chat)
        assert rendered.text == d["text"]
        steps = [s for s in rendered.supervised if s.step < len(traj.steps)]
        assert len(steps) == len(traj.steps)
        for seg, step in zip(steps, traj.steps, strict=True):
            parsed = parse_calls(rendered.text[seg.start : seg.end], tpl.call_format)
            assert [c.to_dict() for c in parsed.calls] == [c.to_dict() for c in step.calls], (d["id"], d["format"])


def _flat(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def test_arguments_are_copied_from_the_query_or_an_earlier_output(docs):
    """Every argument value of a successful call is written in the query or in an earlier tool output."""
    copied_from_output = 0
    for traj, _ in docs:
        seen = traj.query
        for step in traj.steps:
            if step.category.is_error:  # a deliberately wrong call: its extra argument is invented
                seen += "\n" + "\n".join(step.feedback)
                continue
            for call in step.calls:
                for name, value in call.arguments.items():
                    for piece in _flat(value):
                        assert piece in seen, (traj.id, call.name, name, piece)
                        copied_from_output += piece not in traj.query
            seen += "\n" + "\n".join(step.feedback)
        last = json.loads(traj.steps[-1].feedback[0])
        assert any(p in traj.final_answer for v in last.values() for p in _flat(v)), traj.id
    assert copied_from_output > N // 5  # chains through outputs are common, not a corner case


def test_no_tool_name_and_no_schema_shared_with_the_sandbox(docs, sandbox_tools):
    names = {t.name for t in sandbox_tools}
    schemas = {schema_key(t) for t in sandbox_tools}
    corpus_tools = [t for traj, _ in docs for t in traj.tools]
    assert {t.name for t in corpus_tools}.isdisjoint(names)
    assert {schema_key(t) for t in corpus_tools}.isdisjoint(schemas)
    # Not even as a word of the text (``\b`` treats ``_`` as a letter, so ``resend_sms_log`` would not count).
    pattern = re.compile(r"\b(?:" + "|".join(sorted(names)) + r")\b")
    hits = [(d["id"], m.group(0)) for _, d in docs for m in [pattern.search(d["text"])] if m]
    assert not hits


def _quickstart_query_templates() -> set[str]:
    """Every query template of the quick-start scenarios (``ep.ask`` lists), f-string fields written ``{}``."""
    templates = set()
    for path in sorted(Path(scenarios_pkg.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ask" and node.args:
                for elt in getattr(node.args[0], "elts", []):
                    if isinstance(elt, ast.Constant):
                        templates.add(elt.value)
                    elif isinstance(elt, ast.JoinedStr):
                        templates.add("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in elt.values))
    return templates


def test_no_query_template_shared_with_the_quickstart(quickstart_data):
    ours = {f.replace("{action}", "{}") for f in QUERY_FRAMES + FOLLOW_FRAMES}
    theirs = _quickstart_query_templates()
    assert len(theirs) > 50  # the extraction found the scenarios' templates
    assert ours.isdisjoint(theirs)
    # Stronger: no quick-start query could have been produced by one of our frames.
    action = r"(?:" + "|".join(VERBS) + r") the [^.?!]+"
    patterns = [re.compile(re.escape(f).replace(re.escape("{action}"), action)) for f in QUERY_FRAMES + FOLLOW_FRAMES]
    queries = [t.query for t in read_trajectories(quickstart_data / "train.jsonl", format="openai")]
    queries += [json.loads(line)["messages"][0]["content"] for line in (quickstart_data / "test_single.jsonl").read_text().splitlines()
                if json.loads(line).get("messages")]
    assert len(queries) > 1000
    assert not [(q, p.pattern) for q in queries for p in patterns if p.search(q)]


def test_workers_write_the_same_bytes(tmp_path, monkeypatch):
    """Chunks rendered in two processes, several per split, come back in order: the files do not change."""
    monkeypatch.setattr(corpus, "CHUNK", 7)  # the parent cuts the work into chunks of 7 documents
    write_corpus(tmp_path / "one", seed=5, n=30, n_val=9)
    main(["--out", str(tmp_path / "two"), "--seed", "5", "--n", "30", "--n-val", "9", "--workers", "2"])
    for name in ("train.jsonl", "val.jsonl", "manifest.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--n >= 1"):
        write_corpus(tmp_path, seed=0, n=0, n_val=1)
    with pytest.raises(ValueError, match="--workers >= 1"):
        write_corpus(tmp_path, seed=0, n=1, n_val=1, workers=0)
