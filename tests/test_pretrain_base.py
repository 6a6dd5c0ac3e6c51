"""scripts/pretrain_base.py: packing, the packed loss, exact resume, and an HF export that loads and generates."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tl_lightning.synthetic.pretrain import write_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script(pretrain_script):
    return pretrain_script


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, seed=0, n=16, n_val=4)
    return out


def test_pack_places_every_document_once_within_the_row_length(script):
    lengths = [random.Random(i).randint(1, 50) for i in range(200)]
    rows = script.pack(lengths, 64, random.Random(3), window=32)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert rows == script.pack(lengths, 64, random.Random(3), window=32)
    assert rows != script.pack(lengths, 64, random.Random(4), window=32)


def test_collate_restarts_positions_and_skips_document_starts(script):
    docs = [np.array([5, 6, 7]), np.array([8, 9])]
    b = script.collate(docs, [[0, 1]], 7, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert b["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100]]


def test_packed_loss_equals_the_loss_of_separate_documents(script):
    """The restarting positions isolate documents: packing two documents changes no token's loss."""
    args = script.parse_args(["--corpus", ".", "--out", ".", "--max-steps", "1", "--hidden", "32", "--layers", "2", "--heads", "2"])
    tok = AutoTokenizer.from_pretrained(ROOT / "tl_lightning" / "assets" / "tokenizer_small")
    model = script.build_model(args, len(tok), tok).eval()
    docs = [np.array([11, 12, 13, 14, 15]), np.array([21, 22, 23, 24])]
    packed = script.collate(docs, [[0, 1]], 12, pad_id=tok.pad_token_id)
    alone = [script.collate(docs, [[i]], 12, pad_id=tok.pad_token_id) for i in (0, 1)]
    with torch.no_grad():
        together = script.lm_loss(model, packed)
        each = [script.lm_loss(model, b) for b in alone]
    expected = (each[0] * 4 + each[1] * 3) / 7  # token mean over the 4 + 3 labelled tokens
    torch.testing.assert_close(together, expected, rtol=1e-5, atol=1e-6)


