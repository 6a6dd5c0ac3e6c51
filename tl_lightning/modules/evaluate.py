"""``TLEvalModule``: evaluate a model on a test set with ``python -m tl_lightning test``.

    python -m tl_lightning test --config configs/eval/rotbench.yaml --model.init_args.model out/last.ckpt
    python -m tl_lightning test --config configs/eval/tooleyes.yaml --model.init_args.model /models/my-hf-model \\
        --model.init_args.template chat_template --data.init_args.limit 20

Single-turn sets: each case's prompt (the template's ``render_prompt``) is continued greedily with a
KV cache, batched and left-padded, up to the end of the turn; the text is parsed into calls and
scored (TS/PI/CF, :class:`~tl_lightning.evaluation.metrics.ToolCallAccuracy`). Multi-turn sets: every task of
the batch plays model -> parse -> execute -> feedback -> model in lockstep for at most
``max_turns`` model turns (:class:`~tl_lightning.evaluation.multiturn.Episode`), then DE/CE/VA
(:class:`~tl_lightning.evaluation.metrics.MultiTurnErrorRates`).

At the end of the epoch, rank zero writes ``predictions.jsonl`` (the ``score`` input format;
multi-turn turns carry their feedback) and ``report.json`` / ``report.md`` through the same code as
``python -m tl_lightning score``, into ``output_dir`` (default ``<default_root_dir>/eval/<set>``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.templates import get_template
from tl_lightning.evaluation.multiturn import FORMAT_ERROR, Episode, EpisodeResult
from tl_lightning.evaluation.predictions import write_jsonl
from tl_lightning.evaluation.report import headline, multi_turn_report, single_turn_report, write_report
from tl_lightning.generation import generate
from tl_lightning.evaluation.metrics import EpisodeRecord, MultiTurnErrorRates, ToolCallAccuracy
from tl_lightning.models import TINY_MODEL, load_causal_lm, resolve_tokenizer
from tl_lightning.tools.calls import parse_calls

__all__ = ["TLEvalModule", "load_eval_model"]

# Attribute names under which tl_lightning modules keep the causal LM (SFT: model, PPO: actor).
_HPARAM_AND_PREFIX = (("model", "model."), ("actor", "actor."))


def _from_checkpoint(path: str, dtype: str | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from tl_lightning.checkpoints import tokenizer_from_state

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "tokenizer" not in ckpt:
        raise ValueError(f"{path}: not a tl_lightning checkpoint (it carries no tokenizer)")
    tokenizer = tokenizer_from_state(ckpt["tokenizer"])
    hp = ckpt.get("hyper_parameters", {})
    found = [
        (key, {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
        for key, prefix in _HPARAM_AND_PREFIX
    ]
    key, weights = next(((k, w) for k, w in found if w), (None, {}))
    if not weights:
        raise ValueError(f"{path}: no model weights (keys starting with 'model.' or 'actor.')")
    base = hp.get(key, TINY_MODEL)
    if str(base).endswith(".ckpt"):  # e.g. PPO started from an SFT checkpoint: same architecture
        model, _ = _from_checkpoint(base, dtype)
    else:
        model = load_causal_lm(base, tokenizer=tokenizer, dtype=dtype or hp.get("dtype"), lora=hp.get("lora"), tiny_config=hp.get("tiny_config"))
    model.load_state_dict(weights)
    return model, tokenizer


def load_eval_model(
    model: str, tokenizer: PreTrainedTokenizerBase | str | None = None, dtype: str | None = None, tiny_config: dict[str, Any] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode, tokenizer) from ``"tl-tiny"``, an HF name/path, or a tl_lightning ``.ckpt``.

    A checkpoint's own tokenizer wins over ``tokenizer`` (the model was trained with it).
    """
    if str(model).endswith(".ckpt"):
        lm, tok = _from_checkpoint(str(model), dtype)
        if tokenizer is not None and not isinstance(tokenizer, str) and len(tokenizer) != len(tok):
            warnings.warn(f"{model}: using the checkpoint's tokenizer ({len(tok)} tokens), not the given one ({len(tokenizer)})", stacklevel=2)
        return lm.eval(), tok
    tok = resolve_tokenizer(tokenizer, default=model)
    return load_causal_lm(model, tokenizer=tok, dtype=dtype, tiny_config=tiny_config).eval(), tok


