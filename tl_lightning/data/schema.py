"""The one internal format: tools, calls, assistant steps and trajectories.

Every reader produces these, every template renders them, and nothing downstream of a reader
looks at raw files. The dataclasses validate themselves on construction, so a malformed
trajectory fails where it is built (with a message a reader can wrap with file/record context).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "FeedbackCategory",
    "Message",
    "Step",
    "Tool",
    "ToolCall",
    "Trajectory",
    "FINISH_TOOL",
    "finish_tool",
]

#: Name of the tool through which the paper's format (and RoTBench/ToolEyes) gives the final answer.
FINISH_TOOL = "finish"


class FeedbackCategory(str, Enum):
    """The seven feedback categories of the TL-Training error taxonomy (docs/method.md#feedback-categories)."""

    ALL_RIGHT = "all_right"
    TOOL_INSTABILITY = "tool_instability"
    TOOL_CALL_FAILURE = "tool_call_failure"
    TOOL_HALLUCINATION = "tool_hallucination"
    PARAMETER_HALLUCINATION = "parameter_hallucination"
    PARAMETER_MISSING = "parameter_missing"
    OTHERS = "others"

    @property
    def is_error(self) -> bool:
        return self is not FeedbackCategory.ALL_RIGHT

    def __str__(self) -> str:  # so f-strings and reports print "tool_hallucination"
        return self.value


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class Tool:
    """A tool the model may call.

    ``parameters`` is a JSON schema of an object (``{"type": "object", "properties": {...}}``);
    ``required`` lists the argument names that must be given.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and self.name != "", f"tool name must be a non-empty string, got {self.name!r}")
        _check(isinstance(self.description, str), f"tool {self.name!r}: description must be a string")
        _check(isinstance(self.parameters, dict), f"tool {self.name!r}: parameters must be a JSON-schema dict")
        props = self.parameters.get("properties", {})
        _check(isinstance(props, dict), f"tool {self.name!r}: parameters.properties must be a dict")
        # One source of truth for required names: a schema-level "required" list moves into the field.
        params = dict(self.parameters)
        required = tuple(self.required) or tuple(params.get("required", ()))
        params.pop("required", None)
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "required", required)
        _check(all(isinstance(r, str) for r in self.required), f"tool {self.name!r}: required must be strings")

    @property
    def properties(self) -> dict[str, Any]:
        """Argument name -> its JSON schema."""
        return self.parameters.get("properties", {})

    @classmethod
    def from_openai(cls, spec: dict[str, Any]) -> Tool:
        """Build from an OpenAI tool spec, either ``{"type": "function", "function": {...}}`` or the inner dict."""
        fn = spec.get("function", spec) if isinstance(spec, dict) else None
        _check(isinstance(fn, dict), f"tool spec must be an object, got {type(spec).__name__}")
        _check("name" in fn, f"tool spec has no 'name': {json.dumps(spec)[:200]}")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        required = fn.get("required", params.get("required", ()) if isinstance(params, dict) else ())
        # A string would otherwise be taken apart into one-letter names ("symbol" -> s, y, m, ...).
        _check(
            required is None or isinstance(required, (list, tuple)),
            f"tool {fn['name']!r}: required must be a list of parameter names, got {required!r:.80}",
        )
        return cls(
            name=fn["name"],
            description=fn.get("description", "") or "",
            parameters=params,
            required=tuple(required or ()),
        )

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI / HF chat-template tool spec (what ``apply_chat_template(tools=...)`` takes)."""
        params = dict(self.parameters)
        params.setdefault("type", "object")
        params["required"] = list(self.required)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }


