"""Multi-turn episodes: model output -> parse -> execute -> feedback -> next prompt, at most 9 turns.

One :class:`Episode` per task, advanced one model output at a time, so the test stage can batch
the prompts of many tasks and ``score`` can replay recorded outputs through the same code::

    ep = Episode(task, call_format="react")
    while not ep.done:
        ep.step(model(ep.trajectory()))      # a Trajectory: the task plus the steps so far
    ep.result()                               # EpisodeResult: calls, categories, finished

Calls are executed by the task's environment: :class:`~tl_lightning.tools.simulator.SchemaSimulator`
over the task's tools (``environment="schema"``, ToolEyes) or a
:class:`~tl_lightning.tools.sandbox.Sandbox` over the named toolkits (``"sandbox"``, the synthetic
set). Each call's category is the environment's own verdict on it (its ground truth); feedback
recorded in a trace file is classified with the taxonomy classifier instead.

Rules (docs/method.md#evaluation, ToolEyes): an episode ends when the model calls ``finish`` (valid answer) or
after ``max_turns`` model turns. An output with no parseable call counts as one failed call of
category ``format_error`` (a CE) and ends the episode: greedy decoding of an unchanged prompt would
only repeat it. So does a call that cannot be executed at all (a pathological value the environment
raises on): one bad output is that task's format error, never the end of a run.

DE and CE are counted per call by :func:`count_call_errors`, the one rule both the report and the
:class:`~tl_lightning.evaluation.metrics.MultiTurnErrorRates` torchmetric use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Step, Trajectory
from tl_lightning.evaluation.scoring import MODEL_OUTPUT_ERRORS, format_error, parse_output
from tl_lightning.tools.tasks import check_success

__all__ = [
    "DE_CATEGORIES",
    "FORMAT_ERROR",
    "Episode",
    "EpisodeResult",
    "TurnRecord",
    "count_call_errors",
    "make_environment",
]

#: Documentation-understanding errors (DE): the model misread the tool documentation.
DE_CATEGORIES = frozenset(
    {FeedbackCategory.TOOL_HALLUCINATION, FeedbackCategory.PARAMETER_HALLUCINATION, FeedbackCategory.PARAMETER_MISSING}
)
#: The category of a model turn with no parseable call, or of a call that could not be executed.
FORMAT_ERROR = "format_error"


def count_call_errors(categories: Iterable[str]) -> tuple[int, int]:
    """(DE, CE) among per-call categories (:class:`FeedbackCategory` values or ``format_error``).

    DE: tool hallucination, parameter hallucination, missing parameter. CE: every other failed call,
    format errors and tool instability (a failed execution) included. ``all_right`` is neither.
    """
    de = ce = 0
    for c in categories:
        if c == FORMAT_ERROR:
            ce += 1
        elif FeedbackCategory(c) in DE_CATEGORIES:
            de += 1
        elif FeedbackCategory(c).is_error:
            ce += 1
    return de, ce


def make_environment(task: MultiTurnTask, seed: int = 0):
    """The executor for ``task``: a SchemaSimulator over its tools, or a Sandbox over its toolkits."""
    from tl_lightning.tools.sandbox import Sandbox
    from tl_lightning.tools.simulator import SchemaSimulator

    if task.environment == "schema":
        return SchemaSimulator(task.tools, seed=seed)
    from tl_lightning.tools.toolkits import TOOLKITS

    by_name = {cls.name: cls for cls in TOOLKITS}
    names = task.meta.get("toolkits") or []
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"task {task.id}: unknown toolkit(s) {unknown}; have {sorted(by_name)}")
    env = Sandbox([by_name[n] for n in names], seed=seed)
    env.reset(task.meta.get("initial_state") or None)
    return env


@dataclass
class TurnRecord:
    """One model turn: its raw output, the calls parsed from it, and per call the feedback and category."""

    output: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class EpisodeResult:
    """What one task's episode produced: the record the report, the predictions file and the
    :class:`~tl_lightning.evaluation.metrics.MultiTurnErrorRates` metric all read.

    ``finished``: the model itself ended with ``finish`` within the turn limit (VA). ``success``: the
    sandbox task's own check (None: no check). ``categories``: one per call, in order.
    """

    id: str
    index: int
    scenario: str
    turns: list[TurnRecord]
    finished: bool
    final_answer: str | None = None
    success: bool | None = None
    truncated_outputs: int = 0

    @property
    def categories(self) -> list[str]:
        return [c for t in self.turns for c in t.categories]

    @property
    def n_calls(self) -> int:
        return len(self.categories)

    @property
    def n_de(self) -> int:
        return count_call_errors(self.categories)[0]

    @property
    def n_ce(self) -> int:
        return count_call_errors(self.categories)[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(n_calls=self.n_calls, n_de=self.n_de, n_ce=self.n_ce)
        return d


class Episode:
    """A task being played: holds the environment and the steps so far.

    ``call_format`` is what :func:`parse_calls` parses outputs as (the template's ``call_format``).
    ``seed`` seeds the environment (simulated results, sandbox instability).
    """

    def __init__(self, task: MultiTurnTask, call_format: str = "auto", seed: int = 0) -> None:
        self.task = task
        self.call_format = call_format
        self.env = make_environment(task, seed=seed)
        self.steps: list[Step] = []
        self.turns: list[TurnRecord] = []
        self.ended_on_error = False

    @property
    def finished(self) -> bool:
        return bool(self.env.done)

    @property
    def done(self) -> bool:
        return self.finished or self.ended_on_error or len(self.turns) >= self.task.max_turns

    def trajectory(self) -> Trajectory:
        """The task and the steps so far: what the template renders as the next prompt."""
        traj = self.task.as_trajectory()
        traj.steps = list(self.steps)
        return traj

    def step(self, output: str, feedback: list[str] | None = None) -> TurnRecord:
        """Take one model output. Executes its calls unless ``feedback`` (recorded, one per call) is given."""
        if self.done:
            raise RuntimeError(f"task {self.task.id}: episode is over")
        parsed = parse_output(output, self.call_format)
        if not parsed.ok:
            return self._end_on_error(TurnRecord(output=output, categories=[FORMAT_ERROR], error=parsed.error or "no call"))
        if feedback is not None and len(feedback) != len(parsed.calls):
            # a trace may stop at a finish call: the calls after it were never executed
            cut_at_finish = 0 < len(feedback) < len(parsed.calls) and parsed.calls[len(feedback) - 1].name == FINISH_TOOL
            if not cut_at_finish:
                raise ValueError(f"task {self.task.id}: {len(parsed.calls)} call(s) but {len(feedback)} recorded feedback message(s)")
        texts, cats = [], []
        for k, call in enumerate(parsed.calls):
            if self.env.done or (feedback is not None and k >= len(feedback)):  # calls after finish are not executed
                break
            try:
                if feedback is None:
                    outcome = self.env.execute_outcome(call)
                    texts.append(outcome.text)
                    cats.append(FeedbackCategory(outcome.category).value)
                else:
                    texts.append(feedback[k])
                    cats.append(_classify(feedback[k]).value)
                    if call.name == FINISH_TOOL and cats[-1] == FeedbackCategory.ALL_RIGHT.value:
                        self.env.done, self.env.final_answer = True, str(call.arguments.get("answer", ""))
            except MODEL_OUTPUT_ERRORS as e:
                reason = format_error(e)
                tried = [c.to_dict() for c in parsed.calls[: k + 1]]
                del texts[k:], cats[k:]
                return self._end_on_error(TurnRecord(output, tried, [*texts, reason], [*cats, FORMAT_ERROR], error=reason))
        calls = parsed.calls[: len(texts)]
        turn = TurnRecord(output=output, calls=[c.to_dict() for c in calls], feedback=texts, categories=cats)
        self.turns.append(turn)
        first_error = next((FeedbackCategory(c) for c in cats if c != FeedbackCategory.ALL_RIGHT.value), FeedbackCategory.ALL_RIGHT)
        self.steps.append(Step(calls=list(calls), text=parsed.thought or "", feedback=texts, category=first_error))
        return turn

    def _end_on_error(self, turn: TurnRecord) -> TurnRecord:
        self.turns.append(turn)
        self.ended_on_error = True
        return turn

    def result(self) -> EpisodeResult:
        success = None
        if self.task.environment == "sandbox" and "success" in self.task.meta:
            success = bool(check_success(self.task.meta, self.env, getattr(self.env, "final_answer", None)))
        return EpisodeResult(
            id=self.task.id,
            index=self.task.index,
            scenario=self.task.scenario,
            turns=list(self.turns),
            finished=self.finished,
            final_answer=getattr(self.env, "final_answer", None),
            success=success,
        )


def _classify(text: str) -> FeedbackCategory:
    from tl_lightning.data.feedback import classify_feedback

    return classify_feedback(text)
