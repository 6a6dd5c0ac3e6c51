"""A :class:`Trajectory` as the OpenAI-style chat messages that ``apply_chat_template`` renders, per family.

    msgs, turns = trajectory_messages(traj, include_final=True, reasoning=False, split=False)

Steps become assistant messages with ``tool_calls`` (arguments as dicts, each with a 9-character alphanumeric
id) followed by one ``tool`` message per feedback; the final answer is a plain assistant message. ``turns``
says, per message, which supervised turn it is (None for context messages). What differs between families
is chosen by :class:`~tl_lightning.data.chat_template.ChatTemplate` from the template text:
:func:`detect_call_format`, ``reasoning`` (the thought in ``reasoning_content``, for Qwen3) and ``split``
(one message per call, for Llama 3.x, whose templates refuse more).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from tl_lightning.data.schema import Step, ToolCall, Trajectory

__all__ = ["Turn", "call_id", "detect_call_format", "step_messages", "trajectory_messages"]

#: Template text -> call format, first match wins (a Llama template also mentions JSON, a Mistral one ids).
_FORMAT_MARKERS = (("[TOOL_CALLS]", "mistral"), ("<|python_tag|>", "llama3"), ("ipython", "llama3"), ("<tool_call>", "hermes"))

_CALL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def detect_call_format(template: str) -> str:
    """The call format a chat template's model writes: ``mistral``, ``llama3``, ``hermes`` or ``json``."""
    return next((fmt for marker, fmt in _FORMAT_MARKERS if marker in template), "json")


def call_id(traj_id: str, step: int, index: int, call: ToolCall) -> str:
    """The call's own id when it is one Mistral's template accepts (a model wrote it, and its result must echo
    it), else 9 characters derived from the call's position (deterministic: a trajectory always renders alike)."""
    if call.id and _CALL_ID.fullmatch(call.id):
        return call.id
    n = int.from_bytes(hashlib.sha256(f"{traj_id}\x00{step}\x00{index}".encode()).digest()[:8], "big")
    return "".join(_ID_ALPHABET[(n // 62**k) % 62] for k in range(9))


@dataclass
class Turn:
    """A supervised assistant message: its step (``len(traj.steps)`` for the final answer) and its calls."""

    step: int
    calls: list[ToolCall] = field(default_factory=list)


def step_messages(traj_id: str, i: int, step: Step, reasoning: bool, split: bool) -> tuple[list[dict], list[Turn | None]]:
    """Step ``i`` as assistant message(s) and its tool messages; per message its turn (None for tool messages)."""
    numbered = list(enumerate(step.calls))
    groups = [[c] for c in numbered] if split and len(numbered) > 1 else [numbered]
    msgs: list[dict] = []
    turns: list[Turn | None] = []
    for g, group in enumerate(groups):
        ids = [call_id(traj_id, i, j, c) for j, c in group]
        calls = [{"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for cid, (_, c) in zip(ids, group, strict=True)]
        # Stripped: a leading newline would merge with the template's own into one token straddling the span.
        text = step.text.strip() if g == 0 else ""
        msg = {"role": "assistant", "content": "" if reasoning else text, "tool_calls": calls}
        if reasoning:
            msg["reasoning_content"] = text
        msgs.append(msg)
        turns.append(Turn(i, [c for _, c in group]))
        for cid, (j, call) in zip(ids, group, strict=True):
            if j < len(step.feedback):  # no feedback yet (a prompt's last step): no tool message
                msgs.append({"role": "tool", "content": step.feedback[j], "name": call.name, "tool_call_id": cid})
                turns.append(None)
    return msgs, turns


def trajectory_messages(traj: Trajectory, include_final: bool, reasoning: bool, split: bool) -> tuple[list[dict], list[Turn | None]]:
    """Chat messages of ``traj`` and, per message, its supervised turn (None for context messages)."""
    msgs: list[dict] = []
    turns: list[Turn | None] = []
    system = "\n\n".join([traj.system] * bool(traj.system) + [m.content for m in traj.messages if m.role == "system"])
    if system:
        msgs.append({"role": "system", "content": system})
        turns.append(None)
    for m in traj.messages:
        if m.role != "system":
            msgs.append({"role": m.role, "content": m.content})
            turns.append(None)
    for i, step in enumerate(traj.steps):
        step_msgs, step_turns = step_messages(traj.id, i, step, reasoning, split)
        msgs += step_msgs
        turns += step_turns
    if include_final and traj.final_answer is not None:
        msgs.append({"role": "assistant", "content": traj.final_answer.strip()})
        turns.append(Turn(len(traj.steps)))
    return msgs, turns