class TLEvalModule(LightningModule):
    """Generate, parse, execute and score on a :class:`~tl_lightning.evaluation.datamodule.BenchmarkDataModule`.

    Args:
        model: ``"tl-tiny"``, an HF hub name / local path, or a tl_lightning ``.ckpt``.
        tokenizer: linked from the datamodule by the CLI; ``None`` = the model's own.
        template: ``python_doc`` | ``react`` | ``chat_template`` (how the model was trained to read tools).
        mode: ``official`` | ``corrected`` | ``bfcl`` (single-turn scoring, see :mod:`tl_lightning.evaluation.scoring`).
        call_format: how outputs are parsed; ``None`` = the template's ``call_format``.
        max_new_tokens: per model turn. ``max_prompt_length``: longer prompts are an error.
        output_dir: where predictions and reports go. ``seed``: of the multi-turn environments.
    """

    def __init__(
        self,
        model: str = TINY_MODEL,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        template: str = "python_doc",
        mode: str = "corrected",
        call_format: str | None = None,
        max_new_tokens: int = 128,
        max_prompt_length: int | None = None,
        output_dir: str | None = None,
        seed: int = 0,
        dtype: str | None = None,
        tiny_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.model, self.tokenizer = load_eval_model(model, tokenizer, dtype, tiny_config)
        self.template = get_template(template)
        self.call_format = call_format or self.template.call_format
        self.accuracy: ToolCallAccuracy | None = None
        self.error_rates = MultiTurnErrorRates()
        self._outputs: dict[str, str] = {}
        self._episodes: list[EpisodeResult] = []
        self.last_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ setup
    def _benchmark(self):
        dm = getattr(self.trainer, "datamodule", None)
        bench = getattr(dm, "benchmark", None)
        if bench is None:
            raise RuntimeError("TLEvalModule needs a BenchmarkDataModule (its .benchmark gives the cases and data notes)")
        return bench

    def setup(self, stage: str) -> None:
        bench = self._benchmark()
        if not bench.multi_turn:
            # Built from the whole set, so every process has the same scenario list (metric state shapes).
            self.accuracy = ToolCallAccuracy.for_cases(bench.cases, mode=self.hparams.mode).to(self.device)

    # ------------------------------------------------------------------ generation
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

    def _single_turn(self, cases: list[EvalCase]) -> None:
        texts = self._generate([c.as_trajectory() for c in cases])
        self.accuracy.update([parse_calls(t, self.call_format) for t in texts], cases)
        self._outputs.update({c.id: t for c, t in zip(cases, texts, strict=True)})

    def _multi_turn(self, tasks: list[MultiTurnTask]) -> None:
        episodes = [Episode(t, call_format=self.call_format, seed=self.hparams.seed) for t in tasks]
        while True:
            active = [e for e in episodes if not e.done]
            if not active:
                break
            for ep, text in zip(active, self._generate([e.trajectory() for e in active]), strict=True):
                ep.step(text)
        results = [e.result() for e in episodes]
        self.error_rates.update(
            [EpisodeRecord.from_categories([None if c == FORMAT_ERROR else c for c in r.categories], r.finished) for r in results]
        )
        self._episodes.extend(results)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # cases are Python objects (frozen Tool dataclasses); prompts are tokenized on generation

    def test_step(self, batch: list[Any], batch_idx: int) -> None:
        items = [x for x in batch if x is not None]  # None pads the set to a multiple of the world size
        if not items:
            return
        if isinstance(items[0], MultiTurnTask):
            self._multi_turn(items)
        else:
            self._single_turn(items)

    def predict_step(self, batch: list[Any], batch_idx: int) -> list[dict[str, Any]]:
        """Raw outputs in the predictions-file format (single-turn sets)."""
        items = [x for x in batch if x is not None]
        texts = self._generate([c.as_trajectory() for c in items]) if items else []
        return [{"id": c.id, "index": c.index, "output": t} for c, t in zip(items, texts, strict=True)]

    # ------------------------------------------------------------------ epoch end
    def _gather(self, obj: Any) -> list[Any]:
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, obj)
            return gathered
        return [obj]

    def on_test_epoch_end(self) -> None:
        bench = self._benchmark()
        if bench.multi_turn:
            metrics = self.error_rates.compute()
            self.error_rates.reset()
            episodes = {r.id: r for part in self._gather(self._episodes) for r in part}
            self._episodes = []
        else:
            metrics = self.accuracy.compute()
            self.accuracy.reset()
            outputs = {k: v for part in self._gather(self._outputs) for k, v in part.items()}
            self._outputs = {}
        for key in ("DE", "CE", "VA") if bench.multi_turn else ("TS", "PI", "CF"):
            self.log(f"test/{key}", float(metrics[key]), sync_dist=False)
        if self.trainer.global_rank != 0:
            return
        out_dir = Path(self.hparams.output_dir or Path(self.trainer.default_root_dir) / "eval" / bench.name)
        fmt = self.call_format
        if bench.multi_turn:
            results = [episodes[t.id] for t in bench.cases if t.id in episodes]
            report = multi_turn_report(results, benchmark=bench.name, call_format=fmt, data=bench.summary())
            rows = [{"id": r.id, "index": r.index, "turns": [{"output": t.output, "feedback": t.feedback} for t in r.turns]} for r in results]
        else:
            report = single_turn_report(bench.cases, outputs, self.hparams.mode, fmt, benchmark=bench.name, data=bench.summary())
            rows = [{"id": c.id, "index": c.index, "output": outputs[c.id]} for c in bench.cases if c.id in outputs]
        write_jsonl(out_dir / "predictions.jsonl", rows)
        write_report(report, out_dir)
        self.last_report = report
        print(headline(report))
        print(f"  predictions and report in {out_dir}")
