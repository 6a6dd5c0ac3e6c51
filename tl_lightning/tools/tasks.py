"""Success checks of sandbox tasks: did the episode leave the state and give the answer the task asks for?

A multi-turn task (``test_multi.jsonl`` of the quick-start set) carries a ``success`` condition that
:func:`check_success` evaluates on the sandbox's final state and the model's final answer. It lives
with the tools, below the generator that writes the tasks and the evaluation that runs them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_lightning.tools.sandbox import Sandbox

__all__ = ["check_success"]


def _matches(item: Any, where: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in where.items())


def _collection_has(coll: Any, where: dict[str, Any]) -> bool:
    if isinstance(coll, list):
        return any(_matches(x, where) for x in coll)
    if isinstance(coll, dict):
        if any(isinstance(v, dict) for v in coll.values()):
            return any(_matches(x, where) for x in coll.values())
        return _matches(coll, where)  # a mapping of plain values (e.g. path -> content)
    return False


def _contains_word(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` not glued to letters or digits ("12.8" is not in "112.87", "no" not in "cannot")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])", text) is not None


def check_success(task_meta: dict[str, Any], sandbox: Sandbox, final_answer: str | None) -> bool:
    """Whether a multi-turn task succeeded: its ``success`` condition on the sandbox's final state and answer.

    The condition is ``{"finished": bool, "all": [cond, ...]}`` with conditions
    ``{"type": "answer_contains", "values": [...]}`` (each value in the final answer, case-insensitive,
    not glued to other letters or digits),
    ``{"type": "state_match" | "state_absent", "toolkit", "key", "where": {...}}`` (some / no item of
    ``state[toolkit][key]`` has all the ``where`` fields).
    """
    cond = task_meta.get("success")
    if not isinstance(cond, dict):
        raise ValueError(f"task has no success condition: {str(task_meta)[:200]}")
    if cond.get("finished", True) and final_answer is None:
        return False
    state = {name: kit.state for name, kit in sandbox.toolkits.items()}
    answer = (final_answer or "").lower()
    for c in cond.get("all", []):
        kind = c.get("type")
        if kind == "answer_contains":
            ok = all(_contains_word(answer, str(v).lower()) for v in c["values"])
        elif kind in ("state_match", "state_absent"):
            has = _collection_has(state.get(c["toolkit"], {}).get(c["key"]), c["where"])
            ok = has if kind == "state_match" else not has
        else:
            raise ValueError(f"unknown success condition type {kind!r}")
        if not ok:
            return False
    return True
