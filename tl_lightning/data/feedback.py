"""Tool feedback -> one of the seven error categories of docs/method.md#feedback-categories.

The official TL-Training code finds erroneous calls by substring match after lower-casing and
keeping letters and digits only. We keep that rule for the official substrings, but the patterns
are data (``feedback_patterns.yaml``, overridable) and structured feedback is judged by its
structure: a JSON object is an error only when a key says so, so a successful payload such as
``{"status": "ok", "errors": [], "error_rate": 0.1}`` is never mistaken for an error (after the
official normalisation, ``"error":`` reduces to ``error`` and would match it).

Usage::

    classify_feedback("get_news() got an unexpected keyword argument 'sortBy'")
    # FeedbackCategory.PARAMETER_HALLUCINATION
    clf = FeedbackClassifier.from_yaml("my_patterns.yaml")   # `extends: default` to add rules
    classify_feedback(text, clf)
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tl_lightning.data.schema import FeedbackCategory, Step

__all__ = [
    "DEFAULT_PATTERNS",
    "FeedbackClassifier",
    "FeedbackMatch",
    "FeedbackRule",
    "StructuredErrorSpec",
    "classify_feedback",
    "default_classifier",
    "normalize_feedback",
    "resolved_category",
    "step_category",
    "step_is_error",
]

#: The packaged default rules.
DEFAULT_PATTERNS = "feedback_patterns.yaml"

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# Parsing a huge literal only to learn it is a success payload is not worth the time.
_MAX_STRUCTURED_CHARS = 200_000


def normalize_feedback(text: str) -> str:
    """The official normalisation: lower-case, letters and digits only (``"Is not  defined!"`` -> ``"isnotdefined"``)."""
    return _NON_ALNUM.sub("", text.lower())


@dataclass(frozen=True)
class FeedbackRule:
    """One ordered rule: the feedback belongs to ``category`` if any substring (after
    :func:`normalize_feedback` of both sides) or any regex (raw text, case-insensitive) matches."""

    category: FeedbackCategory
    substrings: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "category", FeedbackCategory(self.category))
        normalized = tuple(normalize_feedback(s) for s in self.substrings)
        if any(n == "" for n in normalized):
            raise ValueError(
                f"rule {self.name or self.category}: a substring has no letters or digits: {self.substrings}"
            )
        object.__setattr__(self, "_normalized", normalized)
        try:
            compiled = tuple(re.compile(r, re.IGNORECASE) for r in self.regexes)
        except re.error as e:
            raise ValueError(f"rule {self.name or self.category}: bad regex: {e}") from e
        object.__setattr__(self, "_compiled", compiled)
        if not self.substrings and not self.regexes:
            raise ValueError(f"rule {self.name or self.category}: needs at least one substring or regex")

    def matches(self, text: str, normalized: str) -> bool:
        return any(s in normalized for s in self._normalized) or any(r.search(text) for r in self._compiled)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeedbackRule:
        unknown = set(d) - {"category", "substrings", "regexes", "name"}
        if unknown:
            raise ValueError(f"feedback rule has unknown keys {sorted(unknown)}: {dict(d)}")
        if "category" not in d:
            raise ValueError(f"feedback rule has no category: {dict(d)}")
        return cls(
            category=FeedbackCategory(d["category"]),
            substrings=tuple(d.get("substrings") or ()),
            regexes=tuple(d.get("regexes") or ()),
            name=str(d.get("name", "")),
        )


@dataclass(frozen=True)
class StructuredErrorSpec:
    """Which keys of a JSON object make it an error, and where its message is.

    An object is an error when a key of ``error_keys`` holds a non-empty string, list or object
    (or ``true``; numbers such as ``"errors": 0`` are counts, not errors), when a ``status_keys``
    value is in ``failure_status_values``, or when a ``success_keys`` value is ``false``.
    A structured error that no rule matches is ``fallback_category``.
    """

    error_keys: tuple[str, ...] = ("error", "errors", "error_message", "error_msg", "exception")
    status_keys: tuple[str, ...] = ("status",)
    failure_status_values: tuple[str, ...] = ("error", "fail")
    success_keys: tuple[str, ...] = ("success", "ok")
    message_keys: tuple[str, ...] = ("message", "msg", "detail", "details", "reason", "description")
    fallback_category: FeedbackCategory = FeedbackCategory.OTHERS

    def __post_init__(self) -> None:
        cat = FeedbackCategory(self.fallback_category)
        if not cat.is_error:
            raise ValueError("structured.fallback_category must be an error category")
        object.__setattr__(self, "fallback_category", cat)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: StructuredErrorSpec | None = None) -> StructuredErrorSpec:
        base = base or cls()
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"feedback 'structured' section has unknown keys {sorted(unknown)}")
        kw = {k: (v if k == "fallback_category" else tuple(v)) for k, v in d.items()}
        return cls(**{**{f: getattr(base, f) for f in known}, **kw})

    def error_message(self, obj: Mapping[str, Any]) -> str | None:
        """The error text if ``obj`` reports an error, else None."""
        for key in self.error_keys:
            value = obj.get(key)
            if isinstance(value, bool):
                if value:
                    return _message_from(obj, self.message_keys) or key
                continue
            if isinstance(value, (int, float)) or not value:
                continue
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        failed = any(
            isinstance(obj.get(k), str) and obj[k].strip().lower() in self.failure_status_values
            for k in self.status_keys
        ) or any(obj.get(k) is False for k in self.success_keys)
        if failed:
            return _message_from(obj, self.message_keys) or json.dumps(obj, ensure_ascii=False, default=str)
        return None


def _message_from(obj: Mapping[str, Any], keys: Sequence[str]) -> str:
    parts = [
        obj[k] if isinstance(obj[k], str) else json.dumps(obj[k], default=str) for k in keys if obj.get(k)
    ]
    return "\n".join(parts)


@dataclass(frozen=True)
class FeedbackMatch:
    """Why a feedback got its category: the rule that matched (``"structured"``/``"none"`` when none did)
    and the text the rules saw (the error message of a structured error)."""

    category: FeedbackCategory
    rule: str
    message: str


@dataclass(frozen=True)
class FeedbackClassifier:
    """Ordered rules (first match wins) plus the structured-error spec. See ``feedback_patterns.yaml``."""

    rules: tuple[FeedbackRule, ...]
    structured: StructuredErrorSpec = field(default_factory=StructuredErrorSpec)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source: str = "<dict>") -> FeedbackClassifier:
        """Build from the YAML structure; ``extends: default`` prepends these rules to the defaults."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"{source}: feedback patterns must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"version", "extends", "structured", "rules"}
        if unknown:
            raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
        extends = spec.get("extends")
        if extends not in (None, "default"):
            raise ValueError(f"{source}: 'extends' must be 'default' or absent, got {extends!r}")
        base = default_classifier() if extends == "default" else None
        try:
            rules = tuple(FeedbackRule.from_dict(r) for r in spec.get("rules") or ())
            structured = StructuredErrorSpec.from_dict(
                spec.get("structured") or {}, base.structured if base else None
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: {e}") from e
        if base is not None:
            rules = rules + base.rules
        return cls(rules=rules, structured=structured)

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeedbackClassifier:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f) or {}, source=str(path))

    def with_rules(
        self, rules: Iterable[FeedbackRule | Mapping[str, Any]], first: bool = True
    ) -> FeedbackClassifier:
        """A copy with extra rules before (``first=True``, so they win) or after the existing ones."""
        extra = tuple(r if isinstance(r, FeedbackRule) else FeedbackRule.from_dict(r) for r in rules)
        return FeedbackClassifier(
            rules=extra + self.rules if first else self.rules + extra, structured=self.structured
        )

    # ------------------------------------------------------------------ classification
    def explain(self, text: str) -> FeedbackMatch:
        """Classify ``text`` and say which rule decided."""
        if not isinstance(text, str):
            raise TypeError(f"feedback must be a string, got {type(text).__name__}")
        payload = _parse_structured(text)
        if isinstance(payload, str):  # a JSON-encoded string: judge the string itself
            text, payload = payload, None
        if payload is not None:
            if not isinstance(payload, Mapping):  # a list / number / null result is a successful payload
                return FeedbackMatch(FeedbackCategory.ALL_RIGHT, "structured", "")
            message = self.structured.error_message(payload)
            if message is None:
                return FeedbackMatch(FeedbackCategory.ALL_RIGHT, "structured", "")
            rule = self._first_match(message)
            if rule is None:
                return FeedbackMatch(self.structured.fallback_category, "structured", message)
            return FeedbackMatch(rule.category, rule.name or str(rule.category), message)
        rule = self._first_match(text)
        if rule is None:
            return FeedbackMatch(FeedbackCategory.ALL_RIGHT, "none", text)
        return FeedbackMatch(rule.category, rule.name or str(rule.category), text)

    def __call__(self, text: str) -> FeedbackCategory:
        return self.explain(text).category

    def _first_match(self, text: str) -> FeedbackRule | None:
        normalized = normalize_feedback(text)
        return next((r for r in self.rules if r.matches(text, normalized)), None)


