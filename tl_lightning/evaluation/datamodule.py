"""``BenchmarkDataModule``: a test set's cases as ``test``/``predict`` batches (lists of cases).

    data:
      class_path: tl_lightning.evaluation.datamodule.BenchmarkDataModule
      init_args: {benchmark: rotbench, path: ../shared/benchmarks/rotbench, category: clean, batch_size: 8}

Batches are plain lists of :class:`~tl_lightning.data.cases.EvalCase` or
:class:`~tl_lightning.data.cases.MultiTurnTask`: the evaluation module renders prompts itself with
its own (the model's) tokenizer and template, so a checkpoint is always prompted the way it was
trained. Relative paths resolve against the working directory (the repository root for the
shipped configs, whose public-set paths point at ``../shared/benchmarks``; override ``path``).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from tl_lightning.benchmarks import BenchmarkSet, load_benchmark
from tl_lightning.data.paths import is_quickstart
from tl_lightning.ranges import check_ranges
from tl_lightning.synthetic import ensure_quickstart_data

__all__ = ["BenchmarkDataModule"]


class BenchmarkDataModule(LightningDataModule):
    """Serve ``benchmark`` (rotbench | toolalpaca | bfcl | tooleyes | synthetic) read from ``path``.

    Args:
        benchmark, path, category, strict: as :func:`tl_lightning.benchmarks.load_benchmark`.
        tokenizer: not needed to serve cases; linked by the CLI into the module, which otherwise
            uses the model's own tokenizer (``None``). Kept as ``.tokenizer``.
        batch_size: cases (or multi-turn tasks, played in lockstep) per batch.
        limit: serve only the first ``limit`` cases (smoke tests, CI).
        repair: ToolAlpaca: repair the 4 known invalid gold inputs (114 cases, as published).
    """

    def __init__(
        self,
        benchmark: str,
        path: str,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        category: str | None = None,
        batch_size: int = 8,
        limit: int | None = None,
        strict: bool = True,
        repair: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_ranges("", {"batch_size": batch_size, "limit": limit, "num_workers": num_workers})
        self.benchmark_name, self.path, self.category = benchmark, path, category
        self.batch_size, self.limit, self.strict, self.repair, self.num_workers = batch_size, limit, strict, repair, num_workers
        if isinstance(tokenizer, str):
            from tl_lightning.tokenization import resolve_tokenizer

            tokenizer = resolve_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.benchmark: BenchmarkSet | None = None
        self._items: list[Any] = []

    def load(self) -> BenchmarkSet:
        """Read the set (once) and apply ``limit``."""
        if self.benchmark is None:
            options = {"repair": self.repair} if self.benchmark_name == "toolalpaca" else {}
            if is_quickstart(self.path):
                ensure_quickstart_data()
            bench = load_benchmark(self.benchmark_name, self.path, strict=self.strict, category=self.category, **options)
            if self.limit is not None:
                if self.limit < len(bench.cases):
                    bench.notes.append(f"limit: the first {self.limit} of {len(bench.cases)} cases")
                bench.cases = bench.cases[: self.limit]
                kept = {c.id for c in bench.cases}
                bench.unsolvable = [u for u in bench.unsolvable if u in kept]
                bench.repaired = {k: v for k, v in bench.repaired.items() if k in kept}
            self.benchmark = bench
        return self.benchmark

    def setup(self, stage: str | None = None) -> None:
        bench = self.load()
        # Pad to a multiple of the world size with None (skipped by the module), so the distributed
        # sampler never repeats a case to even out the shards and no case is counted twice.
        world = self.trainer.world_size if self.trainer is not None else 1
        self._items = list(bench.cases) + [None] * (-len(bench.cases) % world)

    def _loader(self) -> DataLoader:
        if not self._items:
            self.setup()
        return DataLoader(self._items, batch_size=self.batch_size, shuffle=False, collate_fn=list, num_workers=self.num_workers)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # cases are Python objects (frozen Tool dataclasses); the module tokenizes prompts itself

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()
