"""What a scenario is.

A scenario asks a question with slot values drawn from a split's pools (:mod:`tl_lightning.synthetic.pools`), makes
the gold calls through a :class:`~tl_lightning.synthetic.scenario_run.ScenarioRun` (each call really runs in the
sandbox, later calls use earlier feedback), finishes with an answer built from the feedback, and states a
machine-checkable success condition. ``tools`` lists the gold calls in order; the generator checks it against what
the scenario did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tl_lightning.synthetic.scenario_run import ScenarioRun

__all__ = ["Scenario", "scenario"]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: ``run`` plays it on a :class:`ScenarioRun`; ``tools`` are its gold calls in order."""

    name: str
    tools: tuple[str, ...]
    run: Callable[[ScenarioRun], None]


def scenario(*tools: str) -> Callable[[Callable[[ScenarioRun], None]], Scenario]:
    """Turn a scenario function into a :class:`Scenario` with gold calls ``tools`` (nothing is registered:
    each scenario module lists its scenarios in ``SCENARIOS``, so the order never depends on imports)."""

    def make(fn: Callable[[ScenarioRun], None]) -> Scenario:
        return Scenario(fn.__name__, tools, fn)

    return make
