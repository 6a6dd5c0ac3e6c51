"""Prompt formats: render a :class:`Trajectory` to text plus the character spans the encoder needs.

Three formats, picked by name with :func:`get_template`:

- ``python_doc``: the TL-CodeLLaMA-2 format of the paper (tools as Python ``def`` stubs with
  docstrings; calls as ``name(key="value")``; the final answer as ``finish(answer="...")``).
- ``react``: ``Thought: ...\\nAction: name\\nAction Input: {json}`` (RoTBench / ToolEyes).
- ``chat_template``: the tokenizer's own Jinja chat template with ``tools=`` and ``tool_calls``.

Span rule shared by all three (what makes training and inference agree): a supervised segment
starts exactly where :meth:`Template.render_prompt` stops, and ends with the end-of-turn string
(:meth:`Template.end_of_turn`) included. For ``python_doc``/``react`` the prompt ends with
``"Assistant:"`` and the supervised text starts with the separating space (``" get_x(...)</s>"``),
because byte-level BPE tokenizers glue that space to the next word (``Ġget``): the model has to
generate it. The newline after the end-of-turn string belongs to the next, unsupervised turn.
The encoder then labels a token iff its character span overlaps a supervised segment.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from tl_lightning.data.schema import FINISH_TOOL, Step, Tool, ToolCall, Trajectory, finish_tool

__all__ = [
    "ChatTemplate",
    "NameSpan",
    "PythonDocTemplate",
    "PythonSignatureTemplate",
    "ReActTemplate",
    "Rendered",
    "Segment",
    "Template",
    "TemplateError",
    "TEMPLATES",
    "get_template",
    "python_literal",
]


class TemplateError(ValueError):
    """A trajectory or chat template that cannot be rendered with exact spans."""


@dataclass(frozen=True)
class Segment:
    """A character span ``[start, end)`` of the rendered text.

    ``role`` is ``system``, ``user``, ``assistant`` or ``tool``. ``step`` is the assistant step the
    span belongs to (its opener, its supervised text and its feedback); the final answer has step
    ``len(traj.steps)``; text before the first step has ``-1``.
    """

    start: int
    end: int
    role: str
    supervised: bool
    step: int = -1


@dataclass(frozen=True)
class NameSpan:
    """The character span ``[start, end)`` of a tool name inside a supervised call of step ``step``."""

    start: int
    end: int
    step: int
    name: str


@dataclass
class Rendered:
    """A rendered trajectory: the full text, segments that tile it, and the supervised tool-name spans.

    ``tool_names`` are the tools the rendered prompt shows the model; PKT's prefix-sharing rule
    (DESIGN.md §1) compares the called name against these.
    """

    text: str
    segments: list[Segment]
    names: list[NameSpan] = field(default_factory=list)
    tool_names: tuple[str, ...] = ()

    @property
    def supervised(self) -> list[Segment]:
        return [s for s in self.segments if s.supervised]

    @property
    def supervised_text(self) -> str:
        return "".join(self.text[s.start : s.end] for s in self.supervised)


def python_literal(value: Any) -> str:
    """Render a JSON value as Python literal source that ``ast.literal_eval`` reads back.

    Strings use JSON escaping with double quotes (every JSON escape is a valid Python escape),
    ``true/false/null`` become ``True/False/None``.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise TemplateError(f"cannot render non-finite float {value!r} as a Python literal")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    raise TemplateError(f"cannot render argument value of type {type(value).__name__}: {value!r}")


