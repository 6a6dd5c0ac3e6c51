"""Procedurally generated APIs: tool families whose names share a prefix, with typed parameters.

A family is a shared prefix (``fetch_parcel`` or ``archive``) plus one distinct word per member
(``fetch_parcel_status``, ``fetch_parcel_route``; ``archive_invoice``, ``archive_ticket``), so siblings
part after a whole word, as real APIs do. That puts PKT's divergence token after the first one under
any tokenizer that splits at ``_``. Every document draws its own APIs; a name or parameter schema equal
to one of the sandbox toolkits' is redrawn, so the base model never sees a quick-start tool.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass

from tl_lightning.data.schema import Tool
from tl_lightning.synthetic.pretrain.words import ENUMS, NOUNS, PARAMS, QUALIFIERS, VERBS

__all__ = ["Api", "Param", "draw_apis", "forbidden_names", "forbidden_schemas", "schema_key"]

_LIST_ITEMS = {"tags": "string", "people": "string", "ints": "integer"}


@dataclass(frozen=True)
class Param:
    """One parameter: its name, JSON type, value kind (:func:`~.values.fresh_value`) and description."""

    name: str
    json_type: str
    kind: str
    description: str

    @property
    def words(self) -> str:
        """How a sentence names the parameter (``start_date`` -> ``start date``)."""
        return self.name.replace("_", " ")

    def schema(self) -> dict:
        s: dict = {"type": self.json_type, "description": self.description}
        if self.kind.startswith("enum:"):
            s["enum"] = list(ENUMS[self.kind[5:]])
        if self.json_type == "array":
            s["items"] = {"type": _LIST_ITEMS[self.kind]}
        return s


@dataclass(frozen=True)
class Api:
    """A generated tool with what the episode builder needs to talk about it.

    ``verb`` and ``obj`` (e.g. ``"fetch"``, ``"parcel status"``) phrase requests; ``params`` are in
    signature order, the first ``n_required`` of them required; ``id_prefix`` starts its id values.
    """

    tool: Tool
    verb: str
    obj: str
    params: tuple[Param, ...]
    n_required: int
    id_prefix: str

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def required(self) -> tuple[Param, ...]:
        return self.params[: self.n_required]

    @property
    def optional(self) -> tuple[Param, ...]:
        return self.params[self.n_required :]


def schema_key(tool: Tool) -> str:
    """A tool's parameter schema as one canonical string (what "the same schema" means in the tests)."""
    return json.dumps({"properties": tool.properties, "required": sorted(tool.required)}, sort_keys=True)


@functools.lru_cache(maxsize=1)
def _sandbox_tools() -> tuple[Tool, ...]:
    from tl_lightning.tools.sandbox import default_toolkits

    return tuple(t for kit in default_toolkits() for t in kit.tools)


@functools.lru_cache(maxsize=1)
def forbidden_names() -> frozenset[str]:
    """Names of every sandbox tool: the quick-start tools, which the corpus must never contain."""
    return frozenset(t.name for t in _sandbox_tools())


@functools.lru_cache(maxsize=1)
def forbidden_schemas() -> frozenset[str]:
    """:func:`schema_key` of every sandbox tool."""
    return frozenset(schema_key(t) for t in _sandbox_tools())


def _params(noun: str, rng: random.Random) -> tuple[list[Param], int]:
    """1-4 parameters: often ``<noun>_id`` or ``<noun>_name`` first, then catalog ones; 1-3 of them required."""
    own = [Param(f"{noun}_id", "string", "id", f"Identifier of the {noun}."),
           Param(f"{noun}_name", "string", "title", f"Name of the {noun}.")]
    n = rng.choice((1, 2, 2, 3, 3, 4))
    params = [own[0] if rng.random() < 0.6 else own[1]] if rng.random() < 0.7 else []
    for name, json_type, kind, desc in rng.sample(PARAMS, n):
        if len(params) < n and all(p.name != name for p in params):
            params.append(Param(name, json_type, kind, desc))
    n_required = rng.randint(1, len(params)) if rng.random() < 0.8 else len(params)
    return params, n_required


def _description(verb: str, obj: str, rng: random.Random) -> str:
    frames = ("{V} the {o}.", "{V} the {o} of an entry.", "{V} {o} records.", "Use this to {v} the {o}.",
              "{V} the {o}; returns a JSON object.")
    return rng.choice(frames).format(V=verb.capitalize(), v=verb, o=obj)


def _make(name: str, verb: str, noun: str, obj: str, rng: random.Random) -> Api:
    params, n_required = _params(noun, rng)
    props = {p.name: p.schema() for p in params}
    tool = Tool(name, _description(verb, obj, rng), {"type": "object", "properties": props},
                tuple(p.name for p in params[:n_required]))
    return Api(tool, verb, obj, tuple(params), n_required, noun[:3].upper())


def _family(rng: random.Random, taken: set[str]) -> list[Api]:
    """2-4 tools sharing a prefix: ``verb_noun_<qualifier>`` (70%) or ``verb_<noun>`` (30%)."""
    verb = rng.choice(VERBS)
    size = rng.choice((2, 2, 3, 3, 4))
    out: list[Api] = []
    if rng.random() < 0.7:
        noun = rng.choice(NOUNS)
        for qual in rng.sample(QUALIFIERS, size):
            out.append(_make(f"{verb}_{noun}_{qual}", verb, noun, f"{noun} {qual}", rng))
    else:
        for noun in rng.sample(NOUNS, size):
            out.append(_make(f"{verb}_{noun}", verb, noun, noun, rng))
    bad_names, bad_schemas = forbidden_names(), forbidden_schemas()
    return [a for a in out if a.name not in taken and a.name not in bad_names and schema_key(a.tool) not in bad_schemas]


def _single(rng: random.Random, taken: set[str]) -> list[Api]:
    """A tool without siblings (``verb_noun``), as most prompts also list."""
    verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
    api = _make(f"{verb}_{noun}", verb, noun, noun, rng)
    ok = api.name not in taken and api.name not in forbidden_names() and schema_key(api.tool) not in forbidden_schemas()
    return [api] if ok else []


def draw_apis(rng: random.Random) -> list[list[Api]]:
    """The APIs of one document: 1-3 families plus 0-3 single tools, as groups (a single tool is a group of one).

    Names are unique within the document and never a sandbox tool's name or schema.
    """
    groups: list[list[Api]] = []
    taken: set[str] = set()
    n_families, n_single = rng.randint(1, 3), rng.randint(0, 3)
    for make, count in ((_family, n_families), (_single, n_single)):
        for _ in range(count):
            group = make(rng, taken)
            if group:
                taken.update(a.name for a in group)
                groups.append(group)
    if not groups:  # every draw collided: vanishingly rare, but a document needs a tool
        return draw_apis(rng)
    return groups
