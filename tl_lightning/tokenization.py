"""The one place that resolves, loads and applies tokenizers; byte-level BPE training for the tiny model.

    from tl_lightning.tokenization import load_tokenizer, resolve_tokenizer, tokenize_with_offsets
    tok = load_tokenizer("tl-tiny")                        # the shipped tokenizer, by name
    tok = resolve_tokenizer(None, default="/models/CodeLlama-7b-hf")
    ids, offsets = tokenize_with_offsets("Assistant: f(x=1)", tok)   # [L], [L, 2], BOS convention applied

Training (:mod:`tl_lightning.data.encode`) and generation (:mod:`tl_lightning.generation`) tokenize
through :func:`tokenize_with_offsets`, so a prompt at test time gets exactly the ids it had in training.

Digits are split one per token (as LLaMA's tokenizer does): BPE merges of digit runs make a
small model mis-copy numbers (docs/method.md#quick-start-scale). With ``whole_identifiers`` (``tl-tiny``),
underscores count as letters when pre-splitting, so BPE may merge a whole ``snake_case`` identifier
(a tool or parameter name) into one token: choosing a tool is then one decision of a tiny model,
not a run of sub-word guesses. ``tl-small`` (the base model's) splits them at ``_`` as real LLM tokenizers do.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

if TYPE_CHECKING:  # transformers is imported on first use: the CLI's argument checks stay fast
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "SHIPPED_TOKENIZERS",
    "SMALL_CHAT_TEMPLATE",
    "SMALL_TOKENIZER",
    "SPECIAL_TOKENS",
    "TINY_TOKENIZER",
    "check_tokenizer_source",
    "hub_source_problem",
    "load_tokenizer",
    "require_fast",
    "resolve_tokenizer",
    "shipped_tokenizer_dir",
    "tokenize_batch_with_offsets",
    "tokenize_with_offsets",
    "train_bpe_tokenizer",
]

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
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


#: Name under which :func:`load_tokenizer` returns the tokenizer shipped in ``tl_lightning/assets/tokenizer``.
TINY_TOKENIZER = "tl-tiny"

#: The sub-word tokenizer of the pretrained base model (``tl_lightning/assets/tokenizer_small``): byte-level BPE
#: over the pretraining corpus plus English, identifiers split at ``_`` as real LLM tokenizers split them.
SMALL_TOKENIZER = "tl-small"

#: Every name :func:`load_tokenizer` resolves without a path or the hub, and its folder under ``assets/``.
SHIPPED_TOKENIZERS = (TINY_TOKENIZER, SMALL_TOKENIZER)
_SHIPPED_DIRS = {TINY_TOKENIZER: "tokenizer", SMALL_TOKENIZER: "tokenizer_small"}

#: ``tl-small``'s chat template: ChatML turns, tools as JSON lines in the system turn, each call as
#: ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` and tool replies in ``<tool_response>`` (the
#: Qwen2.5 layout, which the ``json`` call parser reads). Prefix-stable, as the ``chat_template`` format needs.
SMALL_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- else %}{%- set system = 'You are a helpful assistant.' %}{%- endif %}"
    "{{- '<|im_start|>system\\n' + system }}"
    "{%- if tools %}"
    "{{- '\\n\\n# Tools\\nCall a function by writing <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>' }}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' or (message['role'] == 'assistant' and not message.get('tool_calls')) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}"
    "{%- for call in message['tool_calls'] %}{%- set call = call['function'] if call['function'] is defined else call %}"
    "{{- '\\n<tool_call>{\"name\": \"' + call['name'] + '\", \"arguments\": ' + (call['arguments'] | tojson) + '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>tool\\n<tool_response>' + message['content'] + '</tool_response><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# A Hugging Face hub id: ``name`` or ``org/name`` of letters, digits, ``-``, ``_`` and ``.``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def shipped_tokenizer_dir(name: str = TINY_TOKENIZER) -> Path:
    """The folder of the shipped tokenizer called ``name`` (one of :data:`SHIPPED_TOKENIZERS`)."""
    if name not in _SHIPPED_DIRS:
        raise ValueError(f"no shipped tokenizer {name!r}; shipped: {', '.join(SHIPPED_TOKENIZERS)}")
    return Path(__file__).resolve().parent / "assets" / _SHIPPED_DIRS[name]


def hub_source_problem(name: str) -> str | None:
    """Why ``name`` (not a local path) cannot come from the hub, or None when it may.

    A name shaped like a hub id is accepted unless hub access is off (``HF_HUB_OFFLINE``) and no
    copy is cached; anything else (``/no/tok``, ``./x``) can only have been meant as a local path.
    """
    if name.startswith((".", "~", os.sep)) or ".." in name or not _HUB_ID.match(name):
        return ""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        for filename in ("config.json", "tokenizer_config.json", "tokenizer.json"):
            try:
                if isinstance(try_to_load_from_cache(name, filename), str):
                    return None
            except ValueError:  # huggingface_hub's finer id rules (e.g. no "--")
                return ""
        return "hub access is off (HF_HUB_OFFLINE) and it is not in the local hub cache"
    return None


def check_tokenizer_source(name: object) -> None:
    """Raise ``ValueError`` (one line) when ``name`` cannot be a tokenizer; cheap, loads nothing.

    Accepted: a tokenizer object or ``None`` (nothing to check), a shipped name, an existing
    directory, or a hub id (when the hub or its cache can serve it).
    """
    if not isinstance(name, str) or name in SHIPPED_TOKENIZERS or Path(name).expanduser().is_dir():
        return
    problem = hub_source_problem(name)
    if problem is not None:
        shipped = ", ".join(SHIPPED_TOKENIZERS)
        hub = f" or a hub id ({problem})" if problem else ""
        raise ValueError(f"tokenizer {name!r} is neither a local directory nor a shipped name ({shipped}){hub}")


def load_tokenizer(name_or_path: str = TINY_TOKENIZER, **kwargs) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer by hub name or local path (``"tl-tiny"``, ``"tl-small"``: the shipped ones).

    Encoding needs character offsets, which only fast tokenizers give, so a slow one is an error.
    A tokenizer with no pad token (LLaMA's) pads with EOS; padding is always masked out, so the
    choice does not change any loss.
    """
    from transformers import AutoTokenizer

    check_tokenizer_source(name_or_path)
    path = str(shipped_tokenizer_dir(name_or_path)) if name_or_path in SHIPPED_TOKENIZERS else name_or_path
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if not getattr(tok, "is_fast", False):
        raise ValueError(
            f"tokenizer {name_or_path!r} is a slow (Python) tokenizer; tl_lightning needs a fast tokenizer "
            "for character offsets (install `tokenizers` and load with use_fast=True, or convert it)"
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def resolve_tokenizer(tokenizer: PreTrainedTokenizerBase | str | None, default: str = TINY_TOKENIZER):
    """A tokenizer object from an object, a shipped name / hub name / local path, or ``None`` (= ``default``)."""
    if tokenizer is None:
        tokenizer = default
    if isinstance(tokenizer, str):
        return load_tokenizer(tokenizer)
    return tokenizer


# ============================================================================ tokenizing with the BOS convention
_BOS_PREFIX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bos_prefix(tokenizer) -> list[int]:
    """Ids the tokenizer itself puts before a text (its BOS convention), found by comparing encodings."""
    try:
        return _BOS_PREFIX[tokenizer]
    except (KeyError, TypeError):
        pass
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    prefix = []
    for n in range(len(full) - len(bare) + 1):
        if full[n : n + len(bare)] == bare:
            prefix = list(full[:n])
            break
    try:
        _BOS_PREFIX[tokenizer] = prefix
    except TypeError:
        pass
    return prefix


def require_fast(tokenizer) -> None:
    """Raise ``TypeError`` unless ``tokenizer`` is a fast one (only those give character offsets)."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"{type(tokenizer).__name__} is a slow tokenizer; encoding needs a fast tokenizer's offset mapping "
            "(load it with use_fast=True or tl_lightning.tokenization.load_tokenizer)"
        )


def tokenize_batch_with_offsets(texts: list[str], tokenizer) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`tokenize_with_offsets` of several texts in one call (the Rust tokenizer runs them in parallel)."""
    require_fast(tokenizer)
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    prefix = _bos_prefix(tokenizer)
    out = []
    for ids, offs in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        ids = np.asarray(ids, dtype=np.int64)
        offsets = np.asarray(offs, dtype=np.int64).reshape(-1, 2)
        if prefix and ids[: len(prefix)].tolist() != prefix:
            ids = np.concatenate([np.asarray(prefix, dtype=np.int64), ids])
            offsets = np.concatenate([np.zeros((len(prefix), 2), dtype=np.int64), offsets])
        out.append((ids, offsets))
    return out


def tokenize_with_offsets(text: str, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[L]`` and character offsets ``[L, 2]`` of ``text``, with the tokenizer's BOS convention.

    The tokenizer's special-token prefix (e.g. LLaMA's ``<s>``) is prepended with zero-width
    offsets, unless the text already starts with it (chat templates often write it themselves).
    """
    return tokenize_batch_with_offsets([text], tokenizer)[0]
