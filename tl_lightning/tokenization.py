"""Byte-level BPE tokenizers trained from text, for the shipped tiny model and for tests.

Digits are split one per token (as LLaMA's tokenizer does): BPE merges of digit runs make a
small model mis-copy numbers (DESIGN.md §5).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "train_bpe_tokenizer"]

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
