"""Byte-level BPE tokenizers trained from text, for the shipped tiny model and for tests.

Digits are split one per token (as LLaMA's tokenizer does): BPE merges of digit runs make a
small model mis-copy numbers (DESIGN.md §5). With ``whole_identifiers`` (the shipped tokenizer),
underscores count as letters when pre-splitting, so BPE may merge a whole ``snake_case`` identifier
(a tool or parameter name) into one token: choosing a tool is then one decision of a tiny model,
not a run of sub-word guesses.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "TINY_TOKENIZER", "load_tokenizer", "shipped_tokenizer_dir", "train_bpe_tokenizer"]

#: bos, eos, pad, unk. EOS doubles as the end-of-turn token of the python_doc and react templates.
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


#: GPT-2's pre-tokenization regex with ``_`` moved from the punctuation class to the letter class.
_SNAKE_CASE_WORDS = r"""'(?:[sdmt]|ll|ve|re)| ?[\p{L}_]+| ?\p{N}+| ?[^\s\p{L}\p{N}_]+|\s+(?!\S)|\s+"""


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    extra_special_tokens: Iterable[str] = (),
    chat_template: str | None = None,
    whole_identifiers: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a fast HF tokenizer (offsets supported).

    ``whole_identifiers=False`` pre-splits like GPT-2 (``get_weather`` -> ``get``, ``_``, ``weather``
    before any merge, as most LLM tokenizers do); ``True`` lets ``snake_case`` words merge whole.
    """
    extra = list(extra_special_tokens)
    specials = list(SPECIAL_TOKENS.values()) + extra
    tok = Tokenizer(models.BPE(unk_token=None))
    words = (
        [pre_tokenizers.Split(Regex(_SNAKE_CASE_WORDS), behavior="isolated"),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        if whole_identifiers
        else [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), *words])
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
