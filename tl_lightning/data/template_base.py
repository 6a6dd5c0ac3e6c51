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

    def render_sequences(self, traj: Trajectory, tokenizer) -> list[Rendered]:
        """The sequences that train on ``traj``: the one :meth:`render`, unless the format needs several
        (a chat template that re-renders earlier turns is encoded turn by turn)."""
        return [self.render(traj, tokenizer)]

    def call_format_for(self, tokenizer) -> str:
        """How generated text is parsed (:func:`tl_lightning.tools.calls.parse_calls`) for this tokenizer;
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def eos_token(tokenizer) -> str:
    """The tokenizer's EOS string, which ends an assistant turn in formats without their own end-of-turn marker."""
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise TemplateError("the tokenizer has no eos_token; python_doc/react end each assistant turn with it")
    return eos
