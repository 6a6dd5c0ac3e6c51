"""Prompt formats: render a :class:`Trajectory` to text plus the character spans the encoder needs.

Four formats, picked by name with :func:`get_template`:

- ``python_doc``: the TL-CodeLLaMA-2 format of the paper (tools as Python ``def`` stubs with
  docstrings; calls as ``name(key="value")``; the final answer as ``finish(answer="...")``).
- ``python_sig``: ``python_doc`` with one signature line per tool (shorter prompts).
- ``react``: ``Thought: ...\\nAction: name\\nAction Input: {json}`` (RoTBench / ToolEyes).
- ``chat_template``: the tokenizer's own Jinja chat template with ``tools=`` and ``tool_calls``
  (:mod:`tl_lightning.data.chat_template`).

The interface and the span types are in :mod:`tl_lightning.data.template_base`.

Span rule shared by all formats (what makes training and inference agree): a supervised segment
starts exactly where :meth:`Template.render_prompt` stops, and ends with the end-of-turn string
(:meth:`Template.end_of_turn`) included. For ``python_doc``/``react`` the prompt ends with
``"Assistant:"`` and the supervised text starts with the separating space (``" get_x(...)</s>"``),
because byte-level BPE tokenizers glue that space to the next word (``Ġget``): the model has to
generate it. The newline after the end-of-turn string belongs to the next, unsupervised turn.
The encoder then labels a token iff its character span overlaps a supervised segment.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from typing import Any

from tl_lightning.data.chat_template import ChatTemplate
from tl_lightning.data.literals import python_literal
from tl_lightning.data.schema import FINISH_TOOL, Step, Tool, ToolCall, Trajectory, finish_tool
from tl_lightning.data.template_base import NameSpan, Rendered, Segment, Template, TemplateError, eos_token

__all__ = [
    "PythonDocTemplate",
    "PythonSignatureTemplate",
    "ReActTemplate",
    "TEMPLATES",
    "get_template",
]


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


class _TurnTemplate(Template):
    """Shared layout of ``python_doc`` and ``react``: ``Role: text`` turns joined by newlines."""

    feedback_prefix = "Output:"

    def __init__(self, add_finish_tool: bool = True) -> None:
        #: Show a ``finish`` tool when the trajectory's tools lack one: the model must learn how to answer.
        self.add_finish_tool = add_finish_tool

    def shown_tools(self, traj: Trajectory) -> list[Tool]:
        """The trajectory's tools, plus ``finish`` when they lack it and ``add_finish_tool`` is on: the model
        sees that tool in the prompt, so PKT and the reward count it as real."""
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
        tools = self.shown_tools(traj)
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
        return eos_token(tokenizer)


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
            try:  # arguments render as their JSON form reads back: tuples as lists, keys as strings
                args = ", ".join(f"{k}={python_literal(v, as_json=True)}" for k, v in call.arguments.items())
            except ValueError as e:  # NaN, or a value JSON cannot hold
                raise TemplateError(str(e)) from None
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
