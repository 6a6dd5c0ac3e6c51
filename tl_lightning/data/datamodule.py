"""ToolTrajectoryDataModule: trajectory files -> encoded, cached, padded :class:`TrajectoryBatch` es.

    data:
      class_path: tl_lightning.data.datamodule.ToolTrajectoryDataModule
      init_args: {train_path: quickstart, val_path: "quickstart:val", template: python_doc, tokenizer: tl-tiny}

Files are read with :func:`tl_lightning.data.read_trajectories` and encoded once with
:func:`tl_lightning.data.encode.encode_trajectory` in ``prepare_data`` (rank zero); the encoded
tensors are cached on disk under a key that hashes the file contents, the tokenizer (its full
serialisation and chat template), the template, ``max_length``, the MAE categories and the
encoder's source code, so any change re-encodes and nothing stale is reused. ``setup`` loads the
cache on every rank. Batches are right-padded rows of one sequence each (shuffled for training,
optionally grouped by length), or with ``packing: true`` rows of several whole sequences under a
token budget (:mod:`tl_lightning.data.packing`). A sequence is a whole trajectory, or, for a chat
template that re-renders earlier turns (Qwen3, Mistral, Hermes-2-Pro), one of its per-turn sequences
(:meth:`~tl_lightning.data.chat_template.ChatTemplate.render_sequences`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from tl_lightning.data.batch import EncodedTrajectory, collate_encoded
from tl_lightning.data.data_report import DataReport
from tl_lightning.data.encode import TrajectoryTooLong, encode_sequences
from tl_lightning.data.feedback import resolved_category, step_is_error
from tl_lightning.data.packing import PackedBatchSampler, PackedRows, collate_packed
from tl_lightning.data.paths import cache_root, resolve_data_path
from tl_lightning.data.sampling import EpochLengthGroupedSampler, EpochRandomSampler, ResumableDataLoader
from tl_lightning.data.schema import FeedbackCategory
from tl_lightning.data.templates import get_template
from tl_lightning.ranges import check_ranges

__all__ = ["DataReport", "EncodedDataset", "ToolTrajectoryDataModule", "encode_file"]

SPLITS = ("train", "val", "test")

#: Bumped when :class:`DataReport` gains a field, so a cache written without it is not read back with a default.
_REPORT_VERSION = "report-2"


class EncodedDataset(Dataset):
    """Encoded trajectories stored as flat tensors plus offsets (compact to cache, cheap to pickle).

    ``flat[name]`` is the concatenation of every trajectory's 1-D field; trajectory ``i`` spans
    ``offsets[i]:offsets[i + 1]``.
    """

    FIELDS = ("input_ids", "labels", "error_mask", "key_mask", "step_ids")

    def __init__(self, flat: dict[str, torch.Tensor], offsets: torch.Tensor, ids: list[str], num_steps: list[int], truncated: list[bool]):
        self.flat, self.offsets, self.ids, self.num_steps, self.truncated = flat, offsets, ids, num_steps, truncated

    @classmethod
    def from_items(cls, items: list[EncodedTrajectory]) -> EncodedDataset:
        lengths = torch.tensor([len(it) for it in items], dtype=torch.long)
        offsets = torch.zeros(len(items) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        if items:
            flat = {f: torch.cat([getattr(it, f) for it in items]) for f in cls.FIELDS}
        else:
            flat = {f: torch.zeros(0, dtype=torch.bool if f.endswith("mask") else torch.long) for f in cls.FIELDS}
        return cls(flat, offsets, [it.id for it in items], [it.num_steps for it in items], [it.truncated for it in items])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> EncodedTrajectory:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return EncodedTrajectory(
            **{f: self.flat[f][a:b] for f in self.FIELDS}, id=self.ids[i], num_steps=self.num_steps[i], truncated=self.truncated[i]
        )

    def state(self) -> dict[str, Any]:
        return {"flat": self.flat, "offsets": self.offsets, "ids": self.ids, "num_steps": self.num_steps, "truncated": self.truncated}


def encode_file(
    path: str | os.PathLike,
    tokenizer,
    template: Any = "python_doc",
    max_length: int | None = 1024,
    format: str = "auto",
    strict: bool = True,
    error_categories: list[str] | None = None,
) -> tuple[EncodedDataset, DataReport]:
    """Read and encode one file. Too-long trajectories are always skipped and counted; other encoding
    problems raise (strict) or are skipped and counted by reason (lenient)."""
    from tl_lightning.data.readers import read_trajectories

    path = resolve_data_path(path)
    template = get_template(template)
    cats = None if error_categories is None else frozenset(FeedbackCategory(c) for c in error_categories)
    trajs = read_trajectories(path, format=format, strict=strict)
    report = DataReport(path=str(path), records=trajs.report.n_records, skipped_read=trajs.report.n_skipped)
    items: list[EncodedTrajectory] = []
    errors: Counter = Counter()
    for traj, seqs in zip(trajs, encode_sequences(trajs, tokenizer, template, max_length, error_categories=cats), strict=True):
        if isinstance(seqs, TrajectoryTooLong):
            report.skipped_too_long += 1
            continue
        if isinstance(seqs, Exception):
            if strict:
                raise type(seqs)(f"{path}: {seqs}") from seqs
            errors[type(seqs).__name__] += 1
            continue
        items += seqs
        report.trajectories += 1
        supervised_steps = set(torch.cat([enc.step_ids for enc in seqs]).unique().tolist())
        kept = [step for i, step in enumerate(traj.steps) if i in supervised_steps]
        report.steps += len(kept)
        report.final_answers += len(traj.steps) in supervised_steps
        for step in kept:
            if step_is_error(step, cats):
                errors_by = report.erroneous_steps
                name = str(resolved_category(step))
                errors_by[name] = errors_by.get(name, 0) + 1
        for enc in seqs:
            report.key_tokens += int((enc.key_mask & (enc.step_ids < len(traj.steps))).sum())
            report.tokens += len(enc)
            report.supervised_tokens += int((enc.step_ids >= 0).sum())
            report.error_step_tokens += int(enc.error_mask.sum())
        report.sequences += len(seqs)
        report.truncated += any(enc.truncated for enc in seqs)
    report.skipped_other = dict(errors)
    return EncodedDataset.from_items(items), report


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything about a tokenizer that changes encodings: its full serialisation and chat template."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    h.update(repr(getattr(tokenizer, "chat_template", None)).encode())
    h.update(repr(sorted(tokenizer.special_tokens_map.items())).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """Hash of the encoder's source: editing it invalidates every cache."""
    from tl_lightning.data import chat_messages, chat_template, encode, template_base, templates

    h = hashlib.sha256()
    for mod in (encode, templates, chat_template, chat_messages, template_base):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


