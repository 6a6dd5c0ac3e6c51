"""The ``chat_template`` format: the tokenizer's own Jinja chat template, with spans found by diffing renders.

    get_template("chat_template")                                  # the tokenizer's template
    get_template("chat_template", chat_template=JINJA, end_of_turn="<|im_end|>")
    get_template("chat_template", chat_template_kwargs={"date_string": "26 Jul 2024"})   # Llama 3.2's date

Any family's stock template works unchanged (``tests/fixtures/templates``: Qwen2.5, Qwen3, Llama 3.1/3.2/3.3,
Mistral v3 and Tekken, Hermes-2-Pro); what differs between families is read off the template itself:

- **call format** (how evaluation and RL parse the model's replies): ``[TOOL_CALLS]`` -> ``mistral``,
  ``<|python_tag|>``/``ipython`` -> ``llama3``, ``<tool_call>`` -> ``hermes``, else ``json``
  (:func:`detect_call_format`; ``call_format=`` overrides);
- **reasoning**: a template that reads ``reasoning_content`` (Qwen3) gets each step's thought there, so it
  renders as ``<think>`` text; other templates get it as the message content;
- **parallel calls**: a template that refuses several calls in one message (Llama 3.x) gets one assistant
  message per call, each followed by its result (``parallel_calls="split"``);
- **call ids**: every call gets a 9-character alphanumeric id (what Mistral's template demands), the id a
  model wrote when it wrote a valid one.

**Rendering strategies.** Training must show each assistant turn exactly the context the template gives it
at generation time (``apply_chat_template(messages_before_it, add_generation_prompt=True)``), and supervise
exactly the text the template renders for the turn. When every such context extends the previous turn's
text, one sequence holds the whole trajectory (``one_pass``: the diffing below, one forward pass). Some stock
templates re-render earlier turns: Qwen3 shows a turn's ``<think>`` block only while it is the last message
(or while it has reasoning), Mistral v3 and Tekken move the system prompt to the last user message and drop
it once an assistant turn follows, Hermes-2-Pro ends a tool reply differently when a turn follows it. For
those, ``auto`` (the default) falls back to the **per-turn** strategy: each turn is encoded against its own
generation-time context, and consecutive turns share one sequence whenever the later context extends the
earlier sequence (so only turns whose context was rewritten start a new one). Erroneous steps stay in every
later context (MAE masks their own tokens only). ``per_turn`` gives every turn its own sequence, as the
official TL-Training code does (O(turns^2) tokens; kept to measure against). The token cost on the
quick-start data is in ``docs/model_families.md`` (``benchmarks/bench_per_turn.py`` measures it).
"""

from __future__ import annotations

import json
import os
import re

from tl_lightning.data.chat_messages import (
    Turn,
    call_id,
    detect_call_format,
    step_messages,
    trajectory_messages,
)
from tl_lightning.data.schema import Step, ToolCall, Trajectory
from tl_lightning.data.template_base import NameSpan, Rendered, Segment, Template, TemplateError, eos_token

__all__ = ["ChatTemplate", "NotPrefixStable", "STRATEGIES", "detect_call_format"]

#: How trajectories are cut into sequences (see the module docstring).
STRATEGIES = ("auto", "one_pass", "per_turn")

_MARK = "\x00"  # never in real text: the content of probe messages


class NotPrefixStable(TemplateError):
    """The template renders an earlier part of the conversation differently once later turns follow."""


class _Sequence:
    """One training sequence being built: text, tiling segments and tool-name spans."""

    def __init__(self) -> None:
        self.text = ""
        self.segments: list[Segment] = []
        self.names: list[NameSpan] = []
        self.last_step = -1

    def add(self, text: str, role: str, supervised: bool, step: int) -> None:
        if text:
            self.segments.append(Segment(len(self.text), len(self.text) + len(text), role, supervised, step))
            self.text += text


