"""Train the tokenizer shipped as ``tl-tiny`` (tl_lightning/assets/tokenizer/).

    python scripts/train_tokenizer.py                    # writes tl_lightning/assets/tokenizer/
    python scripts/train_tokenizer.py --out /tmp/tok --vocab-size 4096

A byte-level BPE of 2,048 tokens trained on the quick-start training split rendered through the
``python_doc`` template, i.e. on the text the quick-start model reads and writes. Byte-level, so any
other text still encodes (in more tokens). Deterministic for a given quick-start dataset.
- One token per digit: BPE merges of digit runs make a small model mis-copy numbers (DESIGN.md §5).
- ``snake_case`` identifiers may merge whole, so every quick-start tool name is one token. With
  sub-word names the tiny model (then 4 layers) assembles names like ``get_price`` from pieces: held-out
  tool-name accuracy after the 4.5-minute quick start was 37% with them and 63% with whole names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tl_lightning.data.readers import read_trajectories
from tl_lightning.synthetic import ensure_quickstart_data
from tl_lightning.data.templates import get_template
from tl_lightning.tokenization import SPECIAL_TOKENS, shipped_tokenizer_dir, train_bpe_tokenizer

#: Kept for chat-template experiments with the tiny model (B's ``chat_template`` template).
EXTRA_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>"]


class _RenderOnly:
    """What the python_doc template needs from a tokenizer to render text (it does not tokenize)."""

    bos_token = SPECIAL_TOKENS["bos_token"]
    eos_token = SPECIAL_TOKENS["eos_token"]
    pad_token = SPECIAL_TOKENS["pad_token"]
    unk_token = SPECIAL_TOKENS["unk_token"]
    chat_template = None


def corpus(split: str = "train", template: str = "python_doc") -> list[str]:
    tpl = get_template(template)
    trajectories = read_trajectories(ensure_quickstart_data() / f"{split}.jsonl", format="openai")
    return [tpl.render(t, _RenderOnly()).text for t in trajectories]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=shipped_tokenizer_dir())
    p.add_argument("--vocab-size", type=int, default=2048)
    args = p.parse_args(argv)
    texts = corpus()
    tok = train_bpe_tokenizer(
        texts, vocab_size=args.vocab_size, extra_special_tokens=EXTRA_SPECIAL_TOKENS, whole_identifiers=True
    )
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(args.out)
    n_tokens = sum(len(tok(t)["input_ids"]) for t in texts[:200])
    n_chars = sum(len(t) for t in texts[:200])
    print(f"trained on {len(texts)} rendered trajectories; vocab {len(tok)}; "
          f"{n_chars / max(n_tokens, 1):.2f} chars/token; wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
