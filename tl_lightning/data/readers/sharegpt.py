"""The ``sharegpt`` format (LLaMA-Factory tool-calling datasets).

::

    {"conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": "{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}"},
        {"from": "observation", "value": "{\\"temp\\": 21}"},
        {"from": "gpt", "value": "It is 21 degrees."}],
     "system": "optional system prompt",
     "tools": "[{\\"name\\": \\"get_weather\\", ...}]"}

A ``function_call`` value is a JSON object ``{"name", "arguments"}`` or a list of them (parallel
calls, answered by as many ``observation`` messages in order); ``arguments`` may be an object or a
JSON string. ``tools`` is a JSON string (or a list) of tool specs.
"""

from __future__ import annotations

import json
from typing import Any

from tl_lightning.data.feedback import FeedbackClassifier
from tl_lightning.data.readers._common import (
    Event,
    build_trajectory,
    iter_messages,
    parse_arguments,
    parse_tools,
)
from tl_lightning.data.records import BAD_ARGUMENTS, BAD_RECORD, RecordError
from tl_lightning.data.schema import ToolCall, Trajectory

__all__ = ["detect", "record_to_trajectory"]

ROLES = ("system", "human", "gpt", "function_call", "observation")


def detect(record: Any) -> bool:
    conv = record.get("conversations") if isinstance(record, dict) else None
    return isinstance(conv, list) and bool(conv) and isinstance(conv[0], dict) and "from" in conv[0]


def _function_calls(value: str, where: str) -> list[ToolCall]:
    try:
        payload = json.loads(value)
    except json.JSONDecodeError as e:
        raise RecordError(
            BAD_ARGUMENTS, f"{where}: function_call value is not JSON ({e.msg}): {value[:200]!r}"
        ) from e
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise RecordError(BAD_RECORD, f"{where}: an empty list of function calls")
    calls = []
    for j, item in enumerate(items):
        w = f"{where}[{j}]" if isinstance(payload, list) else where
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise RecordError(BAD_RECORD, f"{w}: a function call is an object with a 'name'")
        raw = item.get("arguments")
        calls.append(
            ToolCall(item["name"], parse_arguments(raw, w), raw=raw if isinstance(raw, str) else None)
        )
    return calls


def record_to_trajectory(
    record: Any, default_id: str, classifier: FeedbackClassifier | None = None
) -> Trajectory:
    if not detect(record):
        raise RecordError(
            BAD_RECORD, "a sharegpt record is an object with a 'conversations' list of {from, value}"
        )
    tools = parse_tools(record.get("tools"), "tools")
    events: list[Event] = []
    if isinstance(record.get("system"), str) and record["system"]:
        events.append(Event("system", "system", record["system"]))
    for where, role, text, _msg in iter_messages(record["conversations"], "conversations", "from", "value", ROLES):
        if role == "system":
            events.append(Event("system", where, text))
        elif role == "human":
            events.append(Event("user", where, text))
        elif role == "gpt":
            events.append(Event("assistant", where, text))
        elif role == "function_call":
            events.append(Event("assistant", where, "", calls=_function_calls(text, where)))
        else:
            events.append(Event("feedback", where, text))
    meta = {k: v for k, v in record.items() if k not in ("id", "conversations", "tools", "system")}
    return build_trajectory(str(record.get("id") or default_id), tools, events, classifier, meta)
