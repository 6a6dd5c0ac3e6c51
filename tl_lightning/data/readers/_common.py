"""What every trajectory reader shares: field helpers, the result type, and one builder that turns
a flat list of conversation events into a :class:`Trajectory` (file loading and the record loop are
:mod:`tl_lightning.data.records`, shared with the benchmark readers).

Each format module only translates its records into :class:`Event` lists; the rules about steps,
feedback, ``finish`` and empty trajectories live here once, so the three formats agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from tl_lightning.data.errors import ReadReport
from tl_lightning.data.feedback import FeedbackClassifier, step_category
from tl_lightning.data.records import (
    BAD_ARGUMENTS,
    BAD_RECORD,
    BAD_TOOLS,
    EMPTY,
    MISSING_FEEDBACK,
    ORPHAN_FEEDBACK,
    UNKNOWN_ROLE,
    UNSUPPORTED,
    RecordError,
    describe_exception,
)
from tl_lightning.data.schema import FINISH_TOOL, Message, Step, Tool, ToolCall, Trajectory

__all__ = [
    "Event",
    "ReadResult",
    "build_trajectory",
    "content_text",
    "iter_messages",
    "parse_arguments",
    "parse_tools",
]

logger = logging.getLogger("tl_lightning.data.readers")



class ReadResult(Sequence[Trajectory]):
    """The trajectories read from a file (a sequence) plus the :class:`ReadReport` of what was skipped."""

    def __init__(self, trajectories: list[Trajectory], report: ReadReport, format: str = ""):
        self.trajectories = trajectories
        self.report = report
        self.format = format

    @overload
    def __getitem__(self, i: int) -> Trajectory: ...
    @overload
    def __getitem__(self, i: slice) -> list[Trajectory]: ...
    def __getitem__(self, i):
        return self.trajectories[i]

    def __len__(self) -> int:
        return len(self.trajectories)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.trajectories)

    def __repr__(self) -> str:
        return f"ReadResult({len(self)} trajectories, format={self.format!r}, report={str(self.report)!r})"


# ---------------------------------------------------------------------- field helpers
def content_text(content: Any, where: str) -> str:
    """Message content as text: a string, None (-> ""), or OpenAI content parts ``[{"type": "text", "text": ...}]``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    if isinstance(content, (dict, list)):  # a structured tool result: keep it as the JSON the model would see
        return json.dumps(content, ensure_ascii=False)
    raise RecordError(BAD_RECORD, f"{where}: content must be a string, got {type(content).__name__}")


