"""The ``chat_template`` format: the tokenizer's own Jinja chat template, with spans found by diffing renders.

    get_template("chat_template")                                  # the tokenizer's template
    get_template("chat_template", chat_template=JINJA, end_of_turn="<|im_end|>")
"""

from __future__ import annotations

import json
import re

from tl_lightning.data.schema import ToolCall, Trajectory
from tl_lightning.data.template_base import NameSpan, Rendered, Segment, Template, TemplateError, eos_token

__all__ = ["ChatTemplate"]


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
        return after or eos_token(tokenizer)

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
        shown = self.shown_tools(traj)
        tools = [t.to_openai() for t in shown]
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
        return Rendered(full, segments, names, tuple(t.name for t in shown))

    def render_prompt(self, traj: Trajectory, tokenizer) -> str:
        msgs, _ = self._messages(traj, include_final=False)
        return self._apply(tokenizer, msgs, [t.to_openai() for t in self.shown_tools(traj)], True)

    def __repr__(self) -> str:
        return f"ChatTemplate(custom_template={self.chat_template is not None}, end_of_turn={self._end_of_turn!r})"
