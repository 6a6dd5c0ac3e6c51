"""Schema-simulated execution: tools known only by their JSON schemas answer with shaped, seeded results.

Used for ToolEyes, whose tools call live APIs: the model's calls are checked like the sandbox checks
them (name, argument names, required arguments, types and enums where the schema gives them) and a
valid call gets a deterministic JSON result. Like the sandbox, it never raises.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Tool, ToolCall
from tl_lightning.tools.environment import Environment, Outcome, as_list, check_arguments
from tl_lightning.tools.toolkit import stable_hash

__all__ = ["ASK_USER_TOOL", "SchemaSimulator", "tools_from_system_prompt"]

#: The ask-the-user tool of RoTBench/ToolEyes tool lists.
ASK_USER_TOOL = "ask_to_user"

_WORDS = (
    "alpha bravo cedar delta ember falcon garnet harbor indigo juniper kestrel lumen maple nova "
    "orchid prairie quartz river sierra timber umber violet willow xenon yarrow zephyr"
).split()


def tools_from_system_prompt(text: str) -> list[Tool]:
    """The tool list embedded in a RoTBench/ToolEyes system prompt (a JSON list from the first ``[``)."""
    start = text.find("[")
    if start < 0:
        raise ValueError("system prompt holds no JSON tool list (no '[')")
    specs, _ = json.JSONDecoder().raw_decode(text[start:])
    return [Tool.from_openai(s) for s in specs]


class SchemaSimulator(Environment):
    """Executes calls to tools known only by their JSON schemas (e.g. ToolEyes, whose tools call live APIs).

    Name, argument names, required arguments and (where the schema gives them) types and enums
    are checked like :class:`~tl_lightning.tools.sandbox.Sandbox` does; numbers are accepted for
    ``string`` parameters, as an HTTP API would stringify them. A valid call gets a deterministic
    JSON result shaped by the schema and the arguments (seeded hash of seed, name and arguments):
    ``{"tool", "status": "success", "results": [{"id", <each argument>, "summary"}, ...]}``.
    ``ask_to_user`` gets a fixed reply telling the model to go on. ``finish`` ends the episode.
    """

    def __init__(self, tools: Iterable[Tool | dict[str, Any]], seed: int = 0) -> None:
        self._specs: dict[str, Tool] = {}
        for t in tools:
            spec = t if isinstance(t, Tool) else Tool.from_openai(t)
            self._specs[spec.name] = spec
        self._specs.pop(FINISH_TOOL, None)
        self.seed = seed
        self.reset()

    @property
    def tools(self) -> list[Tool]:
        return list(self._specs.values())

    def reset(self, state: dict[str, Any] | None = None) -> None:
        """Start a new episode (the simulator keeps no state; ``state`` is accepted for symmetry with the sandbox)."""
        self.done = False
        self.final_answer = None

    def _run(self, call: ToolCall) -> Outcome:
        args = check_arguments(call, self._specs, lenient_strings=True)
        if isinstance(args, Outcome):
            return args
        if call.name == ASK_USER_TOOL:  # RoTBench/ToolEyes' ask-the-user tool: there is no user offline
            return Outcome(json.dumps({"response": "Please continue with the information you have."}), FeedbackCategory.ALL_RIGHT)
        return Outcome(json.dumps(self._result(call.name, args), ensure_ascii=False), FeedbackCategory.ALL_RIGHT)

    def _result(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        rng = random.Random(stable_hash(self.seed, name, args))
        spec = self._specs[name]
        items = []
        for i in range(1 + rng.randrange(3)):
            item: dict[str, Any] = {"id": rng.randrange(1, 1000)}
            for arg, value in sorted(args.items()):
                item[arg] = _shaped_value(value, spec.properties.get(arg, {}), rng)
            item["summary"] = " ".join(rng.choice(_WORDS) for _ in range(3 + i % 2))
            items.append(item)
        return {"tool": name, "status": "success", "results": items}


def _shaped_value(value: Any, schema: dict[str, Any], rng: random.Random) -> Any:
    """An echo of the argument, or a value of the schema's type when the argument is a query."""
    t = (as_list(schema.get("type")) or ["string"])[0] if isinstance(schema, dict) else "string"
    if t == "integer":
        return value if isinstance(value, int) else rng.randrange(100)
    if t == "number":
        return value if isinstance(value, int | float) else round(rng.uniform(0, 100), 1)
    return value