def _parse_structured(text: str) -> Any:
    """The JSON value (or Python literal, as in ``{'error': ...}``) ``text`` holds, else None.

    Only JSON objects/arrays/strings count as structured: a bare number or word stays text.
    Python literals are read with ``ast.literal_eval`` (a pure literal walk, never ``eval``).
    """
    s = text.strip()
    if not s or s[0] not in "{[\"'" or len(s) > _MAX_STRUCTURED_CHARS:
        return None
    try:
        return json.loads(s)
    except ValueError:
        pass
    except RecursionError:  # nested deeper than the JSON decoder goes: no error object is that deep
        return None
    if s[0] in "{[":
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        return value if isinstance(value, (dict, list)) else None
    return None


@lru_cache(maxsize=1)
def default_classifier() -> FeedbackClassifier:
    """The packaged rules (``tl_lightning/data/feedback_patterns.yaml``), loaded once."""
    text = resources.files("tl_lightning.data").joinpath(DEFAULT_PATTERNS).read_text(encoding="utf-8")
    return FeedbackClassifier.from_dict(yaml.safe_load(text), source=DEFAULT_PATTERNS)


def classify_feedback(text: str, classifier: FeedbackClassifier | None = None) -> FeedbackCategory:
    """The category of one tool feedback (``all_right`` when nothing marks it as an error)."""
    return (classifier or default_classifier()).explain(text).category