def test_repeat_docs_are_random_spans_repeated_and_reproducible(script):
    tok = AutoTokenizer.from_pretrained(ROOT / "tl_lightning" / "assets" / "tokenizer_small")
    docs = script.make_repeat_docs(3000, tok, seed=3)
    assert sum(map(len, docs)) >= 3000 > sum(map(len, docs[:-1]))
    low = max(tok.all_special_ids) + 1
    for d in docs:
        assert d[0] == tok.bos_token_id and low <= d[1:].min() and d[1:].max() < len(tok)
        body = d[1:]
        spans = [k for k in range(8, 49) if len(body) % k == 0 and 2 <= len(body) // k <= 4
                 and np.array_equal(body, np.tile(body[:k], len(body) // k))]
        assert spans, d
    again = script.make_repeat_docs(3000, tok, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(docs, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(docs, script.make_repeat_docs(3000, tok, seed=4), strict=False))


def test_repeat_probe_tells_a_copying_model_from_one_that_does_not(script):
    """A "model" whose logits copy the token ``span`` positions back scores ~0 on the repetitions, and one with
    uniform logits scores log(V) on both parts: the probe measures in-context copying, not something else."""
    tok = AutoTokenizer.from_pretrained(ROOT / "tl_lightning" / "assets" / "tokenizer_small")
    V, span = len(tok), 24

    class Copier(torch.nn.Module):
        device = torch.device("cpu")  # as a transformers model reports it

        def __init__(self, copy):
            super().__init__()
            self.copy = copy

        def forward(self, input_ids, use_cache=False):
            logits = torch.zeros(*input_ids.shape, V)
            if self.copy:  # position j predicts token j + 1 = token j + 1 - span once the span has been seen
                src = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1).roll(span, 1)
                logits[:, span:].scatter_(2, src[:, span:, None], 50.0)
            return type("Out", (), {"logits": logits})()

        def eval(self):
            return self

        def train(self, mode=True):
            return self

    first, later = script.repeat_probe(Copier(False), tok, span=span)
    assert first == pytest.approx(np.log(V), rel=1e-4) and later == pytest.approx(np.log(V), rel=1e-4)
    first, later = script.repeat_probe(Copier(True), tok, span=span)
    assert first == pytest.approx(np.log(V), rel=1e-4) and later < 1e-3
    # In text: the spans follow 20 tokens of a document. A model that copies anywhere still pays ~0 on the
    # repetitions; one that copies only in documents that start with the span (bos first) pays log(V) there too.
    prefix = np.asarray(tok("Function: def lookup_city(name: str)  # Find a city.\nUser: find Paris")["input_ids"][:20])
    assert len(prefix) == 20 and prefix[0] != tok.bos_token_id
    _, later = script.repeat_probe(Copier(True), tok, span=span, prefix=prefix)
    assert later < 1e-3

    class BosOnlyCopier(Copier):
        def forward(self, input_ids, use_cache=False):
            self.copy = bool((input_ids[:, 0] == tok.bos_token_id).all())
            return super().forward(input_ids)

    assert script.repeat_probe(BosOnlyCopier(True), tok, span=span)[1] < 1e-3
    first, later = script.repeat_probe(BosOnlyCopier(True), tok, span=span, prefix=prefix)
    assert first == pytest.approx(np.log(V), rel=1e-4) and later == pytest.approx(np.log(V), rel=1e-4)


def test_splice_repeats_inserts_every_span_once_inside_documents(script):
    docs = [np.arange(100 * i, 100 * i + n, dtype=np.int32) for i, n in enumerate([12, 5, 30, 8])]
    spans = [np.array([1, *([9000 + k] * 3) * 2], dtype=np.int32) for k in range(6)]  # bos + a span of 3, twice
    out = script.splice_repeats(docs, spans, seed=0, seq_len=1000)
    assert len(out) == len(docs)
    inserted = []
    for doc, new in zip(docs, out, strict=True):
        assert new[0] == doc[0]  # never before a document's first token
        np.testing.assert_array_equal(new[new < 9000], doc)  # the document's own tokens, in order
        inserted += [int(t) for t in new[new >= 9000]]
    assert sorted(inserted) == sorted(int(t) for s in spans for t in s[1:])  # each span once, bos dropped
    assert all(np.array_equal(a, b) for a, b in zip(out, script.splice_repeats(docs, spans, seed=0, seq_len=1000), strict=True))
    short = script.splice_repeats(docs, spans, seed=0, seq_len=10)
    assert max(map(len, short)) == 10 and all(np.array_equal(s, o[:10]) for s, o in zip(short, out, strict=True))


def _run(script, corpus, out, *extra):
    return script.main(["--corpus", str(corpus), "--out", str(out), "--hidden", "16", "--layers", "1", "--heads", "2",
                        "--seq-len", "2048", "--batch-rows", "1", "--max-steps", "4", "--warmup", "2", "--lr", "1e-2",
                        "--log-every", "1", "--eval-every", "2", "--save-every", "100", "--val-docs", "2", "--threads", "1",
                        *extra])


def test_resume_continues_exactly_and_the_export_loads_and_generates(script, corpus, tmp_path, capsys):
    _run(script, corpus, tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    assert straight["step"] == 4
    _run(script, corpus, tmp_path / "stopped", "--max-minutes", "0")  # stops (and saves) after its first step
    state = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1
    for key in script.LATER_KEYS:  # a checkpoint from before those options resumes too
        del state["run"][key]
    torch.save(state, tmp_path / "stopped" / "checkpoint.pt")
    _run(script, corpus, tmp_path / "stopped")
    resumed = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)
    assert resumed["step"] == 4 and resumed["tokens"] == straight["tokens"]
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=0, msg=name)
    out = capsys.readouterr().out
    assert "resumed from" in out and "tokens/s" in out and "val_loss" in out

    with pytest.raises(SystemExit, match="another run"):
        _run(script, corpus, tmp_path / "stopped", "--lr", "5e-3")

    hf = tmp_path / "straight" / "hf"
    model = AutoModelForCausalLM.from_pretrained(hf)
    tok = AutoTokenizer.from_pretrained(hf)
    assert tok.chat_template and model.config.hidden_size == 16
    ids = tok("System: Function: def", return_tensors="pt")["input_ids"]
    gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids.shape[1] + 5


def test_induction_phase_repeat_share_and_a_further_stage_from_a_checkpoint(script, corpus, tmp_path, capsys):
    """Steps before --induction-steps train on repeated spans only; --repeat-share adds them to the corpus; a run's
    checkpoint.pt starts the next stage with exactly its weights."""
    _run(script, corpus, tmp_path / "a", "--induction-steps", "2", "--induction-seq-len", "200", "--repeat-share", "0.5")
    out = capsys.readouterr().out
    corpus_line = next(line for line in out.splitlines() if line.startswith("corpus:"))
    repeated = int(corpus_line.split("(")[1].split(" tokens of repeated")[0].replace(",", ""))
    total = int(corpus_line.split("), ")[1].split(" tokens")[0].replace(",", ""))
    assert repeated >= total - repeated > 0  # share 0.5: at least as many repeated-span tokens as corpus tokens
    tokens = [int(line.split("tokens ")[-1].replace(",", "")) for line in out.splitlines() if " loss " in line and "lr" in line]
    assert tokens[1] <= 2 * 200 < tokens[3] - tokens[1]  # two 200-token induction rows, then 2048-token rows
    assert "repeat_probe first" in out

    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    _run(script, corpus, tmp_path / "b", "--init-from", str(tmp_path / "a" / "checkpoint.pt"), "--max-steps", "1",
         "--lr", "0", "--warmup", "1")
    after = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for name, value in state["model"].items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=1e-7, msg=name)


def test_bf16_mixed_precision_is_a_run_key_and_the_export_can_be_sharded(script, corpus, tmp_path, capsys):
    """The GPU settings, checked on CPU: bf16 autocast trains to a loss near fp32's, resuming under the other
    precision is refused, and --max-shard-size splits the export into files that still load."""
    _run(script, corpus, tmp_path / "fp32", "--max-steps", "2")
    _run(script, corpus, tmp_path / "bf16", "--max-steps", "2", "--precision", "bf16-mixed", "--max-shard-size", "100KB")
    out = capsys.readouterr().out
    losses = [float(line.split(" loss ")[1].split()[0]) for line in out.splitlines() if " loss " in line and " lr " in line]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert all(abs(b - a) < 0.05 * a for a, b in zip(losses[:2], losses[2:], strict=True))
    state = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=False)
    fp32 = torch.load(tmp_path / "fp32" / "checkpoint.pt", weights_only=False)["model"]
    # autocast really ran in bf16: the same two steps from the same weights land elsewhere, but nearby
    assert any(not torch.equal(state["model"][k], v) for k, v in fp32.items())
    torch.testing.assert_close(state["model"], fp32, rtol=0, atol=0.05)
    assert state["run"]["precision"] == "bf16-mixed" and all(v.dtype == torch.float32 for v in state["model"].values())
    with pytest.raises(SystemExit, match="precision"):
        _run(script, corpus, tmp_path / "bf16", "--max-steps", "2")
    hf = tmp_path / "bf16" / "hf"
    shards = sorted(hf.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (hf / "model.safetensors.index.json").is_file()  # one tensor may exceed the size
    loaded = AutoModelForCausalLM.from_pretrained(hf)
    for name, value in state["model"].items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