@dataclass
class ToolCall:
    """One call: a tool name and its keyword arguments. ``raw`` keeps the text it was parsed from.

    ``id`` is the call id a model wrote itself (Mistral's ``[TOOL_CALLS]`` carry one, and the tool
    result must echo it); None elsewhere. It is not part of equality: two calls are the same call
    whatever id a template or a model gave them.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and self.name != "", f"tool call name must be a non-empty string, got {self.name!r}")
        _check(isinstance(self.arguments, dict), f"call to {self.name!r}: arguments must be a dict, got {type(self.arguments).__name__}")
        _check(all(isinstance(k, str) for k in self.arguments), f"call to {self.name!r}: argument names must be strings")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class Message:
    """A non-step message (system or user text) of the conversation before the first step."""

    role: str
    content: str

    def __post_init__(self) -> None:
        _check(self.role in ("system", "user", "assistant"), f"message role must be system/user/assistant, got {self.role!r}")
        _check(isinstance(self.content, str), f"{self.role} message content must be a string")


@dataclass
class Step:
    """One assistant step: one or more calls, optional accompanying text (a thought), and feedback.

    ``feedback`` holds one string per call (the tool's reply). It is empty only for a step whose
    calls have not been executed yet (an evaluation or RL prompt's target). ``category`` is the
    step's feedback category: the first error category among its calls, else ``all_right``;
    readers fill it with :func:`tl_lightning.data.feedback.step_category`.
    """

    calls: list[ToolCall]
    text: str = ""
    feedback: list[str] = field(default_factory=list)
    category: FeedbackCategory | None = None

    def __post_init__(self) -> None:
        _check(len(self.calls) > 0, "a step must contain at least one tool call")
        _check(all(isinstance(c, ToolCall) for c in self.calls), "step calls must be ToolCall objects")
        _check(isinstance(self.text, str), "step text must be a string")
        _check(all(isinstance(f, str) for f in self.feedback), "step feedback must be strings")
        _check(
            len(self.feedback) in (0, len(self.calls)),
            f"a step with {len(self.calls)} call(s) has {len(self.feedback)} feedback message(s)",
        )
        if self.category is not None and not isinstance(self.category, FeedbackCategory):
            self.category = FeedbackCategory(self.category)

    @property
    def is_error(self) -> bool:
        return self.category is not None and self.category.is_error


@dataclass
class Trajectory:
    """A tool-use episode: tools, the opening messages, assistant steps, and the final answer.

    ``messages`` are the system/user messages before the first step (``system`` is the system
    prompt text separate from the tool list). ``final_answer`` is the assistant's closing text,
    rendered by templates as a ``finish(answer=...)`` call or a plain reply; None when the
    trajectory ends on a step (e.g. an RL or evaluation prompt). A trajectory with neither steps
    nor a final answer is a prompt; readers of training data reject it as empty.
    """

    id: str
    tools: list[Tool]
    messages: list[Message]
    steps: list[Step] = field(default_factory=list)
    system: str = ""
    final_answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.id, str) and self.id != "", f"trajectory id must be a non-empty string, got {self.id!r}")
        _check(all(isinstance(t, Tool) for t in self.tools), f"trajectory {self.id}: tools must be Tool objects")
        names = [t.name for t in self.tools]
        _check(len(names) == len(set(names)), f"trajectory {self.id}: duplicate tool names {sorted(n for n in set(names) if names.count(n) > 1)}")
        _check(any(m.role == "user" for m in self.messages), f"trajectory {self.id}: no user message")
        _check(self.final_answer is None or isinstance(self.final_answer, str), f"trajectory {self.id}: final_answer must be a string")

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools]

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def is_empty(self) -> bool:
        return not self.steps and self.final_answer is None

    @property
    def query(self) -> str:
        """The first user message."""
        return next(m.content for m in self.messages if m.role == "user")


def finish_tool() -> Tool:
    """The ``finish`` tool: how ``python_doc``/``react`` prompts give the final answer, and what every
    sandbox accepts as the end of an episode. One definition, so the schema the model is shown is the
    schema its answer is checked against."""
    return Tool(
        name=FINISH_TOOL,
        description="Finish the task and give the final answer to the user.",
        parameters={"type": "object", "properties": {"answer": {"type": "string", "description": "The final answer."}}},
        required=("answer",),
    )