def step_category(
    feedbacks: Sequence[str], classifier: FeedbackClassifier | None = None
) -> FeedbackCategory | None:
    """A step's category: the first error among its calls' feedback, else ``all_right``.

    None for a step with no feedback yet (an unexecuted target step), matching ``Step.category``.
    """
    if isinstance(feedbacks, str):
        raise TypeError("step_category takes a list of feedback strings, one per call")
    if not feedbacks:
        return None
    clf = classifier or default_classifier()
    for text in feedbacks:
        category = clf.explain(text).category
        if category.is_error:
            return category
    return FeedbackCategory.ALL_RIGHT


def resolved_category(step: Step) -> FeedbackCategory | None:
    """A step's category: the one it carries, else the one its feedback classifies as (default rules).

    None for a step with no category and no feedback (an unexecuted target step). Readers set the
    category; this covers steps built in code, so that encoding and data reports agree with them.
    """
    if step.category is None and step.feedback:
        return step_category(step.feedback)
    return step.category


def step_is_error(step: Step, error_categories: frozenset[FeedbackCategory] | None = None) -> bool:
    """Whether MAE treats the step as erroneous: its :func:`resolved_category` is an error, or with
    ``error_categories``, one of those."""
    category = resolved_category(step)
    if category is None:
        return False
    return category.is_error if error_categories is None else category in error_categories