def iter_messages(
    messages: list[Any], list_key: str, role_key: str, content_key: str, roles: tuple[str, ...]
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """``(where, role, text, message)`` for each message of a record, checked the same way in every format:
    an object, with a known role, whose content reads as text."""
    for i, msg in enumerate(messages):
        where = f"{list_key}[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(BAD_RECORD, f"{where}: a message must be an object")
        role = msg.get(role_key)
        if role not in roles:
            raise RecordError(UNKNOWN_ROLE, f"{where}: {role!r} (expected one of {', '.join(roles)})")
        yield where, role, content_text(msg.get(content_key), where), msg


def parse_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """Call arguments given as a dict or a JSON string of an object ("" and None mean no arguments)."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            raise RecordError(BAD_ARGUMENTS, f"{where}: {e.msg} in {arguments[:200]!r}") from e
        except (RecursionError, ValueError) as e:  # nested too deeply, or an integer over the digit limit
            raise RecordError(BAD_ARGUMENTS, f"{where}: {describe_exception(e)}") from e
    if not isinstance(arguments, dict):
        raise RecordError(
            BAD_ARGUMENTS, f"{where}: arguments must be a JSON object, got {type(arguments).__name__}"
        )
    return arguments


def parse_tools(specs: Any, where: str = "tools") -> list[Tool]:
    """OpenAI tool specs (a list, or a JSON string of one) -> Tools."""
    if specs is None:
        return []
    if isinstance(specs, str):
        if not specs.strip():
            return []
        try:
            specs = json.loads(specs)
        except json.JSONDecodeError as e:
            raise RecordError(BAD_TOOLS, f"{where}: {e.msg} at char {e.pos}") from e
        except (RecursionError, ValueError) as e:
            raise RecordError(BAD_TOOLS, f"{where}: {describe_exception(e)}") from e
    if isinstance(specs, dict):  # a single spec
        specs = [specs]
    if not isinstance(specs, list):
        raise RecordError(BAD_TOOLS, f"{where}: expected a list of tool specs, got {type(specs).__name__}")
    tools = []
    for i, spec in enumerate(specs):
        try:
            tools.append(Tool.from_openai(spec))
        except (ValueError, TypeError, AttributeError) as e:
            raise RecordError(BAD_TOOLS, f"{where}[{i}]: {e}") from e
    return tools


# ---------------------------------------------------------------------- events -> Trajectory
@dataclass
class Event:
    """One conversation event, in order.

    - ``system`` / ``user``: ``text``.
    - ``assistant``: ``text`` and ``calls`` (empty for a plain reply); ``call_ids`` (same length, may hold None).
    - ``feedback``: ``text`` and ``call_id`` (None: the next call without feedback, by order).
    ``where`` names the message for errors (e.g. ``"messages[3]"``).
    """

    kind: Literal["system", "user", "assistant", "feedback"]
    where: str
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    call_ids: list[str | None] = field(default_factory=list)
    call_id: str | None = None


@dataclass
class _OpenStep:
    calls: list[ToolCall]
    call_ids: list[str | None]
    text: str
    where: str
    feedback: list[str | None]

    def add_feedback(self, event: Event) -> None:
        if event.call_id is not None and event.call_id in self.call_ids:
            # two calls may share an id in sloppy data: fill the first one still waiting
            slots = [
                i for i, cid in enumerate(self.call_ids) if cid == event.call_id and self.feedback[i] is None
            ]
            if not slots:
                raise RecordError(
                    ORPHAN_FEEDBACK, f"{event.where}: a second reply to tool_call_id {event.call_id!r}"
                )
        elif event.call_id is not None and any(cid is not None for cid in self.call_ids):
            raise RecordError(
                ORPHAN_FEEDBACK,
                f"{event.where}: tool_call_id {event.call_id!r} matches no call of {self.where}",
            )
        else:
            slots = [i for i, fb in enumerate(self.feedback) if fb is None]
            if not slots:
                raise RecordError(
                    ORPHAN_FEEDBACK,
                    f"{event.where}: more feedback messages than the {len(self.calls)} call(s) of {self.where}",
                )
        self.feedback[slots[0]] = event.text

    @property
    def has_no_feedback(self) -> bool:
        return all(fb is None for fb in self.feedback)

    @property
    def complete(self) -> bool:
        return all(fb is not None for fb in self.feedback)


def _finish_answer(call: ToolCall, where: str) -> str:
    args = call.arguments
    if "answer" in args:
        value = args["answer"]
    elif len(args) == 1:  # e.g. finish(final_answer=...): the only argument is the answer
        value = next(iter(args.values()))
    elif not args:
        value = ""
    else:
        raise RecordError(
            BAD_ARGUMENTS, f"{where}: the {FINISH_TOOL} call has no 'answer' argument: {sorted(args)}"
        )
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_trajectory(
    traj_id: str,
    tools: list[Tool],
    events: list[Event],
    classifier: FeedbackClassifier | None = None,
    meta: dict[str, Any] | None = None,
) -> Trajectory:
    """The shared conversion rules.

    - System text before the first step -> ``Trajectory.system`` (several joined by a blank line).
    - User messages before the first step -> ``messages`` (with any call-less assistant reply that a
      user message follows); a user message after a step is a multi-turn dialogue the internal
      format cannot hold (error).
    - An assistant message with calls opens a step (its content is ``Step.text``); the feedback
      messages that follow fill it, by ``call_id`` when given, else by order.
    - Any other call-less assistant message is the final answer when it is last; if a step follows,
      its text is kept as that step's text (a thought said in its own message).
    - A last step that is a lone ``finish`` call gives the final answer from its ``answer`` argument
      and is not a step (its feedback, if any, is dropped: it carries no information).
    - A step with no feedback is legal only as the last step (a target to predict); a step with some
      but not all feedback, or with none and more steps after it, is an error.
    """
    system_parts: list[str] = []
    messages: list[Message] = []
    open_steps: list[_OpenStep] = []
    pending_text: list[tuple[str, str]] = []  # call-less assistant texts not yet placed: (text, where)

    for ev in events:
        if ev.kind == "system":
            if open_steps:
                raise RecordError(UNSUPPORTED, f"{ev.where}: a system message after the first step")
            if ev.text:
                system_parts.append(ev.text)
        elif ev.kind == "user":
            if open_steps:
                raise RecordError(
                    UNSUPPORTED, f"{ev.where}: a user message after the first step (multi-turn dialogue)"
                )
            # assistant replies before the first step are part of the opening conversation
            messages += [Message("assistant", t) for t, _ in pending_text]
            pending_text.clear()
            messages.append(Message("user", ev.text))
        elif ev.kind == "assistant":
            if not ev.calls:
                pending_text.append((ev.text, ev.where))
                continue
            if open_steps and not open_steps[-1].complete:
                raise RecordError(
                    MISSING_FEEDBACK, f"{open_steps[-1].where}: a call has no feedback but {ev.where} follows"
                )
            text = "\n".join(t for t, _ in pending_text + [(ev.text, ev.where)] if t)
            pending_text.clear()
            ids = list(ev.call_ids) or [None] * len(ev.calls)
            open_steps.append(_OpenStep(list(ev.calls), ids, text, ev.where, [None] * len(ev.calls)))
        elif ev.kind == "feedback":
            if not open_steps or pending_text:
                raise RecordError(ORPHAN_FEEDBACK, f"{ev.where}: no assistant call before it")
            open_steps[-1].add_feedback(ev)
        else:  # pragma: no cover - format modules only emit the kinds above
            raise RecordError(UNKNOWN_ROLE, f"{ev.where}: {ev.kind!r}")

    final_answer: str | None = None
    if pending_text:
        final_answer = "\n".join(t for t, _ in pending_text)
        if len(pending_text) > 1:
            logger.debug(
                "%s: %d call-less assistant messages at the end joined into one final answer",
                traj_id,
                len(pending_text),
            )
    elif open_steps and len(open_steps[-1].calls) == 1 and open_steps[-1].calls[0].name == FINISH_TOOL:
        last = open_steps.pop()
        final_answer = _finish_answer(last.calls[0], last.where)

    steps = []
    for i, st in enumerate(open_steps):
        if not st.complete and not (i == len(open_steps) - 1 and st.has_no_feedback and final_answer is None):
            missing = sum(fb is None for fb in st.feedback)
            raise RecordError(
                MISSING_FEEDBACK, f"{st.where}: {missing} of {len(st.calls)} call(s) have no feedback"
            )
        feedback = [fb for fb in st.feedback if fb is not None]
        steps.append(
            Step(
                calls=st.calls, text=st.text, feedback=feedback, category=step_category(feedback, classifier)
            )
        )
    if not steps and final_answer is None:
        raise RecordError(EMPTY, "no assistant step and no final answer")
    try:
        return Trajectory(
            id=traj_id,
            tools=tools,
            messages=messages,
            steps=steps,
            system="\n\n".join(system_parts),
            final_answer=final_answer,
            meta=meta or {},
        )
    except ValueError as e:
        raise RecordError(BAD_RECORD, str(e)) from e
