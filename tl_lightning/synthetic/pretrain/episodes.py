"""One pretraining episode: a query with fresh values, 1-5 calls that copy them, outputs, a final answer.

The skills a base model needs before tool fine-tuning, and how an episode exercises each:

- *reading the tool list*: the APIs are new in every document, and gold tools come with all their
  prefix siblings, which the query's words tell apart (``fetch the parcel route`` -> ``fetch_parcel_route``);
- *copying from the query*: each argument the query states is a fresh value the call must copy exactly;
- *copying from tool outputs*: a later call's argument (the ``linked`` one) appears only in an earlier
  output, either as a field or inside a list of records where the query names which record; the final
  answer copies fields of the last output;
- *recovering from an error*: a tenth of the episodes first make a call with a missing or unknown
  argument, get the Python error text back, and then make the right call.

The sentences come from :data:`QUERY_FRAMES`, :data:`FOLLOW_FRAMES` and :data:`ANSWER_FRAMES` only, so a
test can check that none of them is a quick-start query template.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tl_lightning.data.schema import FeedbackCategory, Message, Step, ToolCall, Trajectory
from tl_lightning.synthetic.pretrain.apis import Api, Param, draw_apis
from tl_lightning.synthetic.pretrain.values import fresh_value, mention_value
from tl_lightning.synthetic.pretrain.words import PARAMS

__all__ = ["ANSWER_FRAMES", "ERROR_RATE", "FOLLOW_FRAMES", "MAX_TOOLS", "QUERY_FRAMES", "STEP_WEIGHTS", "build_episode"]

#: How a query opens (``{action}`` = ``<verb> the <object> with <arguments>``).
QUERY_FRAMES = ("Please {action}.", "Could you {action} for me?", "I would like you to {action}.",
                "Help me {action}, please.", "My request: {action}.", "Task for today: {action}.")
#: How each further step of the query continues.
FOLLOW_FRAMES = ("Then {action}.", "After that, {action}.", "Next, {action}.", "Once that is done, {action}.")
#: Pieces of the final answer, one per reported output field.
ANSWER_FRAMES = ("The {field} of the {obj} is {value}.", "{Field}: {value}.", "I found {field} {value} for the {obj}.",
                 "The {obj} reports {field} {value}.")
#: Relative frequency of 1, 2, 3, 4 and 5 tool-call steps.
STEP_WEIGHTS = (0.34, 0.3, 0.17, 0.11, 0.08)
#: Most tools a prompt lists (the quick start lists 4-8).
MAX_TOOLS = 8
#: Share of episodes with one failed call (missing or unknown argument) before the right one.
ERROR_RATE = 0.1
#: Thoughts of the first step and of later ones.
_THOUGHTS = (("I need the {obj} first.", "Let me {verb} the {obj}."),
             ("Now I can {verb} the {obj}.", "The next step is to {verb} the {obj}."))


def _field_params(rng: random.Random, n: int, avoid: set[str]) -> list[Param]:
    rows = [r for r in PARAMS if r[0] not in avoid]
    return [Param(*r) for r in rng.sample(rows, n)]


def _list_tools(groups: list[list[Api]], gold: list[Api], rng: random.Random) -> list[Api]:
    """Gold tools with all their siblings, then other groups while the list stays within :data:`MAX_TOOLS`."""
    gold_names = {a.name for a in gold}
    listed = [a for g in groups if any(a.name in gold_names for a in g) for a in g]
    for g in rng.sample(groups, len(groups)):
        if not any(a.name in gold_names for a in g) and len(listed) + len(g) <= MAX_TOOLS:
            listed += g
    rng.shuffle(listed)
    return listed


def _pick_gold(groups: list[list[Api]], rng: random.Random) -> list[Api]:
    n_steps = rng.choices(range(1, len(STEP_WEIGHTS) + 1), weights=STEP_WEIGHTS)[0]
    first = rng.choice(groups)
    pool = [a for g in groups for a in g]
    gold = [rng.choice(first)]
    while len(gold) < n_steps:
        # Mostly the same family (siblings in one query make the name decision hard), else any tool.
        gold.append(rng.choice(first if rng.random() < 0.5 else pool))
    # Gold tools must fit in one listing: drop steps whose group would overflow it.
    kept: list[Api] = []
    for a in gold:
        names = {b.name for g in groups if any(x.name in {k.name for k in (*kept, a)} for x in g) for b in g}
        if len(names) <= MAX_TOOLS:
            kept.append(a)
    return kept


def _action(api: Api, mentions: list[str], link: str) -> str:
    args = f" with {', '.join(mentions)}" if mentions else ""
    return f"{api.verb} the {api.obj}{args}{link}"


def _answer(api: Api, output: dict[str, Any], rng: random.Random) -> str:
    fields = list(output.items())  # the last output never holds records, so every field reads as text
    parts = []
    for key, value in rng.sample(fields, min(len(fields), rng.randint(1, 3))):
        field = key.replace("_", " ")
        value = mention_value(value, "", rng)
        parts.append(rng.choice(ANSWER_FRAMES).format(field=field, Field=field.capitalize(), obj=api.obj, value=value))
    return " ".join(parts)


def _error_step(api: Api, args: dict[str, Any], rng: random.Random) -> Step:
    """A wrong call before ``api(**args)``, with the error text Python would give: a required argument left
    out (when the call has one), else an argument the tool does not take."""
    missing = [p for p in api.required if p.name in args]
    if missing and rng.random() < 0.5:
        p = rng.choice(missing)
        bad = {k: v for k, v in args.items() if k != p.name}
        fb = f"{api.name}() missing 1 required positional argument: '{p.name}'"
        return Step([ToolCall(api.name, bad)], feedback=[fb], category=FeedbackCategory.PARAMETER_MISSING)
    extra = [r for r in PARAMS if r[0] not in {p.name for p in api.params}]
    name, _, kind, _ = rng.choice(extra)
    bad = {**args, name: fresh_value(kind, rng, api.id_prefix)}
    fb = f"{api.name}() got an unexpected keyword argument '{name}'"
    return Step([ToolCall(api.name, bad)], feedback=[fb], category=FeedbackCategory.PARAMETER_HALLUCINATION)


def build_episode(rng: random.Random, doc_id: str, with_thoughts: bool) -> Trajectory:
    """One episode over freshly drawn APIs (``with_thoughts``: steps carry a one-line thought, as ReAct shows)."""
    groups = draw_apis(rng)
    gold = _pick_gold(groups, rng)
    listed = _list_tools(groups, gold, rng)

    # Plan the arguments: which come from the query, and which one (if any) from the previous output.
    calls: list[dict[str, Any]] = []
    links: list[tuple[Param, str] | None] = []  # (linked param, "flat" | "records")
    sentences: list[str] = []
    selectors: list[tuple[Param, Any] | None] = []
    for k, api in enumerate(gold):
        link = None
        if k and rng.random() < 0.8:
            link = (rng.choice(api.required or api.params), "flat" if rng.random() < 0.6 else "records") if api.params else None
        shown = [p for p in api.required if link is None or p is not link[0]]
        shown += [p for p in api.optional if (link is None or p is not link[0]) and rng.random() < 0.35]
        args: dict[str, Any] = {}
        mentions = []
        for p in shown:
            args[p.name] = fresh_value(p.kind, rng, api.id_prefix)
            mentions.append(f"{p.words} {mention_value(args[p.name], p.kind, rng)}")
        link_text, selector = "", None
        if link is not None:
            args[link[0].name] = fresh_value(link[0].kind, rng, api.id_prefix)
            if link[1] == "records":
                sel = _field_params(rng, 1, {link[0].name, *args})[0]
                selector = (sel, fresh_value(sel.kind, rng, api.id_prefix))
                link_text = f" for the entry whose {sel.words} is {mention_value(selector[1], sel.kind, rng)}"
            else:
                link_text = f" using the {link[0].words} from the previous result"
        # Parameters keep signature order in the call, as a model writing from the listing would.
        calls.append({p.name: args[p.name] for p in api.params if p.name in args})
        links.append(link)
        selectors.append(selector)
        frame = rng.choice(QUERY_FRAMES if k == 0 else FOLLOW_FRAMES)
        sentences.append(frame.format(action=_action(api, mentions, link_text)))

    # Outputs: a few fields, plus whatever the next call must copy from them.
    erring = rng.randrange(len(gold)) if rng.random() < ERROR_RATE else -1
    steps: list[Step] = []
    last_output: dict[str, Any] = {}
    for k, api in enumerate(gold):
        output: dict[str, Any] = {}
        avoid = set(calls[k])
        for p in _field_params(rng, rng.randint(1, 3), avoid | ({links[k + 1][0].name} if k + 1 < len(gold) and links[k + 1] else set())):
            output[p.name] = fresh_value(p.kind, rng, api.id_prefix)
        if k + 1 < len(gold) and links[k + 1] is not None:
            param, style = links[k + 1]
            value = calls[k + 1][param.name]
            if style == "flat":
                output[param.name] = value
            else:
                sel, sel_value = selectors[k + 1]
                records = [{param.name: fresh_value(param.kind, rng, gold[k + 1].id_prefix), sel.name: fresh_value(sel.kind, rng)}
                           for _ in range(rng.randint(1, 3))]
                records = [r for r in records if r[sel.name] != sel_value and r[param.name] != value]
                records.insert(rng.randint(0, len(records)), {param.name: value, sel.name: sel_value})
                output["results"] = records
        if k == erring:
            steps.append(_error_step(api, calls[k], rng))
        text = rng.choice(_THOUGHTS[k > 0]).format(obj=api.obj, verb=api.verb) if with_thoughts else ""
        steps.append(Step([ToolCall(api.name, calls[k])], text=text, feedback=[json.dumps(output, ensure_ascii=False)],
                          category=FeedbackCategory.ALL_RIGHT))
        last_output = output
    return Trajectory(
        id=doc_id, tools=[a.tool for a in listed], messages=[Message("user", " ".join(sentences))], steps=steps,
        final_answer=_answer(gold[-1], last_output, rng), meta={"n_calls": len(gold)},
    )
