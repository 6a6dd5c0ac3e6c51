"""The ``openai`` format: ``{"id", "tools": [OpenAI function specs], "messages": [...]}`` per record.

This is the format of TRL's tool-calling datasets and of tl_lightning's synthetic training data::

    {"id": "t1", "tools": [{"type": "function", "function": {"name": "get_weather", ...}}],
     "messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [{"id": "c0", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]},
                  {"role": "tool", "tool_call_id": "c0", "content": "{\\"temp\\": 21}"},
                  {"role": "assistant", "content": "It is 21 degrees."}]}

``arguments`` may be a JSON string or an object. Tool messages match their call by
``tool_call_id``, else by order. Keys other than ``id``/``tools``/``messages`` go to ``Trajectory.meta``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tl_lightning.data.feedback import FeedbackClassifier
from tl_lightning.data.readers._common import (
    Event,
    build_trajectory,
    iter_messages,
    parse_arguments,
    parse_tools,
)
from tl_lightning.data.records import BAD_RECORD, RecordError
from tl_lightning.data.schema import ToolCall, Trajectory

__all__ = ["detect", "record_to_trajectory", "trajectory_to_record", "write_openai_jsonl"]

ROLES = ("system", "developer", "user", "assistant", "tool")


def detect(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("messages"), list)


def _calls(msg: dict[str, Any], where: str) -> tuple[list[ToolCall], list[str | None]]:
    raw_calls = msg.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise RecordError(BAD_RECORD, f"{where}: tool_calls must be a list")
    calls, ids = [], []
    for j, tc in enumerate(raw_calls):
        w = f"{where}.tool_calls[{j}]"
        fn = tc.get("function", tc) if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RecordError(BAD_RECORD, f"{w}: a tool call needs a function name")
        raw_args = fn.get("arguments")
        calls.append(
            ToolCall(
                fn["name"], parse_arguments(raw_args, w), raw=raw_args if isinstance(raw_args, str) else None
            )
        )
        ids.append(tc.get("id") if isinstance(tc.get("id"), str) else None)
    return calls, ids


def record_to_trajectory(
    record: Any, default_id: str, classifier: FeedbackClassifier | None = None
) -> Trajectory:
    """One record -> Trajectory; raises :class:`RecordError` on a malformed record."""
    if not detect(record):
        raise RecordError(BAD_RECORD, "an openai record is an object with a 'messages' list")
    tools = parse_tools(record.get("tools"), "tools")
    events: list[Event] = []
    for where, role, text, msg in iter_messages(record["messages"], "messages", "role", "content", ROLES):
        if role in ("system", "developer"):
            events.append(Event("system", where, text))
        elif role == "user":
            events.append(Event("user", where, text))
        elif role == "assistant":
            calls, ids = _calls(msg, where)
            events.append(Event("assistant", where, text, calls=calls, call_ids=ids))
        else:
            call_id = msg.get("tool_call_id")
            events.append(
                Event("feedback", where, text, call_id=call_id if isinstance(call_id, str) else None)
            )
    extra = record.get("meta") or {}
    if not isinstance(extra, dict):
        raise RecordError(BAD_RECORD, f"'meta' must be an object, got {type(extra).__name__}")
    meta = {k: v for k, v in record.items() if k not in ("id", "tools", "messages", "meta")}
    meta.update(extra)
    return build_trajectory(str(record.get("id") or default_id), tools, events, classifier, meta)


def trajectory_to_record(traj: Trajectory) -> dict[str, Any]:
    """A Trajectory as an openai record (the inverse of :func:`record_to_trajectory`).

    Call ids are ``call_<step>_<call>``; argument objects are written as JSON strings, as the
    OpenAI API does; ``meta`` is kept under ``"meta"``.
    """
    messages: list[dict[str, Any]] = []
    if traj.system:
        messages.append({"role": "system", "content": traj.system})
    messages += [{"role": m.role, "content": m.content} for m in traj.messages]
    for s, step in enumerate(traj.steps):
        ids = [f"call_{s}_{j}" for j in range(len(step.calls))]
        messages.append(
            {
                "role": "assistant",
                "content": step.text,
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": json.dumps(c.arguments, ensure_ascii=False),
                        },
                    }
                    for cid, c in zip(ids, step.calls, strict=True)
                ],
            }
        )
        messages += [
            {"role": "tool", "tool_call_id": cid, "content": fb}
            for cid, fb in zip(ids, step.feedback, strict=False)
        ]
    if traj.final_answer is not None:
        messages.append({"role": "assistant", "content": traj.final_answer})
    record: dict[str, Any] = {
        "id": traj.id,
        "tools": [t.to_openai() for t in traj.tools],
        "messages": messages,
    }
    if traj.meta:
        record["meta"] = traj.meta
    return record


def write_openai_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> int:
    """Write trajectories as openai-format JSON Lines (readable back in strict mode). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for traj in trajectories:
            f.write(json.dumps(trajectory_to_record(traj), ensure_ascii=False) + "\n")
            n += 1
    return n
