"""RL data: prompts for single-step RL (:class:`PromptDataModule`) and multi-turn tasks for episodes
(:class:`TaskDataModule`).

Prompts are the paper's PPO data (docs/method.md, "The IRM reward"): every assistant step whose feedback
category is ``all_right`` becomes a prompt, rendered with the same template as SFT (``render_prompt``: the
exact text the model continues), and its calls are the gold answer the IRM reward compares with.

    dm = PromptDataModule(train_path="quickstart", template="python_doc", batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))   # a list of PromptRecord, not tensors

Batches hold distinct prompts (or tasks): a group estimator's G samples of each are drawn by the RL module,
which owns ``group_size``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from tl_lightning.data.paths import resolve_data_path
from tl_lightning.data.schema import FeedbackCategory, Tool, ToolCall, Trajectory
from tl_lightning.data.template_base import Template
from tl_lightning.ranges import check_ranges

__all__ = ["PromptDataModule", "PromptRecord", "PromptReport", "TaskDataModule", "build_prompts", "known_sandbox_tasks"]

logger = logging.getLogger("tl_lightning.rl.data")


@dataclass
class PromptRecord:
    """One RL prompt.

    - ``text``: the rendered context, ending with the opening of the assistant turn to generate.
    - ``context``: the trajectory up to (not including) the step (tools, messages, earlier steps
      with their feedback): what a sandbox replays before executing the generated call.
    - ``gold``: the step's calls; ``tools``: the tools the prompt shows (the template's ``finish``
      tool included), i.e. the ``T`` of the IRM reward.
    - ``call_format``: what ``parse_calls`` parses the generation as; ``end_of_turn``: the
      template's end-of-turn string, where generation stops.
    """

    id: str
    text: str
    context: Trajectory
    gold: list[ToolCall]
    tools: list[Tool]
    step_index: int
    call_format: str
    end_of_turn: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptReport:
    """What :func:`build_prompts` made of the trajectories: counts, and steps left out by reason."""

    n_trajectories: int = 0
    n_steps: int = 0
    n_prompts: int = 0
    skipped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{self.n_prompts} prompts from {self.n_steps} steps of {self.n_trajectories} trajectories (skipped: {why})"


def build_prompts(
    trajectories: Iterable[Trajectory],
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    categories: Sequence[FeedbackCategory | str] = (FeedbackCategory.ALL_RIGHT,),
    max_per_trajectory: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[PromptRecord], PromptReport]:
    """One :class:`PromptRecord` per step whose category is in ``categories`` (default: ``all_right``).

    Steps are skipped, and counted in the report by reason, when their category is another one
    (``category:<name>``) or unknown (``category:unknown``), when the trajectory already gave
    ``max_per_trajectory`` prompts, or when the prompt is longer than ``max_prompt_length`` tokens.
    """
    wanted = {FeedbackCategory(c) for c in categories}
    eot, call_format = template.end_of_turn(tokenizer), template.call_format_for(tokenizer)
    records, report = [], PromptReport()
    for traj in trajectories:
        report.n_trajectories += 1
        taken = 0
        for i, step in enumerate(traj.steps):
            report.n_steps += 1
            if step.category not in wanted:
                report.skipped[f"category:{step.category or 'unknown'}"] += 1
                continue
            if max_per_trajectory is not None and taken >= max_per_trajectory:
                report.skipped["max_per_trajectory"] += 1
                continue
            context = Trajectory(
                id=f"{traj.id}#step{i}", tools=traj.tools, messages=traj.messages, steps=traj.steps[:i],
                system=traj.system, meta=traj.meta,
            )
            text = template.render_prompt(context, tokenizer)
            if max_prompt_length is not None and len(tokenizer(text, add_special_tokens=True)["input_ids"]) > max_prompt_length:
                report.skipped["too_long"] += 1
                continue
            records.append(
                PromptRecord(
                    id=context.id, text=text, context=context, gold=list(step.calls), tools=template.shown_tools(traj),
                    step_index=i, call_format=call_format, end_of_turn=eot, meta={"trajectory_id": traj.id},
                )
            )
            taken += 1
    report.n_prompts = len(records)
    return records, report


def _collate(records: list[Any]) -> list[Any]:
    return records


class PromptDataModule(LightningDataModule):
    """RL prompts from trajectory files (``fit``: train prompts; ``validate``: held-out prompts).

    Args:
        train_path / val_path: trajectory files (any reader format) or ``"quickstart[:split]"``.
        format, strict: passed to :func:`~tl_lightning.data.read_trajectories`.
        template: template name (``python_doc`` | ``react`` | ``chat_template``); ``template_kwargs`` its options.
        tokenizer: a name/path (``"tl-tiny"`` = the shipped one) or a tokenizer object; kept as ``.tokenizer``.
        batch_size: prompts per training batch (per process); a group estimator samples each G times.
        val_batch_size: prompts per validation batch (None: ``batch_size``); validation is greedy, one rollout each.
        max_prompt_length: prompts longer than this many tokens are skipped (and counted).
        max_per_trajectory: at most this many prompts per trajectory (None: every correct step).
        max_train_prompts / max_val_prompts: keep the first N prompts (quick runs, cheap validation).
    """

    def __init__(
        self,
        train_path: str | None = "quickstart",
        val_path: str | None = None,
        format: str = "auto",  # noqa: A002 - mirrors read_trajectories
        template: str = "python_doc",
        template_kwargs: dict[str, Any] | None = None,
        tokenizer: PreTrainedTokenizerBase | str = "tl-tiny",
        batch_size: int = 8,
        num_workers: int = 0,
        strict: bool = True,
        max_prompt_length: int | None = None,
        max_per_trajectory: int | None = None,
        max_train_prompts: int | None = None,
        max_val_prompts: int | None = None,
        val_batch_size: int | None = None,
    ) -> None:
        check_ranges("PromptDataModule: ", locals())
        super().__init__()
        from tl_lightning.data.templates import get_template
        from tl_lightning.tokenization import resolve_tokenizer

        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = resolve_tokenizer(tokenizer)
        self.template = get_template(template, **(template_kwargs or {}))
        self.train_prompts: list[PromptRecord] = []
        self.val_prompts: list[PromptRecord] = []
        self.reports: dict[str, PromptReport] = {}

    def _load(self, path: str, limit: int | None, split: str) -> list[PromptRecord]:
        from tl_lightning.data.readers import read_trajectories

        hp = self.hparams
        trajs = read_trajectories(resolve_data_path(path), format=hp.format, strict=hp.strict)
        records, report = build_prompts(
            trajs, self.template, self.tokenizer,
            max_per_trajectory=hp.max_per_trajectory, max_prompt_length=hp.max_prompt_length,
        )
        if limit is not None:
            report.skipped["max_prompts"] += max(len(records) - limit, 0)
            records = records[:limit]
            report.n_prompts = len(records)
        self.reports[split] = report
        logger.info("%s prompts (%s): %s", split, path, report)
        if not records:
            raise ValueError(f"{path}: no RL prompts ({report})")
        return records

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and hp.train_path and not self.train_prompts:
            self.train_prompts = self._load(hp.train_path, hp.max_train_prompts, "train")
        if stage in (None, "fit", "validate") and hp.val_path and not self.val_prompts:
            self.val_prompts = self._load(hp.val_path, hp.max_val_prompts, "val")

    def _loader(self, records: list[PromptRecord], shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(records, batch_size=batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers, collate_fn=_collate)

    def train_dataloader(self) -> DataLoader:
        if not self.train_prompts:
            raise ValueError("PromptDataModule: no train_path was given (or setup('fit') was not called)")
        return self._loader(self.train_prompts, shuffle=True, batch_size=self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        hp = self.hparams
        return self._loader(self.val_prompts, shuffle=False, batch_size=hp.val_batch_size or hp.batch_size) if self.val_prompts else []


def known_sandbox_tasks(tasks: Sequence[Any]) -> tuple[list[Any], Counter]:
    """The tasks an RL episode can run, and the rest counted by reason: a sandbox task naming a toolkit the
    sandbox does not have (``unknown_toolkit``) would fail at its first call, so it is skipped up front."""
    from tl_lightning.tools.toolkits import TOOLKITS

    known = {cls.name for cls in TOOLKITS}
    kept, skipped = [], Counter()
    for task in tasks:
        if task.environment == "sandbox" and not set(task.meta.get("toolkits") or []) <= known:
            skipped["unknown_toolkit"] += 1
            continue
        kept.append(task)
    return kept, skipped


class TaskDataModule(LightningDataModule):
    """Multi-turn RL tasks (sandbox tasks with a success check, the ``test_multi.jsonl`` format).

    Batches are lists of ``batch_size`` distinct :class:`~tl_lightning.data.cases.MultiTurnTask`; a group
    estimator plays G episodes of each.
    Tasks whose toolkits the sandbox does not know are skipped and counted (``self.skipped``).

    Args:
        train_path / val_path: task files. ``quickstart:train_multi`` holds tasks drawn from the training values;
            never train on a test split, nor on tasks generated as a test split with another seed: those carry
            the test-only slot values.
        tokenizer: a name/path or tokenizer object; kept as ``.tokenizer`` (the CLI links it into the model).
        batch_size / val_batch_size: tasks per training / validation batch (None: ``batch_size``); a group
            estimator plays G episodes of each training task.
        max_train_tasks / max_val_tasks: keep the first N tasks.
        exclude_path: a task file (e.g. ``quickstart:test_multi``) whose user queries must not be trained on:
            train tasks with the same first user message are skipped (``held_out_overlap``).
    """

    def __init__(
        self, train_path: str | None = None, val_path: str | None = None, tokenizer: PreTrainedTokenizerBase | str = "tl-tiny",
        batch_size: int = 8, max_train_tasks: int | None = None, max_val_tasks: int | None = None,
        exclude_path: str | None = None, val_batch_size: int | None = None,
    ) -> None:
        check_ranges("TaskDataModule: ", locals())
        super().__init__()
        from tl_lightning.tokenization import resolve_tokenizer

        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = resolve_tokenizer(tokenizer)
        self.tasks: dict[str, list[Any]] = {}
        self.skipped: dict[str, Counter] = {}

    def _load(self, split: str, path: str, limit: int | None) -> None:
        from tl_lightning.benchmarks.synthetic import read_synthetic_cases

        tasks, self.skipped[split] = known_sandbox_tasks(read_synthetic_cases(path, category="multi").cases)
        if split == "train" and self.hparams.exclude_path:
            held_out = {t.messages[0].content for t in read_synthetic_cases(self.hparams.exclude_path, category="multi").cases}
            self.skipped[split]["held_out_overlap"] = sum(t.messages[0].content in held_out for t in tasks)
            tasks = [t for t in tasks if t.messages[0].content not in held_out]
        tasks = tasks[:limit]
        logger.info("%s tasks (%s): %d kept, skipped %s", split, path, len(tasks), dict(self.skipped[split]))
        if not tasks:
            raise ValueError(f"{path}: no runnable multi-turn tasks (skipped: {dict(self.skipped[split])})")
        self.tasks[split] = tasks

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and hp.train_path and "train" not in self.tasks:
            self._load("train", hp.train_path, hp.max_train_tasks)
        if stage in (None, "fit", "validate") and hp.val_path and "val" not in self.tasks:
            self._load("val", hp.val_path, hp.max_val_tasks)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.tasks["train"], batch_size=self.hparams.batch_size, shuffle=True, collate_fn=_collate)

    def val_dataloader(self) -> DataLoader | list:
        tasks, hp = self.tasks.get("val"), self.hparams
        return DataLoader(tasks, batch_size=hp.val_batch_size or hp.batch_size, collate_fn=_collate) if tasks else []
