"""Evaluation cases: what a benchmark reader produces and what scoring and the test stage consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory

__all__ = ["EvalCase", "MultiTurnTask"]


@dataclass
class EvalCase:
    """One single-turn case: predict the next assistant step.

    - ``index``: position in the source file (RoTBench aligns predictions by index; ids repeat).
    - ``id``: a unique id within the set (``source_id`` keeps the original, possibly repeated, one).
    - ``messages`` / ``steps``: the conversation before the step to predict.
    - ``gold``: the acceptable answers; each answer is a list of calls (more than one for parallel calls).
    - ``answer_style``: ``"exact"`` when gold argument values are the values, ``"possible_values"``
      when each gold argument value is a list of accepted values (BFCL AST answers; ``""`` in the
      list means the argument may be omitted).
    - ``meta``: set-specific facts scoring needs, e.g. ``skip_value_tools`` (RoTBench's ask-user and
      finish tools, which are not value-compared) or ``unsolvable`` (gold tool not in ``tools``).
    """

    id: str
    index: int
    tools: list[Tool]
    messages: list[Message]
    gold: list[list[ToolCall]]
    scenario: str = ""
    source_id: str = ""
    steps: list[Step] = field(default_factory=list)
    system: str = ""
    answer_style: Literal["exact", "possible_values"] = "exact"
    meta: dict[str, Any] = field(default_factory=dict)

    def as_trajectory(self) -> Trajectory:
        """The case's context as a prompt trajectory (no final answer) for templates to render."""
        return Trajectory(id=self.id, tools=self.tools, messages=self.messages, steps=list(self.steps), system=self.system)


@dataclass
class MultiTurnTask:
    """One multi-turn task: the model calls tools until it calls ``finish`` or runs out of turns.

    ``environment`` says what executes calls: ``"schema"`` (SchemaSimulator over ``tools``, e.g.
    ToolEyes) or ``"sandbox"`` (the executable toolkits; ``meta`` then holds ``toolkits``,
    ``initial_state`` and a machine-checkable ``success`` condition).
    """

    id: str
    index: int
    tools: list[Tool]
    messages: list[Message]
    scenario: str = ""
    source_id: str = ""
    system: str = ""
    max_turns: int = 9
    environment: Literal["schema", "sandbox"] = "schema"
    meta: dict[str, Any] = field(default_factory=dict)

    def as_trajectory(self) -> Trajectory:
        return Trajectory(id=self.id, tools=self.tools, messages=self.messages, system=self.system)