class ToolTrajectoryDataModule(L.LightningDataModule):
    """Tool-use trajectories for SFT: each batch a :class:`~tl_lightning.data.batch.TrajectoryBatch`
    with ``input_ids``, ``attention_mask``, ``labels``, ``error_mask``, ``key_mask``, ``step_ids``, each [B, L].

    Args:
        train_path, val_path, test_path: trajectory files (JSON or JSONL in any reader format), or
            ``"quickstart"`` / ``"quickstart:<split>"`` for the generated quick-start data.
        format: reader format (``auto``, ``openai``, ``tl_raw``, ``sharegpt``).
        template: ``python_doc``, ``react`` or ``chat_template``; ``template_kwargs`` go to its constructor.
        tokenizer: a hub name, a local path, ``"tl-tiny"`` (the shipped one) or a fast tokenizer object.
        max_length: trajectories are cut after the last complete step that fits; longer first steps are skipped.
        error_categories: feedback categories whose steps go into ``error_mask`` (MAE); None = every error.
        strict: raise on bad records (True) or skip and count them (False).
        cache_dir: where encoded tensors are cached (default ``$TL_LIGHTNING_CACHE/encoded``); ``cache=False`` disables.
        pad_to_multiple_of: round each batch's length up (tensor-core friendly shapes on GPU).
        group_by_length: draw training batches of similar length (``transformers``' ``LengthGroupedSampler``:
            random mega-batches of up to 50 batches, sorted by length inside), so steps compute on less padding.
        seed: base seed of the training order; epoch ``e`` is shuffled with ``seed + e``, so a run resumed
            from a mid-epoch checkpoint continues with exactly the batches it would have seen. ``None``:
            the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``), else 0.
        packing: pack whole trajectories into rows of at most ``max_length`` tokens (``position_ids``
            restarting at 0 for each, no attention across them; see :mod:`tl_lightning.data.packing`), for
            every split. Batches then hold ``max_tokens_per_batch`` tokens per rank instead of ``batch_size``
            trajectories; the rows come from ``seed``, the batch order from ``seed + epoch``.
        max_tokens_per_batch: the per-rank token budget of a packed batch (needed with ``packing``;
            >= ``max_length``). ``batch_size`` and ``group_by_length`` do not apply then.
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        format: str = "auto",
        template: str = "python_doc",
        tokenizer: Any = "tl-tiny",
        max_length: int = 1024,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        strict: bool = True,
        cache_dir: str | None = None,
        cache: bool = True,
        error_categories: list[str] | None = None,
        template_kwargs: dict[str, Any] | None = None,
        pad_to_multiple_of: int | None = None,
        group_by_length: bool = False,
        seed: int | None = None,
        packing: bool = False,
        max_tokens_per_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.format, self.max_length, self.strict = format, max_length, strict
        self.batch_size, self.val_batch_size, self.num_workers = batch_size, val_batch_size or batch_size, num_workers
        self.error_categories = error_categories
        self.template = get_template(template, **(template_kwargs or {}))  # fails fast on an unknown name
        check_ranges("", {"batch_size": batch_size, "val_batch_size": val_batch_size, "max_length": max_length,
                           "num_workers": num_workers, "pad_to_multiple_of": pad_to_multiple_of})
        if packing and (max_tokens_per_batch is None or max_tokens_per_batch < max_length):
            raise ValueError(f"packing needs max_tokens_per_batch >= max_length ({max_length}), got {max_tokens_per_batch}")
        if max_tokens_per_batch is not None and not packing:
            raise ValueError("max_tokens_per_batch only applies with packing: true")
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "encoded"
        self.pad_to_multiple_of = pad_to_multiple_of
        if isinstance(tokenizer, str):
            from tl_lightning.tokenization import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; encoding needs character offsets")
        self.tokenizer = tokenizer
        self.datasets: dict[str, EncodedDataset] = {}
        self.reports: dict[str, DataReport] = {}

    # ------------------------------------------------------------------ encoding and cache
    def cache_file(self, split: str) -> Path:
        """The cache file of ``split``: its name hashes every input that changes the encoding."""
        path = resolve_data_path(self.paths[split])
        parts = [
            _file_digest(path),
            tokenizer_fingerprint(self.tokenizer),
            type(self.template).__name__,
            repr(sorted(vars(self.template).items())),
            str(self.max_length),
            repr(self.error_categories),
            self.format,
            str(self.strict),
            _code_version(),
            _REPORT_VERSION,
        ]
        key = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]
        return self.cache_dir / f"{path.stem}-{self.template.name}-{key}.pt"

    def _encode(self, split: str) -> tuple[EncodedDataset, DataReport]:
        return encode_file(
            self.paths[split], self.tokenizer, self.template, self.max_length, self.format, self.strict, self.error_categories
        )

    def _build(self, split: str) -> None:
        """Encode ``split`` and write its cache (atomically: concurrent writers never leave a partial file)."""
        file = self.cache_file(split)
        if file.is_file():
            return
        dataset, report = self._encode(split)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}-")
        os.close(fd)
        try:
            torch.save({"dataset": dataset.state(), "report": asdict(report)}, tmp)
            os.replace(tmp, file)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def prepare_data(self) -> None:
        if self.cache:
            for split, path in self.paths.items():
                if path is not None:
                    self._build(split)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(stage or "", SPLITS)
        for split in wanted:
            if self.paths[split] is None or split in self.datasets:
                continue
            if self.cache:
                self._build(split)  # no-op when prepare_data already wrote it
                state = torch.load(self.cache_file(split), weights_only=True)
                dataset, report = EncodedDataset(**state["dataset"]), DataReport(**state["report"])
            else:
                dataset, report = self._encode(split)
            self._print_report(split, report)
            if len(dataset) == 0:
                raise ValueError(
                    f"{report.path}: no trajectory left to train on ({report.skipped_too_long} longer than "
                    f"max_length={self.max_length} in their first step, {report.skipped_read} unreadable, "
                    f"other skips: {report.skipped_other or 'none'}); raise max_length or check the data"
                )
            self.datasets[split], self.reports[split] = dataset, report

    @rank_zero_only
    def _print_report(self, split: str, report: DataReport) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{split} data ({self.template.name}, max_length {self.max_length})", show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for line in report.lines():
            key, _, value = line.partition("  ")
            table.add_row(key, value.strip())
        Console().print(table)

    # ------------------------------------------------------------------ loaders
    def _seed(self) -> int:
        return self.hparams.seed if self.hparams.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _shard(self) -> dict[str, int]:
        # The samplers shard by rank themselves (Lightning leaves a DistributedSampler in place).
        trainer = self.trainer
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank} if trainer is not None else {}

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} data: set {split}_path and call setup() first")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        dataset = self.datasets[split]
        workers = {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}
        lengths = (dataset.offsets[1:] - dataset.offsets[:-1]).tolist()
        if self.hparams.packing:
            sampler = PackedBatchSampler(lengths, self.max_length, self.hparams.max_tokens_per_batch, seed=self._seed(),
                                         shuffle=shuffle, **self._shard())
            collate = functools.partial(collate_packed, pad_token_id=pad, pad_to_multiple_of=self.pad_to_multiple_of)
            # batch_size=None: the sampler yields whole batches (lists of rows), the collate packs each.
            return ResumableDataLoader(PackedRows(dataset), sampler=sampler, batch_size=None, collate_fn=collate, **workers)
        collate = functools.partial(collate_encoded, pad_token_id=pad, pad_to_multiple_of=self.pad_to_multiple_of)
        if not shuffle:
            return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, **workers)
        if self.hparams.group_by_length:
            # Trajectory lengths vary several-fold; batching similar lengths together cuts the padding a
            # step computes on (about half the tokens of a random batch of the quick-start data).
            sampler = EpochLengthGroupedSampler(lengths, batch_size, seed=self._seed(), **self._shard())
        else:
            sampler = EpochRandomSampler(dataset, seed=self._seed(), **self._shard())
        return ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, **workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", self.val_batch_size, shuffle=False) if self.paths["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)