class _Builder:
    """Appends text pieces while recording their segments and tool-name spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.segments: list[Segment] = []
        self.names: list[NameSpan] = []

    def add(self, text: str, role: str, supervised: bool = False, step: int = -1) -> None:
        if not text:
            return
        self.segments.append(Segment(self.pos, self.pos + len(text), role, supervised, step))
        self.parts.append(text)
        self.pos += len(text)

    def add_supervised(self, pieces: list[str | tuple[str, int]], step: int, eot: str) -> None:
        """``pieces`` is text, with tool names given as ``(name, step)`` tuples so their spans are recorded."""
        start = self.pos
        for piece in pieces:
            if isinstance(piece, tuple):
                name = piece[0]
                self.names.append(NameSpan(self.pos, self.pos + len(name), step, name))
                piece = name
            self.parts.append(piece)
            self.pos += len(piece)
        self.parts.append(eot)
        self.pos += len(eot)
        self.segments.append(Segment(start, self.pos, "assistant", True, step))

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Template(ABC):
    """A prompt format. Subclasses are plain picklable objects (they hold only strings and flags)."""

    name: str = ""
    #: How :func:`tl_lightning.tools.calls.parse_calls` should read generated text: python | react | json.
    call_format: str = ""

    @abstractmethod
    def render(self, traj: Trajectory, tokenizer) -> Rendered:
        """The full trajectory (messages, steps with feedback, final answer) with spans."""

    @abstractmethod
    def render_prompt(self, traj: Trajectory, tokenizer) -> str:
        """Messages and steps (with their feedback) followed by the opening of the next assistant turn.

        ``traj.final_answer`` is ignored: this is the text a model continues at inference.
        """

    @abstractmethod
    def end_of_turn(self, tokenizer) -> str:
        """The string that closes a supervised assistant turn (generation stops on it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _eos(tokenizer) -> str:
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise TemplateError("the tokenizer has no eos_token; python_doc/react end each assistant turn with it")
    return eos


class _TurnTemplate(Template):
    """Shared layout of ``python_doc`` and ``react``: ``Role: text`` turns joined by newlines."""

    feedback_prefix = "Output:"

    def __init__(self, add_finish_tool: bool = True) -> None:
        #: Show a ``finish`` tool when the trajectory's tools lack one: the model must learn how to answer.
        self.add_finish_tool = add_finish_tool

    def _tools(self, traj: Trajectory) -> list[Tool]:
        tools = list(traj.tools)
        if self.add_finish_tool and traj.tool(FINISH_TOOL) is None:
            tools.append(finish_tool())
        return tools

    @abstractmethod
    def _system_text(self, traj: Trajectory, tools: list[Tool]) -> str: ...

    @abstractmethod
    def _call_pieces(self, step: Step, step_idx: int) -> list[str | tuple[str, int]]: ...

    def _answer_step(self, answer: str) -> Step:
        return Step(calls=[ToolCall(FINISH_TOOL, {"answer": answer})])

    def _build(self, traj: Trajectory, eot: str, include_final: bool) -> tuple[_Builder, list[Tool]]:
        tools = self._tools(traj)
        b = _Builder()
        b.add("System: " + self._system_text(traj, tools), "system")
        for m in traj.messages:
            if m.role == "system":
                continue  # folded into the system turn by _system_text
            if m.role == "user":
                b.add("\nUser: " + m.content, "user")
            else:  # an earlier assistant reply is context, rendered like a final answer but unsupervised
                pieces = self._call_pieces(self._answer_step(m.content), -1)
                b.add("\nAssistant: " + "".join(p if isinstance(p, str) else p[0] for p in pieces) + eot, "assistant")
        for i, step in enumerate(traj.steps):
            b.add("\nAssistant:", "assistant", step=i)
            b.add_supervised(self._call_pieces(step, i), i, eot)
            if step.feedback:
                b.add("".join(f"\n{self.feedback_prefix} {fb}" for fb in step.feedback), "tool", step=i)
        if include_final and traj.final_answer is not None:
            i = len(traj.steps)
            b.add("\nAssistant:", "assistant", step=i)
            b.add_supervised(self._call_pieces(self._answer_step(traj.final_answer), i), i, eot)
        return b, tools

    def render(self, traj: Trajectory, tokenizer) -> Rendered:
        b, tools = self._build(traj, self.end_of_turn(tokenizer), include_final=True)
        return Rendered(b.text, b.segments, b.names, tuple(t.name for t in tools))

    def render_prompt(self, traj: Trajectory, tokenizer) -> str:
        b, _ = self._build(traj, self.end_of_turn(tokenizer), include_final=False)
        return b.text + "\nAssistant:"

    def end_of_turn(self, tokenizer) -> str:
        return _eos(tokenizer)


_PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "array": "list", "object": "dict", "null": "None"}


