"""ToolTrajectoryDataModule: reading + encoding + cache + report + batches."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import tl_lightning.data.datamodule as dm_mod
from tl_lightning.data.batch import IGNORE_INDEX, TrajectoryBatch
from tl_lightning.data.datamodule import ToolTrajectoryDataModule, encode_file
from tl_lightning.data.readers import write_openai_jsonl
from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [Tool("get_weather_forecast", "", CITY, ("city",)), Tool("get_weather_history", "", CITY, ("city",))]


def _trajs() -> list[Trajectory]:
    failed = Step([ToolCall("get_weather_history", {"town": "Rome"})], feedback=["get_weather_history() got an unexpected keyword argument 'town'"])
    ok = Step([ToolCall("get_weather_history", {"city": "Rome"})], feedback=['{"temp": 3}'])
    return [
        Trajectory("a", TOOLS, [Message("user", "Rome?")], [failed, ok], final_answer="3 C"),
        Trajectory("b", TOOLS, [Message("user", "Paris?")], [Step([ToolCall("get_weather_forecast", {"city": "Paris"})], feedback=['{"t": 9}'])], final_answer="9 C"),
        Trajectory("c", TOOLS, [Message("user", "Oslo " * 300)], [ok], final_answer="cold"),  # first step cannot fit
    ]


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_openai_jsonl(_trajs(), path)
    return path


def _dm(path, tokenizer, tmp_path, **kw) -> ToolTrajectoryDataModule:
    kw = {"max_length": 400, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), **kw}
    return ToolTrajectoryDataModule(train_path=str(path), val_path=str(path), tokenizer=tokenizer, **kw)


def test_encode_file_report(train_file, tiny_tokenizer):
    dataset, report = encode_file(train_file, tiny_tokenizer, "python_doc", max_length=400)
    assert len(dataset) == 2 and dataset.ids == ["a", "b"]
    assert (report.records, report.trajectories, report.skipped_too_long, report.skipped_read) == (3, 2, 1, 0)
    assert report.steps == 3 and report.final_answers == 2
    assert report.erroneous_steps == {"parameter_hallucination": 1}
    # Key tokens on tool-call steps: get_weather_history x2 (first char + char 12) and get_weather_forecast (same).
    assert report.key_tokens == 6 and report.mean_key_tokens_per_step == 2.0
    assert report.tokens == sum(len(dataset[i]) for i in range(2))
    item = dataset[0]
    assert torch.equal(item.error_mask, item.step_ids == 0) and item.error_mask.any()
    # MAE drops the supervised tokens of a's failed step 0: counted apart, so the table says what trains.
    assert report.error_step_tokens == int((item.step_ids == 0).sum()) > 0
    assert report.trained_tokens(use_mae=True) == report.supervised_tokens - report.error_step_tokens
    assert report.trained_tokens(use_mae=False) == report.supervised_tokens
    assert report.nothing_to_train(use_mae=True) is None


def test_datamodule_batches_cache_and_report(train_file, tiny_tokenizer, tmp_path, capsys):
    dm = _dm(train_file, tiny_tokenizer, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    out = capsys.readouterr().out
    assert "erroneous steps" in out and "parameter_hallucination 1" in out and "1 too long" in out
    batch = next(iter(dm.val_dataloader()))
    assert isinstance(batch, TrajectoryBatch) and batch.ids == ["a", "b"]
    lengths = [len(dm.datasets["val"][i]) for i in range(2)]
    assert batch.input_ids.shape == (2, max(lengths))
    short = lengths.index(min(lengths))
    assert batch.attention_mask[short].sum() == min(lengths)
    assert (batch.labels[short, min(lengths) :] == IGNORE_INDEX).all()
    assert (batch.input_ids[short, min(lengths) :] == tiny_tokenizer.pad_token_id).all()
    assert batch.error_mask.dtype == torch.bool and batch.step_ids.dtype == torch.long
    assert len(list(dm.train_dataloader())) == 1
    # A second module with the same settings loads the cache without encoding.
    cache_files = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(cache_files) == 1  # train and val are the same file: one cache entry

    def boom(*a, **k):
        raise AssertionError("re-encoded despite a valid cache")

    dm2 = _dm(train_file, tiny_tokenizer, tmp_path)
    dm2._encode = boom
    dm2.setup("fit")
    assert torch.equal(dm2.datasets["train"].flat["labels"], dm.datasets["train"].flat["labels"])
    assert dm2.reports["train"] == dm.reports["train"]


def test_cache_key_tracks_inputs(train_file, tiny_tokenizer, tmp_path):
    base = _dm(train_file, tiny_tokenizer, tmp_path).cache_file("train")
    assert _dm(train_file, tiny_tokenizer, tmp_path).cache_file("train") == base
    assert _dm(train_file, tiny_tokenizer, tmp_path, max_length=300).cache_file("train") != base
    assert _dm(train_file, tiny_tokenizer, tmp_path, template="react").cache_file("train") != base
    assert _dm(train_file, tiny_tokenizer, tmp_path, error_categories=["others"]).cache_file("train") != base
    train_file.write_text(train_file.read_text().replace("Rome?", "Rome!"))
    assert _dm(train_file, tiny_tokenizer, tmp_path).cache_file("train") != base


def test_lenient_mode_counts_bad_records(train_file, tiny_tokenizer, tmp_path):
    with open(train_file, "a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "z", "tools": [], "messages": [{"role": "wizard", "content": "x"}]}) + "\n")
    with pytest.raises(Exception, match="line 4"):
        _dm(train_file, tiny_tokenizer, tmp_path).setup("fit")
    dm = _dm(train_file, tiny_tokenizer, tmp_path, strict=False)
    dm.setup("fit")
    r = dm.reports["train"]
    assert (r.records, r.skipped_read, r.skipped_too_long, r.trajectories) == (5, 2, 1, 2)


def test_picklable_and_no_cache_mode(train_file, tiny_tokenizer, tmp_path):
    dm = _dm(train_file, tiny_tokenizer, tmp_path, cache=False, template="react", max_length=700)
    dm.setup("validate")
    assert not (tmp_path / "cache").exists() and set(dm.datasets) == {"val"}
    clone = pickle.loads(pickle.dumps(dm))
    b1, b2 = next(iter(dm.val_dataloader())), next(iter(clone.val_dataloader()))
    assert torch.equal(b1.input_ids, b2.input_ids) and torch.equal(b1.key_mask, b2.key_mask)
    assert clone.tokenizer.eos_token == "</s>"


def test_training_loader_shards_by_rank_itself(train_file, tiny_tokenizer, tmp_path):
    """Under DDP each rank draws its share of one (seed, epoch) order; Lightning leaves the sampler in place."""
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler

    shares = []
    for rank in (0, 1):
        dm = _dm(train_file, tiny_tokenizer, tmp_path, batch_size=1)
        dm.setup("fit")
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.num_replicas == 2
        loader.sampler.set_epoch(0)
        shares.append([b.ids[0] for b in loader])
    n = len(dm.datasets["train"])
    assert len(shares[0]) == len(shares[1]) == -(-n // 2)
    assert set(shares[0]) | set(shares[1]) == set(dm.datasets["train"].ids)


def test_bad_settings_fail_fast(tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="unknown template"):
        ToolTrajectoryDataModule(train_path="x", template="alpaca", tokenizer=tiny_tokenizer)
    for bad in ({"batch_size": 0}, {"max_length": 0}, {"val_batch_size": -1}, {"num_workers": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be >= "):
            ToolTrajectoryDataModule(train_path="x", tokenizer=tiny_tokenizer, **bad)
    dm = ToolTrajectoryDataModule(train_path=None, tokenizer=tiny_tokenizer, cache_dir=str(tmp_path))
    dm.setup("fit")
    assert dm.val_dataloader() == []
    with pytest.raises(RuntimeError, match="no train data"):
        dm.train_dataloader()
    assert dm_mod.SPLITS == ("train", "val", "test")


def test_encoding_problems_strict_and_lenient(train_file, tiny_tokenizer, tmp_path):
    # The tiny tokenizer has no chat template: strict mode names the file, lenient mode counts the skips.
    with pytest.raises(ValueError, match=r"train\.jsonl: .*has none"):
        encode_file(train_file, tiny_tokenizer, "chat_template", max_length=400)
    _, report = encode_file(train_file, tiny_tokenizer, "chat_template", max_length=400, strict=False)
    assert report.trajectories == 0 and report.skipped_other == {"TemplateError": 3}
    dm = _dm(train_file, tiny_tokenizer, tmp_path, max_length=20)
    with pytest.raises(ValueError, match="no trajectory left to train on \\(3 longer than max_length=20"):
        dm.setup("fit")


@pytest.mark.slow
def test_fits_with_the_sft_module(train_file, tiny_tokenizer, tmp_path):
    import lightning as L

    from tl_lightning.modules.sft import TLSFTModule

    dm = _dm(train_file, tiny_tokenizer, tmp_path, batch_size=2)
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64}
    module = TLSFTModule(tokenizer=dm.tokenizer, lr=1e-3, tiny_config=tiny)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1)
    trainer.fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_group_by_length_batches_similar_lengths(tmp_path, tiny_tokenizer):
    """Length-grouped batches hold every trajectory once and pad far less than shuffled ones."""
    trajs = [
        Trajectory(f"t{i}", TOOLS, [Message("user", "Rome? " * (1 + 12 * (i % 4)))],
                   [Step([ToolCall("get_weather_history", {"city": "Rome"})], feedback=['{"temp": 3}'])], final_answer="3 C")
        for i in range(400)
    ]
    path = tmp_path / "many.jsonl"
    write_openai_jsonl(trajs, path)

    def padding(group: bool) -> tuple[int, list[str]]:
        torch.manual_seed(0)
        dm = _dm(path, tiny_tokenizer, tmp_path, batch_size=4, group_by_length=group, max_length=1000)
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        return sum(int((1 - b.attention_mask).sum()) for b in batches), sorted(i for b in batches for i in b.ids)

    grouped, ids = padding(True)
    shuffled, _ = padding(False)
    assert ids == sorted(t.id for t in trajs)
    # Mega-batches of 100 sorted by length: only batches straddling one of the 4 length classes pad.
    assert grouped < shuffled / 5


def test_packing_batches_hold_every_trajectory_once_within_the_token_budget(tmp_path, tiny_tokenizer):
    """packing: rows of whole trajectories under max_length, batches under max_tokens_per_batch, each trajectory
    once per epoch, the epoch's order from (seed, epoch), a DistributedSampler Lightning leaves in place; val packed
    in file order."""
    from torch.utils.data import DistributedSampler

    trajs = [
        Trajectory(f"t{i}", TOOLS, [Message("user", "Rome? " * (1 + 12 * (i % 4)))],
                   [Step([ToolCall("get_weather_history", {"city": "Rome"})], feedback=['{"temp": 3}'])], final_answer="3 C")
        for i in range(60)
    ]
    path = tmp_path / "many.jsonl"
    write_openai_jsonl(trajs, path)
    dm = _dm(path, tiny_tokenizer, tmp_path, max_length=300, packing=True, max_tokens_per_batch=600, seed=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, DistributedSampler)
    epochs = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        assert sorted(i for b in batches for i in b.ids) == sorted(t.id for t in trajs)
        for b in batches:
            assert isinstance(b, TrajectoryBatch) and b.position_ids is not None and b.input_ids.shape[1] <= 300
            assert b.num_tokens <= 600 and b.num_tokens == int(b.attention_mask.sum()) and b.num_segments == len(b.ids)
        epochs.append([b.ids for b in batches])
    assert epochs[0] != epochs[1]
    val = list(dm.val_dataloader())
    assert sorted(i for b in val for i in b.ids) == sorted(t.id for t in trajs)
    assert [b.ids for b in val] == [b.ids for b in dm.val_dataloader()]
    padded = sum(b.input_ids.numel() for b in val)
    assert padded < 1.1 * sum(b.num_tokens for b in val)  # packed rows are nearly all real tokens


def test_packing_settings_fail_fast(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"packing needs max_tokens_per_batch >= max_length \(512\), got None"):
        ToolTrajectoryDataModule(train_path="x", tokenizer=tiny_tokenizer, max_length=512, packing=True)
    with pytest.raises(ValueError, match="got 100"):
        ToolTrajectoryDataModule(train_path="x", tokenizer=tiny_tokenizer, max_length=512, packing=True, max_tokens_per_batch=100)
    with pytest.raises(ValueError, match="only applies with packing"):
        ToolTrajectoryDataModule(train_path="x", tokenizer=tiny_tokenizer, max_tokens_per_batch=4096)
