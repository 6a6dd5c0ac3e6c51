"""What every prompt format produces: the rendered text with the character spans the encoder needs.

:class:`Template` is the interface; the formats themselves are in :mod:`tl_lightning.data.templates`
(``python_doc``, ``python_sig``, ``react``) and :mod:`tl_lightning.data.chat_template`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from tl_lightning.data.schema import Tool, Trajectory

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

    def shown_tools(self, traj: Trajectory) -> list[Tool]:
        """The tools the rendered prompt lists: the ``T`` that PKT's prefix rule and the IRM reward use."""
        return list(traj.tools)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def eos_token(tokenizer) -> str:
    """The tokenizer's EOS string, which ends an assistant turn in formats without their own end-of-turn marker."""
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise TemplateError("the tokenizer has no eos_token; python_doc/react end each assistant turn with it")
    return eos
