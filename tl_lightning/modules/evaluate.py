"""``TLEvalModule``: evaluate a model on a test set with ``python -m tl_lightning test``.

    python -m tl_lightning test --config configs/eval/rotbench.yaml --model.init_args.model out/last.ckpt
    python -m tl_lightning test --config configs/eval/tooleyes.yaml --model.init_args.model /models/my-hf-model \\
        --model.init_args.template chat_template --data.init_args.limit 20

Single-turn sets: each case's prompt (the template's ``render_prompt``) is continued greedily with a
KV cache, batched and left-padded, up to the end of the turn; the text is parsed into calls and
scored (TS/PI/CF, :class:`~tl_lightning.evaluation.metrics.ToolCallAccuracy`). Multi-turn sets: every task of
the batch plays model -> parse -> execute -> feedback -> model in lockstep for at most
``max_turns`` model turns (:class:`~tl_lightning.evaluation.multiturn.Episode`), then DE/CE/VA
(:class:`~tl_lightning.evaluation.metrics.MultiTurnErrorRates`). One pathological output is a format
error of its own case, never the end of the run.

At the end of the epoch the metric is logged as ``test/...`` and rank zero writes ``predictions.jsonl``
(the ``score`` input format; multi-turn turns carry their feedback) and ``report.json`` / ``report.md``
through :func:`~tl_lightning.evaluation.report.write_eval_outputs`, the code ``score`` reports with,
into ``output_dir`` (default ``<default_root_dir>/eval/<set>``). A run cut short by
``--trainer.limit_test_batches`` reports over the cases it ran and is marked partial.

``predict`` generates the same outputs without scoring them and writes only ``predictions.jsonl`` there,
for ``score`` to read later (e.g. under several scoring modes)::

    python -m tl_lightning predict --config configs/eval/synthetic_single.yaml --model.init_args.model runs/quickstart/hf
    python -m tl_lightning score --benchmark synthetic --data quickstart --category single \
        --predictions runs/quickstart/eval/synthetic-test_single/predictions.jsonl --output out/qs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from transformers import PreTrainedTokenizerBase

from tl_lightning.benchmarks import BenchmarkSet
from tl_lightning.checkpoints import load_pretrained
from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.template_base import TemplateError
from tl_lightning.data.templates import get_template
from tl_lightning.evaluation.metrics import MultiTurnErrorRates, ToolCallAccuracy
from tl_lightning.evaluation.multiturn import Episode, EpisodeResult
from tl_lightning.evaluation.predictions import write_jsonl
from tl_lightning.evaluation.report import (
    EvalOutputs,
    headline,
    prediction_rows,
    turn_trace,
    write_eval_outputs,
)
from tl_lightning.evaluation.scoring import ScoringMode, parse_output
from tl_lightning.generation import generate
from tl_lightning.models import TINY_MODEL

__all__ = ["TLEvalModule"]

#: The template of a model whose source names none (an HF directory, a fresh ``tl-tiny``).
_DEFAULT_TEMPLATE = "python_doc"


class TLEvalModule(LightningModule):
    """Generate, parse, execute and score on a :class:`~tl_lightning.evaluation.datamodule.BenchmarkDataModule`.

    Args:
        model: ``"tl-tiny"`` or another shipped name, an HF hub name / local path, or a tl_lightning
            ``.ckpt``, loaded by :func:`~tl_lightning.checkpoints.load_pretrained`.
        tokenizer: linked from the datamodule by the CLI; ``None`` = the model's own. A ``.ckpt``
            always uses the tokenizer stored in it (the model was trained with it).
        template: ``python_doc`` | ``react`` | ``chat_template`` | ... (how the model was trained to
            read tools); ``None`` = the checkpoint's own, else ``python_doc``. ``template_kwargs``: its options
            (e.g. ``{chat_template_kwargs: {enable_thinking: false}}`` for Qwen3).
        mode: ``official`` | ``corrected`` | ``bfcl`` (single-turn scoring, see :mod:`tl_lightning.evaluation.scoring`).
        call_format: how outputs are parsed; ``None`` = the template's (a chat template's family format).
        max_new_tokens: per model turn. ``max_prompt_length``: longer prompts are an error.
        output_dir: where predictions and reports go. ``seed``: of the multi-turn environments.
        dtype: parameter dtype. ``tiny_config``: ``LlamaConfig`` overrides for ``"tl-tiny"`` (tests).
    """

    def __init__(
        self,
        model: str = TINY_MODEL,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        template: str | None = None,
        mode: ScoringMode = "corrected",
        call_format: str | None = None,
        max_new_tokens: int = 128,
        max_prompt_length: int | None = None,
        output_dir: str | None = None,
        seed: int = 0,
        dtype: str | None = None,
        tiny_config: dict[str, Any] | None = None,
        template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        if str(model).endswith(".ckpt") and tokenizer is not None:
            rank_zero_warn(f"{model}: evaluating with the checkpoint's own tokenizer, not the given one")
            tokenizer = None
        # A model smaller than the tokenizer was not trained with it: refused, never grown with random rows.
        loaded = load_pretrained(model, dtype=dtype, tokenizer=tokenizer, tiny_config=tiny_config, resize_embeddings=False)
        self.model, self.tokenizer = loaded.model.eval(), loaded.tokenizer
        self.template = get_template(template or loaded.template or _DEFAULT_TEMPLATE, **(template_kwargs or {}))
        self.call_format = call_format or self.template.call_format_for(self.tokenizer)
        # One metric per stage; the single-turn one is built in setup, when the set's scenarios are known.
        self.test_accuracy: ToolCallAccuracy | None = None
        self.test_error_rates = MultiTurnErrorRates()
        self.collected = EvalOutputs()
        self.last_report: dict[str, Any] | None = None

    def _benchmark(self) -> BenchmarkSet:
        bench = getattr(getattr(self.trainer, "datamodule", None), "benchmark", None)
        if bench is None:
            raise RuntimeError("TLEvalModule needs a BenchmarkDataModule (its .benchmark gives the cases and data notes)")
        return bench

    def output_path(self) -> Path:
        """Where predictions, reports and the run's ``config.yaml`` go: ``output_dir``, else
        ``<default_root_dir>/eval/<set>`` (so a ``test`` run never overwrites the training run's ``config.yaml``)."""
        return Path(self.hparams.output_dir or Path(self.trainer.default_root_dir) / "eval" / self._benchmark().name)

    def setup(self, stage: str) -> None:
        bench = self._benchmark()
        self._check_names(bench)
        if not bench.multi_turn:
            # Built from the whole set, so every process has the same scenario list (metric state shapes).
            self.test_accuracy = ToolCallAccuracy.for_cases(bench.cases, mode=self.hparams.mode).to(self.device)

    def _check_names(self, bench: BenchmarkSet) -> None:
        """Refuse, before generating anything, a set with a case none of whose acceptable answers the template can
        write so that its parser reads it back: that case would be scored wrong whatever the model does."""
        for case in bench.cases:
            if isinstance(case, MultiTurnTask) or not case.gold:
                continue  # multi-turn calls are judged by executing them, one by one
            problems = []
            for answer in case.gold:
                try:
                    self.template.check_readable([], answer, self.tokenizer)
                    break
                except TemplateError as e:
                    problems.append(str(e))
            else:
                raise ValueError(f"{bench.name} case {case.id}: no acceptable answer can be written by the "
                                 f"{self.template.name} template so that it reads back: {problems[0]}")

    def _generate(self, trajectories) -> list[str]:
        prompts = [self.template.render_prompt(t, self.tokenizer) for t in trajectories]
        out = generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=self.hparams.max_new_tokens,
            stop_strings=[self.template.end_of_turn(self.tokenizer)],
            max_prompt_length=self.hparams.max_prompt_length,
        )
        return out.texts

    def _single_turn(self, cases: list[EvalCase]) -> list[str]:
        texts = self._generate([c.as_trajectory() for c in cases])
        self.collected.outputs.update({c.id: t for c, t in zip(cases, texts, strict=True)})
        return texts

    def _multi_turn(self, tasks: list[MultiTurnTask]) -> list[EpisodeResult]:
        episodes = [Episode(t, call_format=self.call_format, seed=self.hparams.seed) for t in tasks]
        while active := [e for e in episodes if not e.done]:
            for ep, text in zip(active, self._generate([e.trajectory() for e in active]), strict=True):
                ep.step(text)
        results = [e.result() for e in episodes]
        self.collected.episodes.update({r.id: r for r in results})
        return results

    def test_step(self, batch: list[Any], batch_idx: int) -> None:
        items = [x for x in batch if x is not None]  # None pads the set to a multiple of the world size
        if not items:
            return
        if isinstance(items[0], MultiTurnTask):
            self.test_error_rates.update(self._multi_turn(items))
        else:
            texts = self._single_turn(items)
            self.test_accuracy.update([parse_output(t, self.call_format) for t in texts], items)

    def predict_step(self, batch: list[Any], batch_idx: int) -> list[dict[str, Any]]:
        """Generate as ``test`` does, without scoring: the batch's rows in the predictions-file format (a single-turn
        case's ``output``, a multi-turn task's ``turns``), also collected for ``predictions.jsonl``."""
        items = [x for x in batch if x is not None]
        if not items:
            return []
        if isinstance(items[0], MultiTurnTask):
            results = self._multi_turn(items)
            return [{"id": r.id, "index": r.index, "turns": [turn_trace(t) for t in r.turns]} for r in results]
        return [{"id": c.id, "index": c.index, "output": t} for c, t in zip(items, self._single_turn(items), strict=True)]

    def _gathered(self) -> EvalOutputs:
        """Every process's collected outputs, merged (each case is served to exactly one process)."""
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, self.collected)
            return EvalOutputs.merge(parts)
        return self.collected

    def on_predict_epoch_end(self) -> None:
        collected, self.collected = self._gathered(), EvalOutputs()
        if self.trainer.global_rank != 0:
            return
        bench = self._benchmark()
        rows = prediction_rows(bench, collected)
        path = write_jsonl(self.output_path() / "predictions.jsonl", rows)
        rank_zero_info(f"{len(rows)} predictions written to {path}; score them with `python -m tl_lightning score "
                       f"--predictions {path} ...` (or run `test`, which generates and scores in one go)")

    def on_test_epoch_end(self) -> None:
        bench = self._benchmark()
        metric = self.test_error_rates if bench.multi_turn else self.test_accuracy
        values = metric.compute()  # synced across processes by the metric itself
        metric.reset()
        self.log_dict({f"test/{k}": float(v) for k, v in values.items()}, sync_dist=False)
        collected, self.collected = self._gathered(), EvalOutputs()
        if self.trainer.global_rank != 0:
            return
        out_dir = self.output_path()
        limit = self.trainer.limit_test_batches  # an int is a number of batches (1 = one batch), a float a fraction
        full = limit is None or (isinstance(limit, float) and limit >= 1.0)
        why = "not every case was run" if full else f"trainer.limit_test_batches={limit}"
        self.last_report = write_eval_outputs(bench, collected, self.hparams.mode, self.call_format, out_dir, why)
        rank_zero_info(headline(self.last_report))
        rank_zero_info(f"  predictions and report in {out_dir}")