def _py_type(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "Any"
    t = schema.get("type")
    if isinstance(t, list):  # ["string", "null"] -> str | None
        return " | ".join(_PY_TYPES.get(x, "Any") for x in t)
    base = _PY_TYPES.get(t, "Any") if isinstance(t, str) else "Any"
    if base == "list" and isinstance(schema.get("items"), dict) and "type" in schema["items"]:
        return f"list[{_py_type(schema['items'])}]"
    return base


class PythonDocTemplate(_TurnTemplate):
    """TL-CodeLLaMA-2 format. Rendered text (``{eos}`` = the tokenizer's EOS)::

        System: {system}\\n\\nFunction:\\ndef get_x(city: str, days: int = None):\\n    \"\"\"...\"\"\"\\n\\nFunction: ...
        User: {query}
        Assistant: get_x(city="Paris", days=3){eos}
        Output: {feedback}
        Assistant: finish(answer="..."){eos}

    Several calls in one step go one per line (parse the step as a Python module with ``ast``);
    a step's thought text goes first as ``# comment`` lines, which ``ast`` ignores.
    """

    name = "python_doc"
    call_format = "python"
    feedback_prefix = "Output:"

    def __init__(self, add_finish_tool: bool = True, include_thoughts: bool = True) -> None:
        super().__init__(add_finish_tool)
        self.include_thoughts = include_thoughts

    @staticmethod
    def signature(tool: Tool) -> tuple[str, list[str]]:
        """``"def name(req: type, opt: type = None)"`` and the argument names in that order."""
        props = tool.properties
        req = [p for p in tool.required if p in props] + [p for p in tool.required if p not in props]
        opt = [p for p in props if p not in tool.required]
        sig = [f"{p}: {_py_type(props.get(p))}" for p in req] + [f"{p}: {_py_type(props[p])} = None" for p in opt]
        return f"def {tool.name}({', '.join(sig)})", req + opt

    @staticmethod
    def function_block(tool: Tool) -> str:
        sig, args = PythonDocTemplate.signature(tool)
        props = tool.properties
        lines = ["Function:", f"{sig}:", '    """']
        if tool.description:
            lines += [f"    {line}" if line else "" for line in tool.description.strip().split("\n")]
        if args:
            if tool.description:
                lines.append("")
            lines.append("    Args:")
            for p in args:
                schema = props.get(p, {})
                desc = schema.get("description", "") if isinstance(schema, dict) else ""
                lines.append(f"        {p} ({_py_type(schema)}): {desc}".rstrip())
        lines.append('    """')
        return "\n".join(lines)

    def _system_text(self, traj: Trajectory, tools: list[Tool]) -> str:
        head = [traj.system] if traj.system else []
        head += [m.content for m in traj.messages if m.role == "system"]
        return "\n\n".join(head + [self.function_block(t) for t in tools])

    def _call_pieces(self, step: Step, step_idx: int) -> list[str | tuple[str, int]]:
        pieces: list[str | tuple[str, int]] = []
        if self.include_thoughts and step.text.strip():
            pieces.append(" " + "\n".join(f"# {line}".rstrip() for line in step.text.strip().split("\n")) + "\n")
        else:
            pieces.append(" ")
        for j, call in enumerate(step.calls):
            if j:
                pieces.append("\n")
            args = ", ".join(f"{k}={python_literal(v)}" for k, v in call.arguments.items())
            pieces += [(call.name, step_idx), f"({args})"]
        return pieces


class PythonSignatureTemplate(PythonDocTemplate):
    """``python_doc`` with each tool as one signature line and its one-line summary::

        Function: def get_x(city: str, days: int = None)  # Get the forecast.

    The calls, turns and supervision are exactly ``python_doc``'s; only the tool list is shorter (about a third
    of the tokens on the quick-start data), which is what lets a from-scratch CPU model learn in minutes.
    """

    name = "python_sig"

    @staticmethod
    def function_block(tool: Tool) -> str:
        summary = tool.description.strip().split("\n")[0] if tool.description else ""
        return f"Function: {PythonDocTemplate.signature(tool)[0]}" + (f"  # {summary}" if summary else "")

    def _system_text(self, traj: Trajectory, tools: list[Tool]) -> str:
        head = [traj.system] if traj.system else []
        head += [m.content for m in traj.messages if m.role == "system"]
        return "\n\n".join(head + ["\n".join(self.function_block(t) for t in tools)])


_REACT_INSTRUCTIONS = (
    "You are an expert in using tools to handle real-time queries from users.\n"
    "At each step, give your thought, then call one of the tools below.\n\n"
    "Desired format:\nThought: <The thought>\nAction: <The tool you decide to use>\n"
    "Action Input: <The parameters for the tool, as a JSON object>\n\n"
    'Always use the "finish" tool upon task completion.\n\n'
    "You have access of the following tools:"
)


class ReActTemplate(_TurnTemplate):
    """RoTBench/ToolEyes ReAct format::

        System: {instructions}\\n[{tool json}, ...]
        User: {query}
        Assistant: Thought: {text}\\nAction: get_x\\nAction Input: {"city": "Paris"}{eos}
        Observation: {feedback}
        Assistant: Thought:\\nAction: finish\\nAction Input: {"answer": "..."}{eos}

    Several calls in one step repeat the ``Action``/``Action Input`` pair after one thought.
    ``traj.system`` replaces the default instructions when given.
    """

    name = "react"
    call_format = "react"
    feedback_prefix = "Observation:"

    def _system_text(self, traj: Trajectory, tools: list[Tool]) -> str:
        head = traj.system or _REACT_INSTRUCTIONS
        extra = "".join(f"\n\n{m.content}" for m in traj.messages if m.role == "system")
        specs = json.dumps([t.to_openai()["function"] for t in tools], ensure_ascii=False)
        return f"{head}{extra}\n{specs}"

    def _call_pieces(self, step: Step, step_idx: int) -> list[str | tuple[str, int]]:
        text = step.text.strip()
        pieces: list[str | tuple[str, int]] = [" Thought: " + text if text else " Thought:"]
        for call in step.calls:
            pieces += ["\nAction: ", (call.name, step_idx), "\nAction Input: " + json.dumps(call.arguments, ensure_ascii=False)]
        return pieces


class ChatTemplate(Template):
    """The tokenizer's own Jinja chat template, called with ``tools=[t.to_openai()]``.

    Steps become assistant messages with ``tool_calls`` (arguments as dicts) followed by one
    ``tool`` message per feedback; the final answer is a plain assistant message. Supervised
    spans are found without ``{% generation %}`` tags: for each assistant message the conversation
    before it is rendered with and without the generation prompt, and with the message; the new
    text after the generation prompt, up to and including the end-of-turn string, is supervised.
    Every render must be a prefix of the next (checked; :class:`TemplateError` otherwise). Tool
    names are located in the supervised text in call order, first as ``"name": "<name>"`` (the
    JSON most templates emit), else as ``"<name>"``, else as the bare word.

    ``chat_template`` overrides the tokenizer's template; ``end_of_turn`` overrides detection
    (the text a template puts right after an assistant message's content, stripped).
    """

    name = "chat_template"
    call_format = "json"

    def __init__(self, chat_template: str | None = None, end_of_turn: str | None = None) -> None:
        self.chat_template = chat_template
        self._end_of_turn = end_of_turn

    def _apply(self, tokenizer, messages: list[dict], tools: list[dict], generation: bool) -> str:
        template = self.chat_template or getattr(tokenizer, "chat_template", None)
        if not template:
            raise TemplateError(
                f"template 'chat_template' needs a tokenizer with a chat template; {type(tokenizer).__name__} has none "
                "(pass chat_template=... or use template 'python_doc'/'react')"
            )
        out = tokenizer.apply_chat_template(
            messages, tools=tools or None, chat_template=template, tokenize=False, add_generation_prompt=generation
        )
        return out if isinstance(out, str) else out[0]

    def end_of_turn(self, tokenizer) -> str:
        if self._end_of_turn:
            return self._end_of_turn
        mark = "\x00CONTENT\x00"
        text = self._apply(tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": mark}], [], False)
        after = text.split(mark, 1)[1].strip() if mark in text else ""
        return after or _eos(tokenizer)

    @staticmethod
    def _messages(traj: Trajectory, include_final: bool) -> tuple[list[dict], list[int | None]]:
        """Chat messages and, per message, the supervised step index (None for context messages)."""
        msgs: list[dict] = []
        steps: list[int | None] = []
        system = "\n\n".join([traj.system] * bool(traj.system) + [m.content for m in traj.messages if m.role == "system"])
        if system:
            msgs.append({"role": "system", "content": system})
            steps.append(None)
        for m in traj.messages:
            if m.role != "system":
                msgs.append({"role": m.role, "content": m.content})
                steps.append(None)
        for i, step in enumerate(traj.steps):
            ids = [f"call_{i}_{j}" for j in range(len(step.calls))]
            calls = [{"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for cid, c in zip(ids, step.calls, strict=True)]
            # Stripped: a leading newline would merge with the template's own into one token straddling the span.
            msgs.append({"role": "assistant", "content": step.text.strip(), "tool_calls": calls})
            steps.append(i)
            for cid, call, fb in zip(ids, step.calls, step.feedback, strict=False):  # no feedback yet: no tool messages
                msgs.append({"role": "tool", "content": fb, "name": call.name, "tool_call_id": cid})
                steps.append(None)
        if include_final and traj.final_answer is not None:
            msgs.append({"role": "assistant", "content": traj.final_answer.strip()})
            steps.append(len(traj.steps))
        return msgs, steps

    @staticmethod
    def _find_names(text: str, offset: int, calls: list[ToolCall], step: int) -> list[NameSpan]:
        spans, cursor = [], 0
        for call in calls:
            quoted = json.dumps(call.name, ensure_ascii=False)
            for pattern, group_shift in (
                (r'"name"\s*:\s*' + re.escape(quoted), 1),
                (re.escape(quoted), 1),
                (r"(?<![\w.])" + re.escape(call.name) + r"(?![\w.])", 0),
            ):
                m = re.compile(pattern).search(text, cursor)
                if m:
                    end = m.end() - group_shift
                    start = end - len(call.name)
                    spans.append(NameSpan(offset + start, offset + end, step, call.name))
                    cursor = m.end()
                    break
            else:
                raise TemplateError(f"step {step}: the chat template's rendering of the assistant turn does not contain the tool name {call.name!r}")
        return spans

    def render(self, traj: Trajectory, tokenizer) -> Rendered:
        eot = self.end_of_turn(tokenizer)
        tools = [t.to_openai() for t in traj.tools]
        msgs, steps = self._messages(traj, include_final=True)
        segments: list[Segment] = []
        names: list[NameSpan] = []
        done = ""  # text already tiled by segments; every later render must extend it
        last_step = -1

        def extend(new: str, what: str) -> None:
            if not new.startswith(done):
                raise TemplateError(
                    f"trajectory {traj.id}: chat template is not prefix-stable ({what} changes earlier text), "
                    "so supervised spans cannot be found by diffing; use a template with stable prefixes or 'python_doc'"
                )

        for k, step in enumerate(steps):
            if step is None:
                continue
            before = self._apply(tokenizer, msgs[:k], tools, False)
            prompt = self._apply(tokenizer, msgs[:k], tools, True)
            after = self._apply(tokenizer, msgs[: k + 1], tools, False)
            extend(before, f"rendering up to message {k}")
            context_role = msgs[k - 1]["role"]
            if len(before) > len(done):
                segments.append(Segment(len(done), len(before), context_role, False, last_step))
            if not prompt.startswith(before) or not after.startswith(prompt):
                raise TemplateError(
                    f"trajectory {traj.id}: the chat template's assistant message {k} does not start with its generation "
                    "prompt, so the supervised span cannot be found"
                )
            if len(prompt) > len(before):
                segments.append(Segment(len(before), len(prompt), "assistant", False, step))
            new = after[len(prompt) :]
            cut = new.find(eot)
            if cut < 0:
                raise TemplateError(f"trajectory {traj.id}: assistant message {k} does not end with end-of-turn {eot!r}; pass end_of_turn=...")
            sup_end = len(prompt) + cut + len(eot)
            segments.append(Segment(len(prompt), sup_end, "assistant", True, step))
            if len(after) > sup_end:
                segments.append(Segment(sup_end, len(after), "assistant", False, step))
            calls = traj.steps[step].calls if step < len(traj.steps) else []
            names += self._find_names(after[len(prompt) : sup_end], len(prompt), calls, step)
            done, last_step = after, step
        full = self._apply(tokenizer, msgs, tools, False)
        extend(full, "the full conversation")
        if len(full) > len(done):
            segments.append(Segment(len(done), len(full), msgs[-1]["role"], False, last_step))
        return Rendered(full, segments, names, tuple(t.name for t in traj.tools))

    def render_prompt(self, traj: Trajectory, tokenizer) -> str:
        msgs, _ = self._messages(traj, include_final=False)
        return self._apply(tokenizer, msgs, [t.to_openai() for t in traj.tools], True)

    def __repr__(self) -> str:
        return f"ChatTemplate(custom_template={self.chat_template is not None}, end_of_turn={self._end_of_turn!r})"


TEMPLATES: dict[str, type[Template]] = {
    "python_doc": PythonDocTemplate,
    "python_sig": PythonSignatureTemplate,
    "react": ReActTemplate,
    "chat_template": ChatTemplate,
}


def get_template(name: str | Template, **kwargs) -> Template:
    """The template called ``name`` (a key of :data:`TEMPLATES`); a Template passes through."""
    if isinstance(name, Template):
        if kwargs:
            raise TypeError("keyword arguments given with a Template instance")
        return name
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name](**kwargs)
