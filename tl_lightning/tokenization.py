"""Byte-level BPE tokenizers trained from text, for the shipped tiny model and for tests.

Digits are split one per token (as LLaMA's tokenizer does): BPE merges of digit runs make a
small model mis-copy numbers (DESIGN.md §5).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "TINY_TOKENIZER", "load_tokenizer", "shipped_tokenizer_dir", "train_bpe_tokenizer"]

#: bos, eos, pad, unk. EOS doubles as the end-of-turn token of the python_doc and react templates.
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    extra_special_tokens: Iterable[str] = (),
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a fast HF tokenizer (offsets supported)."""
    extra = list(extra_special_tokens)
    specials = list(SPECIAL_TOKENS.values()) + extra
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


#: Name under which :func:`load_tokenizer` returns the tokenizer shipped in ``tl_lightning/assets/tokenizer``.
TINY_TOKENIZER = "tl-tiny"


def shipped_tokenizer_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent / "assets" / "tokenizer"


def load_tokenizer(name_or_path: str = TINY_TOKENIZER, **kwargs) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer by hub name or local path (``"tl-tiny"`` = the shipped one).

    Encoding needs character offsets, which only fast tokenizers give, so a slow one is an error.
    A tokenizer with no pad token (LLaMA's) pads with EOS; padding is always masked out, so the
    choice does not change any loss.
    """
    from transformers import AutoTokenizer

    path = str(shipped_tokenizer_dir()) if name_or_path == TINY_TOKENIZER else name_or_path
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if not getattr(tok, "is_fast", False):
        raise ValueError(
            f"tokenizer {name_or_path!r} is a slow (Python) tokenizer; tl_lightning needs a fast tokenizer "
            "for character offsets (install `tokenizers` and load with use_fast=True, or convert it)"
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
