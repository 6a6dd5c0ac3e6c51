"""IRM: the TL-Training reward for RL, a pure function of a generated call, the gold call and the tools.

:func:`tool_call_reward` walks the table of docs/method.md#the-irm-reward in its order and returns the first row that
applies, with a :class:`RewardCategory` naming the outcome (finer than the table where one row
covers two outcomes, e.g. ``param_redundancy`` and ``param_missing`` both earn the
``redundancy_or_missing`` value). The terms, for a predicted call ``p`` of tool ``t`` and gold ``g``:

- *hallucination* H: an argument of ``p`` not in ``t``'s schema properties;
- *redundancy* R: an argument of ``p`` in the schema but not in ``g``;
- *missing* M: an argument of ``g`` absent from ``p``.

Decisions beyond the (single-call) paper:

- **Known tools** are the names in ``tools`` plus ``finish`` (the answer tool, which templates
  may render without listing it). A tool with no schema in ``tools`` (``finish`` then) has the
  gold call's argument names as its schema, so it cannot hallucinate beyond "redundancy".
- **Values** compare with JSON semantics (:func:`tl_lightning.data.calls.values_equal`: ``1 != True``,
  ``3 == 3.0``, strings exact). A gold value that is the string ``"None"`` (RoTBench: optional,
  not compared) matches any value.
- **Several calls**: gold calls are matched to predicted calls by name, in order (each gold call
  takes the first unused predicted call of the same name). Each matched pair gets its row of the
  table; an unmatched predicted call is a tool hallucination (name not known) or a wrong tool; an
  unmatched gold call (never called) is a wrong tool. The step's outcome is the **earliest table
  row** among these (the table is "checked in this order"), whatever the configured values; its
  reward is that row's value. With one call on each side this is exactly the paper's table.

:func:`category_reward` is the reward source for execution in a sandbox (no gold): the feedback
category of the executed call, looked up in a configurable table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tl_lightning.data.calls import ParseResult, values_equal
from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Tool, ToolCall

__all__ = [
    "IRM_DEFAULTS",
    "SANDBOX_REWARDS",
    "IRMValues",
    "RewardCategory",
    "category_reward",
    "tool_call_reward",
]


class RewardCategory(str, Enum):
    """Outcome of one generated step, in table order. Values are usable as metric/log keys."""

    UNPARSEABLE = "unparseable"
    TOOL_HALLUCINATION = "tool_hallucination"
    WRONG_TOOL = "wrong_tool"
    HALLUCINATION_REDUNDANCY_MISSING = "param_hallucination_redundancy_missing"
    HALLUCINATION_REDUNDANCY = "param_hallucination_redundancy"
    HALLUCINATION_MISSING = "param_hallucination_missing"
    REDUNDANCY_MISSING = "param_redundancy_missing"
    HALLUCINATION = "param_hallucination"
    REDUNDANCY = "param_redundancy"
    MISSING = "param_missing"
    WRONG_VALUES = "wrong_values"
    CORRECT = "correct"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class IRMValues:
    """The reward of each table row (docs/method.md#the-irm-reward defaults)."""

    invalid: float = -2.0  # unparseable output, or a tool name not in T
    wrong_tool: float = -1.5
    hallucination_redundancy_missing: float = -1.8
    hallucination_and_redundancy_or_missing: float = -1.3
    redundancy_and_missing: float = -1.0
    hallucination: float = -0.8
    redundancy_or_missing: float = -0.5
    wrong_values: float = -0.25
    correct: float = 1.0

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> IRMValues:
        """Defaults overridden by ``values``; an unknown key is an error naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown IRM reward keys {unknown}; valid keys: {sorted(known)}")
        return cls(**{k: float(v) for k, v in values.items()})

    @classmethod
    def from_yaml(cls, path: str | Path) -> IRMValues:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of IRM reward keys to numbers")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def of(self, category: RewardCategory) -> float:
        """The reward for an outcome."""
        return getattr(self, _ROW[category])


_ROW = {
    RewardCategory.UNPARSEABLE: "invalid",
    RewardCategory.TOOL_HALLUCINATION: "invalid",
    RewardCategory.WRONG_TOOL: "wrong_tool",
    RewardCategory.HALLUCINATION_REDUNDANCY_MISSING: "hallucination_redundancy_missing",
    RewardCategory.HALLUCINATION_REDUNDANCY: "hallucination_and_redundancy_or_missing",
    RewardCategory.HALLUCINATION_MISSING: "hallucination_and_redundancy_or_missing",
    RewardCategory.REDUNDANCY_MISSING: "redundancy_and_missing",
    RewardCategory.HALLUCINATION: "hallucination",
    RewardCategory.REDUNDANCY: "redundancy_or_missing",
    RewardCategory.MISSING: "redundancy_or_missing",
    RewardCategory.WRONG_VALUES: "wrong_values",
    RewardCategory.CORRECT: "correct",
}
_ORDER = list(RewardCategory)

IRM_DEFAULTS = IRMValues()


def _pair_category(pred: ToolCall, gold: ToolCall, tools: Mapping[str, Tool]) -> RewardCategory:
    """Table rows 3-9 for a predicted call of the gold tool."""
    tool = tools.get(gold.name)
    schema = set(tool.properties) if tool is not None else set(gold.arguments)
    given, wanted = set(pred.arguments), set(gold.arguments)
    h = bool(given - schema)
    r = bool((given & schema) - wanted)
    m = bool(wanted - given)
    if h and r and m:
        return RewardCategory.HALLUCINATION_REDUNDANCY_MISSING
    if h and r:
        return RewardCategory.HALLUCINATION_REDUNDANCY
    if h and m:
        return RewardCategory.HALLUCINATION_MISSING
    if r and m:
        return RewardCategory.REDUNDANCY_MISSING
    if h:
        return RewardCategory.HALLUCINATION
    if r:
        return RewardCategory.REDUNDANCY
    if m:
        return RewardCategory.MISSING
    same = all(v == "None" or values_equal(pred.arguments[k], v) for k, v in gold.arguments.items())
    return RewardCategory.CORRECT if same else RewardCategory.WRONG_VALUES


def tool_call_reward(
    pred: ParseResult | Sequence[ToolCall],
    gold: Sequence[ToolCall],
    tools: Sequence[Tool],
    values: IRMValues = IRM_DEFAULTS,
) -> tuple[float, RewardCategory]:
    """IRM reward and outcome of a generated step ``pred`` against the gold step (see module docstring)."""
    if isinstance(pred, ParseResult):
        if pred.error is not None or not pred.calls:
            return values.invalid, RewardCategory.UNPARSEABLE
        calls = list(pred.calls)
    else:
        calls = list(pred)
        if not calls:
            return values.invalid, RewardCategory.UNPARSEABLE
    by_name = {t.name: t for t in tools}
    known = set(by_name) | {FINISH_TOOL}

    outcomes: list[RewardCategory] = []
    used = [False] * len(calls)
    for g in gold:
        hit = next((i for i, c in enumerate(calls) if not used[i] and c.name == g.name), None)
        if hit is None:
            outcomes.append(RewardCategory.WRONG_TOOL)
            continue
        used[hit] = True
        outcomes.append(_pair_category(calls[hit], g, by_name))
    for c, u in zip(calls, used, strict=True):
        if not u:
            outcomes.append(RewardCategory.WRONG_TOOL if c.name in known else RewardCategory.TOOL_HALLUCINATION)
    if not outcomes:  # no gold calls: any call is unwanted
        return values.wrong_tool, RewardCategory.WRONG_TOOL
    # The table is checked in order: the step's outcome is the earliest row any of its calls hits.
    worst = min(outcomes, key=_ORDER.index)
    return values.of(worst), worst


#: Default sandbox reward per feedback category (plus ``unparseable`` for output with no call).
#: An unstable tool is not the model's fault, so it earns 0 rather than a penalty.
SANDBOX_REWARDS: dict[str, float] = {
    "unparseable": -2.0,
    FeedbackCategory.TOOL_HALLUCINATION.value: -2.0,
    FeedbackCategory.PARAMETER_HALLUCINATION.value: -0.8,
    FeedbackCategory.PARAMETER_MISSING.value: -0.5,
    FeedbackCategory.TOOL_CALL_FAILURE.value: -0.25,
    FeedbackCategory.OTHERS.value: -0.25,
    FeedbackCategory.TOOL_INSTABILITY.value: 0.0,
    FeedbackCategory.ALL_RIGHT.value: 1.0,
}


def category_reward(category: FeedbackCategory | str | None, table: Mapping[str, float] | None = None) -> float:
    """Reward for an executed call's feedback category (None: the output had no parseable call).

    ``table`` maps category values (and ``"unparseable"``) to rewards; missing keys fall back to
    :data:`SANDBOX_REWARDS`. An unknown category is an error.
    """
    merged = {**SANDBOX_REWARDS, **(table or {})}
    key = "unparseable" if category is None else FeedbackCategory(category).value
    return float(merged[key])
