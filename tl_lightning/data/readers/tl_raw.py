"""The ``tl_raw`` format: TL-Training / ToolEyes training records.

::

    {"id": "1", "conversations": [
        {"role": "system", "content": "[{\\"name\\": \\"get_weather\\", ...}]\\nOptional instructions"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "get_weather\\n{\\"city\\": \\"Paris\\"}"},
        {"role": "function", "content": "{\\"temp\\": 21}"},
        {"role": "assistant", "content": "finish\\n{\\"answer\\": \\"It is 21 degrees.\\"}"}]}

The system content holds the JSON list of tool specs (text before or after it is the system
prompt). An assistant message is a call when it ends with ``name`` on its own line followed by a
JSON object of arguments (lines before it are the step's text); otherwise it is plain text. The
last assistant message may be plain text or a ``finish`` call, both giving the final answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tl_lightning.data.feedback import FeedbackClassifier
from tl_lightning.data.readers._common import Event, build_trajectory, iter_messages, parse_tools
from tl_lightning.data.records import BAD_ARGUMENTS, BAD_RECORD, BAD_TOOLS, RecordError
from tl_lightning.data.schema import ToolCall, Trajectory

__all__ = ["detect", "parse_assistant", "record_to_trajectory", "split_system"]

ROLES = ("system", "user", "assistant", "function", "tool")
_NAME_LINE = re.compile(r"^[A-Za-z_][\w.\-]*$")


def detect(record: Any) -> bool:
    conv = record.get("conversations") if isinstance(record, dict) else None
    return isinstance(conv, list) and bool(conv) and isinstance(conv[0], dict) and "role" in conv[0]


def split_system(content: str, where: str) -> tuple[list[Any], str]:
    """The JSON tool list inside a system message, and the remaining text (before + after it)."""
    decoder = json.JSONDecoder()
    start = content.find("[")
    if start < 0:
        raise RecordError(BAD_TOOLS, f"{where}: no JSON list of tools in the system message")
    first_error = None
    # Instructions before the list may themselves contain brackets: take the first `[` that opens
    # a JSON list of tool objects (or an empty list).
    while start >= 0:
        try:
            specs, end = decoder.raw_decode(content, start)
        except json.JSONDecodeError as e:
            first_error = first_error or e
        else:
            if isinstance(specs, list) and all(
                isinstance(s, dict) and ("name" in s or "function" in s) for s in specs
            ):
                rest = "\n\n".join(part.strip() for part in (content[:start], content[end:]) if part.strip())
                return specs, rest
        start = content.find("[", start + 1)
    detail = f"{first_error.msg} at char {first_error.pos}" if first_error else "no JSON list of tool objects"
    raise RecordError(BAD_TOOLS, f"{where}: {detail}")


def parse_assistant(content: str, where: str) -> tuple[str, ToolCall | None]:
    """``(text, call)``: ``call`` is None for plain text.

    The call is the earliest line holding only a tool name such that everything after it is one
    JSON object; what comes before is the step's text (e.g. a thought).
    """
    lines = content.strip().split("\n")
    for i, line in enumerate(lines[:-1]):
        name = line.strip()
        if not _NAME_LINE.match(name):
            continue
        rest = "\n".join(lines[i + 1 :]).strip()
        if not rest.startswith("{"):
            continue
        try:
            args = json.loads(rest)
        except json.JSONDecodeError as e:
            # The shape of a call (name line, then a brace) with broken JSON is a bad call, not text.
            if i == len(lines) - 2 or rest.endswith("}"):
                raise RecordError(BAD_ARGUMENTS, f"{where}: {e.msg} in {rest[:200]!r}") from e
            continue
        if not isinstance(args, dict):
            continue
        return "\n".join(lines[:i]).strip(), ToolCall(name, args, raw=rest)
    return content.strip(), None


def record_to_trajectory(
    record: Any, default_id: str, classifier: FeedbackClassifier | None = None
) -> Trajectory:
    if not detect(record):
        raise RecordError(
            BAD_RECORD, "a tl_raw record is an object with a 'conversations' list of {role, content}"
        )
    tools = None
    events: list[Event] = []
    for where, role, text, _msg in iter_messages(record["conversations"], "conversations", "role", "content", ROLES):
        if role == "system":
            if tools is None:
                specs, text = split_system(text, where)
                tools = parse_tools(specs, where)
            events.append(Event("system", where, text))
        elif role == "user":
            events.append(Event("user", where, text))
        elif role == "assistant":
            step_text, call = parse_assistant(text, where)
            events.append(Event("assistant", where, step_text, calls=[call] if call else []))
        else:
            events.append(Event("feedback", where, text))
    if tools is None:
        raise RecordError(BAD_TOOLS, "no system message with the JSON tool list")
    meta = {k: v for k, v in record.items() if k not in ("id", "conversations")}
    return build_trajectory(str(record.get("id") or default_id), tools, events, classifier, meta)
