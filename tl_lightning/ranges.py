"""The one table of numeric ranges, and the one lookup of a mode's implementation.

Every numeric setting that has a valid range is listed once in :data:`RANGES`, by its argument name: the
same name means the same thing in every class (``batch_size`` is always >= 1, ``lr`` always > 0). The
classes call :func:`check_ranges` on their own arguments at construction, and the CLI calls it on each
section's ``init_args`` before anything is built, so both report the same rule in the same words.

Modes (``advantage``, ``loss_agg``, ``kl_mode``...) are ``Literal`` types at the signature, which the CLI
enforces when it parses, and a mapping from each choice to its implementation; :func:`choose` is the one
lookup, so a Python caller who passes a wrong name gets the same one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["RANGES", "check_ranges", "choose"]

T = TypeVar("T")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f">= {low}"


def _positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v > 0), "> 0"


def _unit(low_open: bool, high_open: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)

    return ok, f"in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"


def _betas(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v)


#: ``name -> (valid(value), rule)``. ``None`` is always allowed here: whether a setting may be null is
#: its type's business (jsonargparse checks ``int | None`` when it parses).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # data
    "batch_size": _at_least(1),
    "val_batch_size": _at_least(1),
    "max_length": _at_least(1),
    "max_prompt_length": _at_least(1),
    "num_workers": _at_least(0),
    "pad_to_multiple_of": _at_least(1),
    "limit": _at_least(1),
    # SFT
    "w_max": _at_least(1),  # PKT never down-weights a key token
    "lr": _positive(),
    "weight_decay": _at_least(0),
    "betas": (_betas, "two numbers in [0, 1)"),
    "warmup_ratio": _unit(low_open=False, high_open=True),
    "loss_chunk_size": _at_least(0),
    # generation
    "max_new_tokens": _at_least(1),
    "temperature": _positive(),
    "top_p": _unit(low_open=True, high_open=False),
    "top_k": _at_least(0),
    # RL
    "group_size": _at_least(1),
    "sandbox_instability_rate": _unit(low_open=False, high_open=False),
    "reward_clip": _positive(),
    "kl_coef": _at_least(0),
    "gamma": _unit(low_open=False, high_open=False),
    "lam": _unit(low_open=False, high_open=False),
    "clip_policy": _unit(low_open=True, high_open=True),
    "clip_high": _positive(),
    "clip_value": _positive(),
    "ppo_epochs": _at_least(1),
    "num_minibatches": _at_least(1),
    "vf_coef": _at_least(0),
    "actor_lr": _positive(),
    "critic_lr": _positive(),
    "max_grad_norm": _positive(),
    "max_turns": _at_least(1),
    "max_context": _at_least(2),
    "tis_cap": _at_least(1),  # a cap below 1 would shrink every token's surrogate
}


def check_ranges(owner: str, settings: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` ``"<owner><name> must be <rule>, got <value>"`` for the first setting out of range.

    ``owner`` prefixes the name: ``"TLPPOModule: "`` in a constructor, ``"model.init_args."`` in the CLI.
    Settings without a rule, ``None`` values and values of the wrong type (the type check is the parser's)
    are left alone.
    """
    for name, value in settings.items():
        rule = RANGES.get(name)
        if rule is None or value is None:
            continue
        valid, text = rule
        if name != "betas" and not _number(value):
            continue
        if not valid(value):
            raise ValueError(f"{owner}{name} must be {text}, got {value!r}")


def choose(table: Mapping[str, T], name: Any, setting: str) -> T:
    """``table[name]``, or a one-line ``ValueError`` naming the setting and its choices."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"{setting} must be one of {list(table)}, got {name!r}") from None
