"""The model families of ``tests/fixtures/templates``: their stock chat templates and tokens, on ``tl-small``.

A family's tokenizer is the shipped ``tl-small`` with the family's special tokens added (as special, the way
the real tokenizer marks them) and its chat template set; no hub access is needed. Importable from any test
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "templates"

_CHATML = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_CHATML_TOOLS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")  # added, not special, as in Qwen's
_LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>")
_MISTRAL = ("[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]")


@dataclass(frozen=True)
class Family:
    """One fixture template and what its real tokenizer and model look like."""

    name: str
    file: str
    special: tuple[str, ...]
    bos: str | None
    eos: str
    call_format: str
    architecture: str  # the transformers model_type its models use
    added: tuple[str, ...] = ()
    end_of_turn: str = ""
    pad: str = "<pad>"

    @property
    def template(self) -> str:
        return (TEMPLATES / self.file).read_text()


FAMILIES = {
    f.name: f
    for f in (
        Family("qwen2_5", "qwen2_5.jinja", _CHATML, None, "<|im_end|>", "hermes", "qwen2", _CHATML_TOOLS, "<|im_end|>", "<|endoftext|>"),
        Family("qwen3", "qwen3.jinja", _CHATML, None, "<|im_end|>", "hermes", "qwen3", (*_CHATML_TOOLS, "<think>", "</think>"), "<|im_end|>", "<|endoftext|>"),
        Family("llama3_1", "llama3_1.jinja", _LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3", "llama", (), "<|eot_id|>"),
        Family("llama3_2", "llama3_2.jinja", _LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3", "llama", (), "<|eot_id|>"),
        Family("mistral_v3", "mistral_v3.jinja", _MISTRAL, "<s>", "</s>", "mistral", "mistral", (), "</s>"),
        Family("mistral_tekken", "mistral_tekken.jinja", _MISTRAL, "<s>", "</s>", "mistral", "mistral", (), "</s>"),
        Family("hermes2_pro", "hermes2_pro.jinja", _CHATML, "<s>", "<|im_end|>", "hermes", "llama", _CHATML_TOOLS, "<|im_end|>"),
    )
}

#: Keyword arguments every family's template gets in tests: a fixed date for Llama 3.2 (its stock template
#: writes today's date otherwise, so renders would change from day to day).
TEMPLATE_KWARGS = {"llama3_2": {"date_string": "26 Jul 2024"}}


@functools.cache
def family_tokenizer(name: str):
    """``tl-small`` with family ``name``'s tokens and template (cached: treat it as read-only)."""
    from tl_lightning.tokenization import load_tokenizer

    fam = FAMILIES[name]
    tok = load_tokenizer("tl-small")
    tok.add_special_tokens({"additional_special_tokens": [t for t in fam.special if t not in tok.get_vocab()]})
    if fam.added:
        tok.add_tokens(list(fam.added), special_tokens=False)
    tok.bos_token = fam.bos or tok.bos_token
    tok.eos_token = fam.eos
    tok.pad_token = fam.pad
    tok.chat_template = fam.template
    return tok
