"""Reward adapters: from a generated text (or an episode's turn) to a number and an outcome name.

Single-step rollouts are rewarded by one of :data:`REWARD_SOURCES` (``reward_source``, dispatched only here):

- ``gold``: the IRM table against the prompt's gold calls (:func:`~tl_lightning.rewards.tool_call_reward`);
- ``sandbox``: execute the calls in the sandbox and map the feedback category through a table
  (:func:`~tl_lightning.rewards.category_reward`).

Multi-turn episodes reward each turn by the categories of its calls' real feedback (:func:`turn_reward`).
The tables: docs/method.md, "The IRM reward" and "Sandbox rewards".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from tl_lightning.data.calls import parse_calls
from tl_lightning.data.feedback import step_category
from tl_lightning.data.schema import FeedbackCategory
from tl_lightning.evaluation.multiturn import FORMAT_ERROR
from tl_lightning.rewards import IRMValues, RewardCategory, category_reward, tool_call_reward
from tl_lightning.rl.data import PromptRecord

__all__ = ["REWARD_SOURCES", "RewardSource", "RewardSourceName", "gold_reward", "sandbox_reward", "score_texts", "turn_reward"]

RewardSourceName = Literal["gold", "sandbox"]
#: ``reward_fn(text, record) -> (reward, outcome name)``
RewardFn = Callable[[str, PromptRecord], tuple[float, str]]


def gold_reward(text: str, record: PromptRecord, values: IRMValues) -> tuple[float, str]:
    """IRM reward of a generated step against the record's gold calls (docs/method.md, "The IRM reward")."""
    reward, category = tool_call_reward(parse_calls(text, record.call_format), record.gold, record.tools, values)
    return reward, category.value


def sandbox_reward(text: str, record: PromptRecord, sandbox: Any, table: dict[str, float] | None = None) -> tuple[float, str]:
    """Reward from really executing the generated calls: the category of the feedback, via a table.

    The sandbox is reset to the record's initial state (``context.meta["initial_state"]`` if any) and
    the context's earlier steps are replayed, so the call runs in the state the trajectory reached.
    The step's category is the first error among its calls' feedback, the same rule that labels
    training steps for MAE (:func:`~tl_lightning.data.feedback.step_category`).
    """
    parsed = parse_calls(text, record.call_format)
    if not parsed.ok:
        return category_reward(None, table), "unparseable"
    sandbox.reset(record.context.meta.get("initial_state"))
    for step in record.context.steps:
        for call in step.calls:
            sandbox.execute(call)
    feedback = [sandbox.execute(call) for call in parsed.calls]
    category = step_category(feedback)
    return category_reward(category, table), category.value


def turn_reward(categories: Sequence[str], table: dict[str, float] | None = None) -> float:
    """The sum of a turn's per-call rewards: each call's feedback category through the table (an
    unparseable turn, ``format_error``, is one ``unparseable`` call)."""
    return sum(category_reward(None if c == FORMAT_ERROR else c, table) for c in categories)


def score_texts(texts: Sequence[str], records: Sequence[PromptRecord], reward_fn: RewardFn) -> tuple[Tensor, list[str]]:
    """Scores [B] (float32) and outcome names of the responses."""
    if len(texts) != len(records):
        raise ValueError(f"{len(texts)} responses for {len(records)} prompts")
    pairs = [reward_fn(t, r) for t, r in zip(texts, records, strict=True)]
    return torch.tensor([p[0] for p in pairs], dtype=torch.float32), [p[1] for p in pairs]


@dataclass(frozen=True)
class RewardSource:
    """A ``reward_source``: the outcome names it can give (so the logged keys never change from step to step)
    and ``make(irm_values, category_rewards, sandbox_seed, sandbox_instability_rate) -> reward_fn``."""

    outcomes: tuple[str, ...]
    make: Callable[[dict[str, float] | None, dict[str, float] | None, int, float], RewardFn]


def _gold(irm_values, category_rewards, sandbox_seed, instability) -> RewardFn:
    values = IRMValues.from_dict(irm_values or {})
    return lambda text, record: gold_reward(text, record, values)


def _sandbox(irm_values, category_rewards, sandbox_seed, instability) -> RewardFn:
    from tl_lightning.tools.sandbox import Sandbox

    sandbox = Sandbox(seed=sandbox_seed, instability_rate=instability)
    return lambda text, record: sandbox_reward(text, record, sandbox, category_rewards)


REWARD_SOURCES: dict[str, RewardSource] = {
    "gold": RewardSource(tuple(c.value for c in RewardCategory), _gold),
    "sandbox": RewardSource(("unparseable", *(c.value for c in FeedbackCategory)), _sandbox),
}