class ChatTemplate(Template):
    """The tokenizer's own Jinja chat template, called with ``tools=[t.to_openai()]``.

    Steps become assistant messages with ``tool_calls`` (arguments as dicts) followed by one ``tool``
    message per feedback; the final answer is a plain assistant message. Supervised spans are found
    without ``{% generation %}`` tags: for each assistant message, the conversation before it is rendered
    with the generation prompt (the context), and with the message; the message's own text (after the
    generation prompt, up to and including the end-of-turn string) is supervised. Tool names are located
    in the supervised text in call order, first as ``"name": "<name>"`` (the JSON every family here
    emits), else as ``"<name>"``, else as the bare word.

    Args:
        chat_template: a Jinja string (or the name of one of the tokenizer's templates); None = the tokenizer's.
        end_of_turn: the text that closes an assistant turn (detected: what the template writes right after
            an assistant message's content, stripped; else the EOS token).
        call_format: how generated replies are parsed (:data:`~tl_lightning.data.call_parsers.PARSERS`);
            None = :func:`detect_call_format` of the template.
        strategy: ``auto`` | ``one_pass`` | ``per_turn`` (module docstring).
        reasoning: put each step's thought in ``reasoning_content`` (True) or the content (False);
            None = True for templates that read ``reasoning_content``.
        parallel_calls: ``keep`` (one message per step) or ``split`` (one message per call); None = split
            for the ``llama3`` format, whose templates refuse several calls in one message.
        chat_template_kwargs: extra variables for the template (``date_string``, ``enable_thinking``...).
    """

    name = "chat_template"
    call_format = "json"  # the class default; an instance knows its template's format (call_format_for)

    def __init__(
        self,
        chat_template: str | None = None,
        end_of_turn: str | None = None,
        call_format: str | None = None,
        strategy: str = "auto",
        reasoning: bool | None = None,
        parallel_calls: str | None = None,
        chat_template_kwargs: dict | None = None,
    ) -> None:
        from tl_lightning.data.call_parsers import PARSERS

        if strategy not in STRATEGIES:
            raise ValueError(f"chat_template: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if parallel_calls not in (None, "keep", "split"):
            raise ValueError(f"chat_template: parallel_calls must be keep, split or null, got {parallel_calls!r}")
        if call_format is not None and call_format not in PARSERS:
            raise ValueError(f"chat_template: call_format must be one of {', '.join(PARSERS)}, got {call_format!r}")
        self.chat_template = chat_template
        self._end_of_turn = end_of_turn
        self._call_format = call_format
        self.strategy = strategy
        self.reasoning = reasoning
        self.parallel_calls = parallel_calls
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        if call_format or (chat_template and "{" in chat_template):  # a Jinja string, not a template's name
            self.call_format = call_format or detect_call_format(chat_template)

    # ------------------------------------------------------------------ the template and its family
    def source(self, tokenizer) -> str:
        """The Jinja text in use: ``chat_template`` or the tokenizer's (a named one resolved as transformers does)."""
        own = getattr(tokenizer, "chat_template", None)
        if self.chat_template and "{" in self.chat_template:
            return self.chat_template
        if isinstance(own, dict):
            name = self.chat_template or ("tool_use" if "tool_use" in own else "default")
            if name in own:
                return own[name]
        elif own and not self.chat_template:
            return own
        raise TemplateError(
            f"template 'chat_template' needs a chat template; {type(tokenizer).__name__} has "
            f"{'no template named ' + repr(self.chat_template) if self.chat_template else 'none'} "
            "(pass chat_template=... or use template 'python_doc'/'react')"
        )

    def call_format_for(self, tokenizer) -> str:
        return self._call_format or detect_call_format(self.source(tokenizer))

    def _uses_reasoning(self, tokenizer) -> bool:
        return self.reasoning if self.reasoning is not None else "reasoning_content" in self.source(tokenizer)

    def _splits_calls(self, tokenizer) -> bool:
        mode = self.parallel_calls or ("split" if self.call_format_for(tokenizer) == "llama3" else "keep")
        return mode == "split"

    def _apply(self, tokenizer, messages: list[dict], tools: list[dict], generation: bool, traj_id: str = "") -> str:
        import jinja2

        try:
            out = tokenizer.apply_chat_template(
                messages, tools=tools or None, chat_template=self.source(tokenizer), tokenize=False,
                add_generation_prompt=generation, **self.chat_template_kwargs,
            )
        except (jinja2.TemplateError, TypeError) as e:  # the template's own raise_exception, or a template bug
            where = f"trajectory {traj_id}: " if traj_id else ""
            hint = " (parallel_calls: split renders one call per message)" if "single tool-call" in str(e) else ""
            raise TemplateError(f"{where}the chat template refused the conversation: {e}{hint}") from None
        return out if isinstance(out, str) else out[0]

    def end_of_turn(self, tokenizer) -> str:
        if self._end_of_turn:
            return self._end_of_turn
        mark = "\x00CONTENT\x00"
        # With a tool listed: some templates (Hermes-2-Pro's tool_use) assume there is one.
        tool = {"type": "function", "function": {"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}}
        text = self._apply(tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": mark}], [tool], False)
        after = text.split(mark, 1)[1].strip() if mark in text else ""
        return after or eos_token(tokenizer)

    # ------------------------------------------------------------------ messages
    def _messages(self, traj: Trajectory, include_final: bool, tokenizer) -> tuple[list[dict], list[Turn | None]]:
        return trajectory_messages(traj, include_final, self._uses_reasoning(tokenizer), self._splits_calls(tokenizer))

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

    # ------------------------------------------------------------------ one pass
    def render(self, traj: Trajectory, tokenizer) -> Rendered:
        """The whole trajectory as one sequence; :class:`NotPrefixStable` if the template re-renders earlier turns
        (:meth:`render_sequences` then gives the per-turn sequences)."""
        eot = self.end_of_turn(tokenizer)
        shown = self.shown_tools(traj)
        tools = [t.to_openai() for t in shown]
        msgs, turns = self._messages(traj, include_final=True, tokenizer=tokenizer)
        seq = _Sequence()

        def unstable(what: str) -> NotPrefixStable:
            return NotPrefixStable(
                f"trajectory {traj.id}: chat template is not prefix-stable ({what}), so one sequence cannot hold "
                "every turn's generation-time context; strategy 'auto' or 'per_turn' encodes it turn by turn"
            )

        for k, turn in enumerate(turns):
            if turn is None:
                continue
            before = self._apply(tokenizer, msgs[:k], tools, False, traj.id)
            prompt = self._apply(tokenizer, msgs[:k], tools, True, traj.id)
            after = self._apply(tokenizer, msgs[: k + 1], tools, False, traj.id)
            if not before.startswith(seq.text):
                raise unstable(f"rendering up to message {k} changes earlier text")
            if not prompt.startswith(before) or not after.startswith(prompt):
                raise unstable(f"assistant message {k} does not start with its generation prompt")
            seq.add(before[len(seq.text) :], msgs[k - 1]["role"], False, seq.last_step)
            seq.add(prompt[len(before) :], "assistant", False, turn.step)
            self._add_completion(seq, after[len(prompt) :], eot, turn, traj.id, k)
            seq.add(after[len(seq.text) :], "assistant", False, turn.step)
        full = self._apply(tokenizer, msgs, tools, False, traj.id)
        if not full.startswith(seq.text):
            raise unstable("the full conversation changes earlier text")
        seq.add(full[len(seq.text) :], msgs[-1]["role"], False, seq.last_step)
        return Rendered(seq.text, seq.segments, seq.names, tuple(t.name for t in shown))

    def _add_completion(self, seq: _Sequence, new: str, eot: str, turn: Turn, traj_id: str, k: int) -> None:
        """Append the assistant message's own text (``new`` starts right after its generation prompt) up to and
        including the end of turn, supervised, with its tool-name spans."""
        cut = new.find(eot)
        if cut < 0:
            raise TemplateError(f"trajectory {traj_id}: assistant message {k} does not end with end-of-turn {eot!r}; pass end_of_turn=...")
        start = len(seq.text)
        seq.add(new[: cut + len(eot)], "assistant", True, turn.step)
        seq.names += self._find_names(new[: cut + len(eot)], start, turn.calls, turn.step)
        seq.last_step = turn.step

    # ------------------------------------------------------------------ per turn
    def render_sequences(self, traj: Trajectory, tokenizer) -> list[Rendered]:
        """The sequences that train on ``traj`` (see the module docstring): one for a prefix-stable template."""
        if self.strategy == "per_turn":
            return self._render_turns(traj, tokenizer, merge=False)
        try:
            return [self.render(traj, tokenizer)]
        except NotPrefixStable:
            if self.strategy == "one_pass":
                raise
        return self._render_turns(traj, tokenizer, merge=True)

    def _completion_start(self, tokenizer, msgs: list[dict], k: int, tools: list[dict], renders: tuple[str, str, str], traj_id: str) -> int:
        """Where assistant message ``k``'s own text starts in ``after`` (its render as the last message).

        Usually right after ``gen``. When the template renders the context differently once the message
        follows (Mistral's system prompt, Hermes' tool replies), the context in ``after`` ends where ``after``
        parts from renders of two probe messages (a plain reply and a call, both marked), and the message
        starts after the generation prompt found there. ``renders``: messages ``[:k]`` without and with the
        generation prompt, and ``[:k + 1]``."""
        before, gen, after = renders
        if after.startswith(gen):
            return len(gen)
        if not gen.startswith(before):
            raise TemplateError(f"trajectory {traj_id}: the generation prompt of message {k} rewrites the conversation before it")
        header = gen[len(before) :]
        probe_call = {"id": "a" * 9, "type": "function", "function": {"name": _MARK, "arguments": {}}}
        probes = ({"role": "assistant", "content": _MARK}, {"role": "assistant", "content": "", "tool_calls": [probe_call]})
        shared = min(len(os.path.commonprefix([after, self._apply(tokenizer, [*msgs[:k], p], tools, False, traj_id)])) for p in probes)
        if not header:
            return shared
        at = after.rfind(header, 0, shared + len(header))
        if at < 0:
            raise TemplateError(
                f"trajectory {traj_id}: message {k} does not continue its generation prompt {header!r} (a message the "
                "prompt does not fit, e.g. a thought under Qwen3's enable_thinking: false)"
            )
        return at + len(header)

    def _render_turns(self, traj: Trajectory, tokenizer, merge: bool) -> list[Rendered]:
        eot = self.end_of_turn(tokenizer)
        shown = self.shown_tools(traj)
        tools = [t.to_openai() for t in shown]
        msgs, turns = self._messages(traj, include_final=True, tokenizer=tokenizer)
        names = tuple(t.name for t in shown)
        out: list[Rendered] = []
        seq: _Sequence | None = None
        for k, turn in enumerate(turns):
            if turn is None:
                continue
            gen = self._apply(tokenizer, msgs[:k], tools, True, traj.id)
            before = self._apply(tokenizer, msgs[:k], tools, False, traj.id)
            after = self._apply(tokenizer, msgs[: k + 1], tools, False, traj.id)
            start = self._completion_start(tokenizer, msgs, k, tools, (before, gen, after), traj.id)
            context_end = len(before) if gen.startswith(before) else len(gen)
            if seq is None or not merge or not gen.startswith(seq.text):
                if seq is not None:
                    out.append(Rendered(seq.text, seq.segments, seq.names, names))
                seq = _Sequence()
            seq.add(gen[len(seq.text) : context_end], msgs[k - 1]["role"], False, seq.last_step)
            seq.add(gen[max(context_end, len(seq.text)) :], "assistant", False, turn.step)
            self._add_completion(seq, after[start:], eot, turn, traj.id, k)
        if seq is not None:
            out.append(Rendered(seq.text, seq.segments, seq.names, names))
        return out

    # ------------------------------------------------------------------ inference
    def render_prompt(self, traj: Trajectory, tokenizer) -> str:
        msgs, _ = self._messages(traj, include_final=False, tokenizer=tokenizer)
        return self._apply(tokenizer, msgs, [t.to_openai() for t in self.shown_tools(traj)], True, traj.id)

    def observation(self, traj: Trajectory, tokenizer) -> str:
        """The tool results of the last step and the next generation prompt, in the family's own roles and format.

        The text after the end of turn of the step's assistant message in the next prompt: it is found where
        that prompt parts from the same prompt with every result replaced by a mark (the results are the
        first thing the template writes after the message). A split step (Llama) shows its last call as
        the message, followed by every call's result."""
        if not traj.steps:
            raise ValueError(f"trajectory {traj.id}: no step, so no observation")
        head = Trajectory(traj.id, traj.tools, traj.messages, traj.steps[:-1], traj.system)
        msgs, _ = self._messages(head, include_final=False, tokenizer=tokenizer)
        i, step = len(traj.steps) - 1, traj.steps[-1]
        split = self._splits_calls(tokenizer)
        if split and len(step.calls) > 1:  # one call per message: the turn's calls all answered after the last
            last = Step([step.calls[-1]], step.text)
            step_msgs, _ = step_messages(traj.id, i, last, self._uses_reasoning(tokenizer), split)
            step_msgs[0]["tool_calls"][0]["id"] = call_id(traj.id, i, len(step.calls) - 1, step.calls[-1])
            step_msgs += [
                {"role": "tool", "content": fb, "name": c.name, "tool_call_id": call_id(traj.id, i, j, c)}
                for j, (c, fb) in enumerate(zip(step.calls, step.feedback, strict=True))
            ]
        else:
            step_msgs, _ = step_messages(traj.id, i, step, self._uses_reasoning(tokenizer), split)
        msgs += step_msgs
        tools = [t.to_openai() for t in self.shown_tools(traj)]
        full = self._apply(tokenizer, msgs, tools, True, traj.id)
        n = len(msgs) - len(step.feedback)
        marked = msgs[:n] + [{**m, "content": _MARK} for m in msgs[n:]]
        parted = len(os.path.commonprefix([full, self._apply(tokenizer, marked, tools, True, traj.id)]))
        eot = self.end_of_turn(tokenizer)
        end = full.rfind(eot, 0, parted)
        if end < 0:
            raise TemplateError(f"trajectory {traj.id}: no end of turn {eot!r} before the tool results in the next prompt")
        return full[end + len(eot) :]

    def __repr__(self) -> str:
        return (
            f"ChatTemplate(custom_template={self.chat_template is not None}, end_of_turn={self._end_of_turn!r}, "
            f"strategy={self.strategy!r})"
        )
