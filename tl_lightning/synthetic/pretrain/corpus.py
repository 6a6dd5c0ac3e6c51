"""The pretraining corpus: episodes over generated APIs, each rendered in one of the package's prompt formats.

    python -m tl_lightning.synthetic.pretrain --out data/pretrain --seed 0 --n 20000

Writes ``train.jsonl`` (``--n`` documents) and ``val.jsonl`` (``--n-val``), one
``{"id", "format", "text"}`` object per line, and ``manifest.json``. The text is what the fine-tuned
model will read and write: it is rendered by :mod:`tl_lightning.data.templates` itself (``python_doc``,
``python_sig``, ``react``, and ``chat_template`` with ``tl-small``'s template), so the base model learns
exactly the syntax each format expects. Document ``i`` of a split depends only on ``(seed, split, i)``:
a seed gives byte-identical files, and a longer corpus starts with the shorter one. That also lets
``--workers N`` render chunks in N processes (for a large corpus on a many-core machine) and write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tl_lightning.data.chat_template import ChatTemplate
from tl_lightning.data.schema import Trajectory
from tl_lightning.data.templates import get_template
from tl_lightning.synthetic.pretrain.episodes import build_episode
from tl_lightning.tokenization import SMALL_CHAT_TEMPLATE, SPECIAL_TOKENS, TINY_TOKENIZER, load_tokenizer

__all__ = ["FORMATS", "Document", "documents", "main", "render", "write_corpus"]

#: Prompt formats and their share of documents. ``python_sig`` (the quick start's) gets the most.
FORMATS = {"python_sig": 0.35, "python_doc": 0.25, "react": 0.2, "chat_template": 0.2}
#: Where ``tl-small``'s chat template ends an assistant turn.
CHAT_END_OF_TURN = "<|im_end|>"

Document = dict  # {"id": str, "format": str, "text": str}


class RenderOnlyTokenizer:
    """What the turn-based templates read from a tokenizer to render text: its special tokens (they do not tokenize)."""

    bos_token = SPECIAL_TOKENS["bos_token"]
    eos_token = SPECIAL_TOKENS["eos_token"]
    pad_token = SPECIAL_TOKENS["pad_token"]
    unk_token = SPECIAL_TOKENS["unk_token"]
    chat_template = None


class _Renderer:
    """Renders trajectories in every format; the chat format needs a real tokenizer for its Jinja engine only."""

    def __init__(self) -> None:
        self.templates = {name: get_template(name) for name in FORMATS if name != "chat_template"}
        self.templates["chat_template"] = ChatTemplate(chat_template=SMALL_CHAT_TEMPLATE, end_of_turn=CHAT_END_OF_TURN)
        self._jinja = None

    def __call__(self, traj: Trajectory, fmt: str) -> str:
        if fmt == "chat_template":
            if self._jinja is None:
                # Any tokenizer with apply_chat_template renders the same text: the template names no token of its own.
                self._jinja = load_tokenizer(TINY_TOKENIZER)
            return self.templates[fmt].render(traj, self._jinja).text
        return self.templates[fmt].render(traj, RenderOnlyTokenizer()).text


def render(traj: Trajectory, fmt: str) -> str:
    """``traj`` rendered in format ``fmt`` (a key of :data:`FORMATS`), as the corpus writes it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; the corpus renders {', '.join(FORMATS)}")
    return _Renderer()(traj, fmt)


def documents(seed: int, split: str, n: int, start: int = 0) -> Iterator[tuple[Trajectory, Document]]:
    """Documents ``start .. start+n-1`` of ``split``, each with its trajectory; each depends only on (seed, split, i)."""
    renderer = _Renderer()
    names, weights = list(FORMATS), list(FORMATS.values())
    for i in range(start, start + n):
        rng = random.Random(f"tl-pretrain:{seed}:{split}:{i}")
        fmt = rng.choices(names, weights=weights)[0]
        traj = build_episode(rng, f"pt-{split}-{i:07d}", with_thoughts=fmt in ("react", "chat_template") and rng.random() < 0.6)
        yield traj, {"id": traj.id, "format": fmt, "text": renderer(traj, fmt)}


#: Documents per task of a ``--workers`` pool.
CHUNK = 2000


def _chunk(job: tuple[int, str, int, int]) -> list[tuple[str, str, int, int]]:
    """Documents ``start .. start+n-1`` as (JSON line, format, calls, characters)."""
    seed, split, start, n = job
    return [(json.dumps(doc, ensure_ascii=False) + "\n", doc["format"], traj.meta["n_calls"], len(doc["text"]))
            for traj, doc in documents(seed, split, n, start)]


def write_corpus(out: Path, seed: int, n: int, n_val: int, workers: int = 1) -> dict:
    """Write ``train.jsonl``, ``val.jsonl`` and ``manifest.json`` under ``out``; return the manifest. ``workers`` > 1
    renders chunks of :data:`CHUNK` documents in that many processes, in order: the files are the same bytes."""
    if n < 1 or n_val < 0 or workers < 1:
        raise ValueError(f"need --n >= 1, --n-val >= 0 and --workers >= 1, got n={n}, n_val={n_val}, workers={workers}")
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"seed": seed, "splits": {}}
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for split, count in (("train", n), ("val", n_val)):
            jobs = [(seed, split, lo, min(CHUNK, count - lo)) for lo in range(0, count, CHUNK)]
            formats: Counter = Counter()
            steps: Counter = Counter()
            chars = 0
            with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for chunk in (pool.imap(_chunk, jobs) if pool else map(_chunk, jobs)):
                    for line, fmt, n_calls, n_chars in chunk:
                        f.write(line)
                        formats[fmt] += 1
                        steps[n_calls] += 1
                        chars += n_chars
            manifest["splits"][split] = {"documents": count, "characters": chars, "formats": dict(sorted(formats.items())),
                                         "calls_per_episode": {str(k): v for k, v in sorted(steps.items())}}
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_lightning.synthetic.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, required=True, help="training documents")
    p.add_argument("--n-val", type=int, default=200, help="held-out documents (val.jsonl)")
    p.add_argument("--workers", type=int, default=1, help="processes that render documents (same bytes for any number)")
    args = p.parse_args(argv)
    manifest = write_corpus(args.out, args.seed, args.n, args.n_val, args.workers)
    train = manifest["splits"]["train"]
    print(f"wrote {train['documents']} documents ({train['characters']:,} characters; formats {train['formats']}) "
          f"and {manifest['splits']['val']['documents']} held-out ones to {args.out}")
    return 0
