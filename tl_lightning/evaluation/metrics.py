"""Torchmetrics for tool use: single-turn TS/PI/CF and multi-turn DE/CE/VA (docs/method.md#evaluation).

Both keep only sum-reduced count tensors, so they sync across DDP processes by summation and give
the same numbers on 1 or N processes. The per-case maths lives in :mod:`tl_lightning.evaluation.scoring`
(:func:`~tl_lightning.evaluation.scoring.judge_case`) and the per-call DE/CE rule in
:func:`tl_lightning.evaluation.multiturn.count_call_errors`, which the report uses too.

A rate over nothing (no cases, no calls, an empty scenario) is 0.0, not NaN, as in ``report.json``:
the report must stay strict JSON (NaN is not JSON) and its published numbers use 0.0, and the count
logged next to each rate (``n``, ``calls``) tells an empty set from a 0% one.

Use one object per stage and log the dict from ``compute()``::

    acc = ToolCallAccuracy.for_cases(cases, mode="official")
    acc.update([parse_calls(text, "react") for text in outputs], cases)
    acc.compute()  # {"TS": 83.8, "PI": ..., "CF": ..., "n": 105, "scenario/TG/TS": ..., "category/correct": ...}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torchmetrics import Metric

from tl_lightning.data.cases import EvalCase
from tl_lightning.evaluation.multiturn import EpisodeResult
from tl_lightning.evaluation.scoring import SCORING_MODES, Prediction, judge_case
from tl_lightning.rewards import RewardCategory

__all__ = ["MultiTurnErrorRates", "ToolCallAccuracy"]

_LEVELS = ("TS", "PI", "CF")
_CATEGORIES = list(RewardCategory)


def _percent(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """100 * num / den in float64, elementwise; 0.0 where den is 0 (see the module docstring)."""
    return 100.0 * num.to(torch.float64) / den.to(torch.float64).clamp(min=1)


class ToolCallAccuracy(Metric):
    """TS/PI/CF in percent of cases, overall, per scenario and per IRM outcome category.

    Args:
        mode: ``"official"``, ``"corrected"`` or ``"bfcl"`` (see :mod:`tl_lightning.evaluation.scoring`).
        scenarios: the scenario names to break down by. The list fixes the state shapes, so it must
            be the same on every process; a case whose scenario is not listed is an error (an empty
            scenario is counted overall only). ``None``: no per-scenario breakdown.

    States (all summed across processes): ``correct`` [3] (TS, PI, CF counts), ``total`` [],
    ``scenario_correct`` [S, 3], ``scenario_total`` [S], ``categories`` [len(RewardCategory)].

    ``compute()`` returns ``TS``/``PI``/``CF`` (percent), ``n`` (cases), ``scenario/<name>/TS`` etc.,
    ``scenario/<name>/n``, and ``category/<value>`` (percent of cases with that outcome).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, mode: str = "official", scenarios: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in SCORING_MODES:
            raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
        self.mode = mode
        self.scenarios = list(dict.fromkeys(scenarios or ()))
        self._scenario_index = {name: i for i, name in enumerate(self.scenarios)}
        s = len(self.scenarios)
        self.add_state("correct", torch.zeros(3, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("scenario_correct", torch.zeros(s, 3, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("scenario_total", torch.zeros(s, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("categories", torch.zeros(len(_CATEGORIES), dtype=torch.long), dist_reduce_fx="sum")

    @classmethod
    def for_cases(cls, cases: Iterable[EvalCase], mode: str = "official", **kwargs) -> ToolCallAccuracy:
        """A metric whose scenario list is the cases' scenarios in first-seen order (pass the full
        set, not one process's shard, so every process gets the same list)."""
        return cls(mode=mode, scenarios=[c.scenario for c in cases if c.scenario], **kwargs)

    def update(self, preds: Sequence[Prediction], cases: Sequence[EvalCase]) -> None:
        """Score ``preds[i]`` against ``cases[i]``."""
        if len(preds) != len(cases):
            raise ValueError(f"got {len(preds)} predictions for {len(cases)} cases")
        correct = torch.zeros(3, dtype=torch.long)
        scen_correct = torch.zeros_like(self.scenario_correct, device="cpu")
        scen_total = torch.zeros_like(self.scenario_total, device="cpu")
        cats = torch.zeros(len(_CATEGORIES), dtype=torch.long)
        for pred, case in zip(preds, cases, strict=True):
            judged = judge_case(pred, case, self.mode)  # an unscoreable output is a format error, never fatal
            verdict = judged.verdict
            row = torch.tensor([verdict.TS, verdict.PI, verdict.CF], dtype=torch.long)
            correct += row
            cats[_CATEGORIES.index(judged.category)] += 1
            if case.scenario and self.scenarios:
                if case.scenario not in self._scenario_index:
                    raise ValueError(
                        f"case {case.id!r}: scenario {case.scenario!r} is not among the metric's scenarios {self.scenarios}"
                    )
                i = self._scenario_index[case.scenario]
                scen_correct[i] += row
                scen_total[i] += 1
        self.correct += correct.to(self.correct.device)
        self.total += len(cases)
        self.scenario_correct += scen_correct.to(self.scenario_correct.device)
        self.scenario_total += scen_total.to(self.scenario_total.device)
        self.categories += cats.to(self.categories.device)

    def compute(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        pct = _percent(self.correct, self.total.expand(3))
        for k, level in enumerate(_LEVELS):
            out[level] = pct[k]
        out["n"] = self.total.clone()
        for i, name in enumerate(self.scenarios):
            spct = _percent(self.scenario_correct[i], self.scenario_total[i].expand(3))
            for k, level in enumerate(_LEVELS):
                out[f"scenario/{name}/{level}"] = spct[k]
            out[f"scenario/{name}/n"] = self.scenario_total[i].clone()
        cpct = _percent(self.categories, self.total.expand(len(_CATEGORIES)))
        for k, cat in enumerate(_CATEGORIES):
            out[f"category/{cat.value}"] = cpct[k]
        return out


class MultiTurnErrorRates(Metric):
    """DE and CE in percent of all calls, VA in percent of tasks (docs/method.md#evaluation).

    ``update`` takes :class:`~tl_lightning.evaluation.multiturn.EpisodeResult` records, whose calls
    are counted by :func:`~tl_lightning.evaluation.multiturn.count_call_errors`, as in the report.

    States (summed across processes): ``calls``, ``de_calls``, ``ce_calls``, ``tasks``, ``finished``.
    ``compute()`` returns ``DE``, ``CE``, ``VA`` and ``n`` (tasks), ``calls``.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("calls", "de_calls", "ce_calls", "tasks", "finished"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, results: Sequence[EpisodeResult]) -> None:
        self.calls += sum(r.n_calls for r in results)
        self.de_calls += sum(r.n_de for r in results)
        self.ce_calls += sum(r.n_ce for r in results)
        self.tasks += len(results)
        self.finished += sum(bool(r.finished) for r in results)

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "DE": _percent(self.de_calls, self.calls),
            "CE": _percent(self.ce_calls, self.calls),
            "VA": _percent(self.finished, self.tasks),
            "n": self.tasks.clone(),
            "calls": self.calls.clone(),
        }
