"""Train the shipped tokenizers: ``tl-tiny`` (tl_lightning/assets/tokenizer) and ``tl-small`` (assets/tokenizer_small).

    python scripts/train_tokenizer.py                          # tl-tiny, into tl_lightning/assets/tokenizer/
    python scripts/train_tokenizer.py --tokenizer tl-small     # tl-small, into tl_lightning/assets/tokenizer_small/
    python scripts/train_tokenizer.py --tokenizer tl-small --check   # retrain in a temporary folder, compare bytes
    python scripts/train_tokenizer.py --out /tmp/tok --vocab-size 4096

Both are byte-level BPEs with one token per digit (BPE merges of digit runs make a small model mis-copy
numbers, docs/method.md#quick-start-scale). Byte-level, so any other text still encodes (in more tokens). Deterministic.

``tl-tiny``: 2,048 tokens trained on the quick-start training split rendered through ``python_doc``, with
``snake_case`` identifiers merged whole, so every quick-start tool name is one token. With sub-word names
the tiny from-scratch model (then 4 layers) assembles names like ``get_price`` from pieces: held-out
tool-name accuracy after the 4.5-minute quick start was 37% with them and 63% with whole names.

``tl-small`` (the base model's): 4,096 tokens trained on the first 4,000 documents of the pretraining corpus
(seed 0, every prompt format) plus English: the docstrings of Python's own standard library, files in sorted
order. Identifiers split at ``_`` before merging (GPT-2's rule, as CodeLLaMA's and Qwen's tokenizers split
them), so quick-start tool names are several tokens and prefix siblings part at a later token, which is
what PKT's prefix-divergence rule is for. It never sees a quick-start trajectory. Its English part comes
from the interpreter's standard library, so byte-for-byte reproduction needs the same Python version
(:data:`ENGLISH_SHA256` is checked and a mismatch is reported).
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import hashlib
import sys
import sysconfig
import tempfile
from pathlib import Path

from tl_lightning.data.readers import read_trajectories
from tl_lightning.data.templates import get_template
from tl_lightning.synthetic import ensure_quickstart_data
from tl_lightning.synthetic.pretrain import documents
from tl_lightning.synthetic.pretrain.corpus import RenderOnlyTokenizer
from tl_lightning.tokenization import (
    SMALL_CHAT_TEMPLATE,
    SMALL_TOKENIZER,
    TINY_TOKENIZER,
    shipped_tokenizer_dir,
    train_bpe_tokenizer,
)

#: ChatML markers: ``tl-small``'s chat template uses them; ``tl-tiny`` keeps them for chat-template experiments.
EXTRA_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>"]
#: The ``tl-small`` recipe: vocabulary size, pretraining-corpus seed and document count.
SMALL_VOCAB, SMALL_CORPUS_SEED, SMALL_CORPUS_DOCS = 4096, 0, 4000
#: Standard-library folders whose docstrings are not English prose, or not the library's (tests, demos, 2to3).
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo"}
#: sha256 of :func:`english_texts` joined by newlines under CPython 3.11.7 (the shipped ``tl-small``).
ENGLISH_SHA256 = "6a98e59ae486632fdd392549b361270672a7d929133300d5d994d0a47f9c67a1"


def corpus(split: str = "train", template: str = "python_doc") -> list[str]:
    """``tl-tiny``'s training text: the quick-start split rendered through ``template``."""
    tpl = get_template(template)
    trajectories = read_trajectories(ensure_quickstart_data() / f"{split}.jsonl", format="openai")
    return [tpl.render(t, RenderOnlyTokenizer()).text for t in trajectories]


def english_texts() -> list[str]:
    """Docstrings (modules, classes, functions) of the standard library's ``.py`` files, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(root).parts))
    out = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):  # a file the running parser cannot read
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    out.append(doc)
    return out


def small_corpus() -> tuple[list[str], list[str]]:
    """``tl-small``'s training text: pretraining-corpus documents and English docstrings."""
    docs = [doc["text"] for _, doc in documents(SMALL_CORPUS_SEED, "train", SMALL_CORPUS_DOCS)]
    return docs, english_texts()


def train(name: str, vocab_size: int | None):
    """The tokenizer ``name`` trained by its recipe (``vocab_size`` overrides the recipe's)."""
    if name == TINY_TOKENIZER:
        texts = corpus()
        tok = train_bpe_tokenizer(texts, vocab_size=vocab_size or 2048, extra_special_tokens=EXTRA_SPECIAL_TOKENS,
                                  whole_identifiers=True)
        return tok, f"{len(texts)} quick-start trajectories"
    docs, english = small_corpus()
    digest = hashlib.sha256("\n".join(english).encode()).hexdigest()
    if digest != ENGLISH_SHA256:
        print(f"note: the standard library's docstrings differ from the shipped tokenizer's (Python {sys.version.split()[0]}, "
              f"sha256 {digest[:12]}...): the result will not be byte-identical to the shipped tl-small")
    tok = train_bpe_tokenizer(docs + english, vocab_size=vocab_size or SMALL_VOCAB, extra_special_tokens=EXTRA_SPECIAL_TOKENS,
                              chat_template=SMALL_CHAT_TEMPLATE, whole_identifiers=False)
    chars = sum(map(len, english))
    return tok, f"{len(docs)} pretraining documents + {len(english)} docstrings ({chars:,} characters)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", choices=[TINY_TOKENIZER, SMALL_TOKENIZER], default=TINY_TOKENIZER)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped one)")
    p.add_argument("--vocab-size", type=int, default=None, help="override the recipe's vocabulary size")
    p.add_argument("--check", action="store_true", help="train into a temporary folder and compare with the shipped files")
    args = p.parse_args(argv)
    shipped = shipped_tokenizer_dir(args.tokenizer)
    tok, what = train(args.tokenizer, args.vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if args.check else (args.out or shipped)
        out.mkdir(parents=True, exist_ok=True)
        # The chat template goes into tokenizer_config.json, not chat_template.jinja: the wheel ships *.json assets.
        tok.save_pretrained(out, save_jinja_files=False)
        print(f"trained {args.tokenizer} on {what}; vocab {len(tok)}")
        if not args.check:
            print(f"wrote {out}")
            return 0
        names = sorted(f.name for f in out.iterdir())
        same = names == sorted(f.name for f in shipped.iterdir()) and all(
            filecmp.cmp(out / n, shipped / n, shallow=False) for n in names)
        print(f"{'identical to' if same else 'DIFFERENT from'} {shipped} ({', '.join(names)})")
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
