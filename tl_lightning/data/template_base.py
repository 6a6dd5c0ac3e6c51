"""What every prompt format produces: the rendered text with the character spans the encoder needs.

:class:`Template` is the interface; the formats themselves are in :mod:`tl_lightning.data.templates`
(``python_doc``, ``python_sig``, ``react``) and :mod:`tl_lightning.data.chat_template`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory

__all__ = ["NameSpan", "Rendered", "Segment", "Template", "TemplateError", "eos_token"]


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
    (docs/method.md#sft-mae-and-pkt) compares the called name against these.
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


class Template(ABC):
    """A prompt format. Subclasses are plain picklable objects (they hold only strings and flags)."""

    name: str = ""
    #: How :func:`tl_lightning.data.calls.parse_calls` should read generated text: python | react | json.
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

    def render_sequences(self, traj: Trajectory, tokenizer) -> list[Rendered]:
        """The sequences that train on ``traj``: the one :meth:`render`, unless the format needs several
        (a chat template that re-renders earlier turns is encoded turn by turn)."""
        return [self.render(traj, tokenizer)]

    def call_format_for(self, tokenizer) -> str:
        """How generated text is parsed (:func:`tl_lightning.data.calls.parse_calls`) for this tokenizer;
        a chat template's format depends on the template the tokenizer carries."""
        return self.call_format

    def observation(self, traj: Trajectory, tokenizer) -> str:
        """What follows the last step's assistant turn in the next prompt: the step's feedback as this format
        renders it, then the opening of the next assistant turn (what a multi-turn episode appends).

        Here: the next prompt minus the full render up to the end of that step's supervised text.
        """
        if not traj.steps:
            raise ValueError(f"trajectory {traj.id}: no step, so no observation")
        rendered = self.render(traj, tokenizer)
        end = max(s.end for s in rendered.segments if s.supervised and s.step == len(traj.steps) - 1)
        prompt = self.render_prompt(traj, tokenizer)
        if prompt[:end] != rendered.text[:end]:
            raise ValueError(f"{type(self).__name__}: render_prompt does not extend render; cannot cut the observation")
        return prompt[end:]

    def shown_tools(self, traj: Trajectory) -> list[Tool]:
        """The tools the rendered prompt lists: the ``T`` that PKT's prefix rule and the IRM reward use."""
        return list(traj.tools)

    # ------------------------------------------------------------------ read-back of tool and argument names
    def readback_problem(self, name: str, arguments: Sequence[str], tokenizer) -> str | None:
        """Why a call to ``name`` with the argument names ``arguments``, rendered as this template renders a
        supervised step, would not read back as that call through ``parse_calls(text, self.call_format_for(tokenizer))`` (the
        parser evaluation and the IRM reward use); None when it reads back. A model trained on a call it can
        never be scored right for learns nothing useful, so such names are refused before training
        (:meth:`check_readable`). Judged by rendering and parsing, so it follows the template and the parser as
        they are; cached per template, tokenizer template and names."""
        key = (type(self).__qualname__, repr(sorted(vars(self).items())), getattr(tokenizer, "chat_template", None),
               getattr(tokenizer, "eos_token", None), name, tuple(arguments))
        if key not in _READBACK:
            _READBACK[key] = self._readback(name, tuple(arguments), tokenizer)
        return _READBACK[key]

    def _readback(self, name: str, arguments: tuple[str, ...], tokenizer) -> str | None:
        from tl_lightning.data.calls import parse_calls

        call = ToolCall(name, dict.fromkeys(arguments, 0))
        tool = Tool(name, parameters={"type": "object", "properties": {a: {"type": "integer"} for a in arguments}})
        traj = Trajectory("readback", [tool], [Message("user", "q")], [Step([call])])
        try:
            rendered = self.render(traj, tokenizer)
        except (TemplateError, ValueError) as e:
            return f"the {self.name} template cannot render it ({e})"
        seg = rendered.supervised[0]
        text = rendered.text[seg.start : seg.end].removesuffix(self.end_of_turn(tokenizer))
        parsed = parse_calls(text, self.call_format_for(tokenizer))
        shown = text.removeprefix(" ")[:80]  # the separator space every turn template puts before the call
        if not parsed.ok:
            return f"the {self.name} template writes it as {shown!r}, which does not parse ({parsed.error})"
        got = [(c.name, tuple(c.arguments)) for c in parsed.calls]
        if got != [(name, arguments)]:
            return f"the {self.name} template writes it as {shown!r}, which reads back as {got[0][0]!r}" + (
                f" with arguments {list(got[0][1])}" if got[0][0] == name else "")
        return None

    def check_readable(self, tools: Iterable[Tool], calls: Iterable[ToolCall], tokenizer) -> None:
        """Raise :class:`TemplateError` (one line naming the tool, and the argument when it is the culprit) for a
        tool of ``tools`` or a call of ``calls`` that this template cannot write so that its parser reads it back."""
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for what, name, args in [("tool", t.name, tuple(t.properties)) for t in tools] + [
            ("call to", c.name, tuple(c.arguments)) for c in calls
        ]:
            if (name, args) in seen:
                continue
            seen.add((name, args))
            if self.readback_problem(name, args, tokenizer) is None:
                continue
            culprit, problem = f"{what} {name!r}", self.readback_problem(name, (), tokenizer)
            for arg in args if problem is None else ():
                problem = self.readback_problem(name, (arg,), tokenizer)
                if problem is not None:
                    culprit = f"{what} {name!r}, argument {arg!r}"
                    break
            problem = (problem or self.readback_problem(name, args, tokenizer)).replace("\n", " ").replace("\r", " ")
            raise TemplateError(f"{culprit}: {problem}; {_NAME_HINTS.get(self.call_format_for(tokenizer), 'rename it')}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: Per call format, what a name needs to be written and read back.
_NAME_HINTS = {
    "python": "calls are written as Python, so tool names must be identifiers (dotted for a module path) and argument "
              "names identifiers, none of them a Python keyword: rename it, or train with template 'react' or "
              "'chat_template'",
    "react": "the name of an 'Action:' line cannot hold a line break, nor start or end with blanks or backticks: rename it",
    "json": "rename it, or use a chat template that writes tool names as JSON strings",
}
#: (template, its settings, the tokenizer's chat template and EOS, tool name, argument names) -> problem or None.
_READBACK: dict[tuple, str | None] = {}


def eos_token(tokenizer) -> str:
    """The tokenizer's EOS string, which ends an assistant turn in formats without their own end-of-turn marker."""
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise TemplateError("the tokenizer has no eos_token; python_doc/react end each assistant turn with it")
    return eos
