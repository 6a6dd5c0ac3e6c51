"""TLSFTModule: the logged loss is the pure loss, flags switch MAE/PKT, optimisation, checkpoints, HF export."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from sft_helpers import TINY, HandBuiltDataModule, hand_tokenizer, hand_trajectories
from transformers import AutoModelForCausalLM, AutoTokenizer

from tl_lightning.data.batch import collate_encoded
from tl_lightning.data.packing import collate_packed
from tl_lightning.losses import dropped_step_fraction, pkt_weights, weighted_masked_nll
from tl_lightning.modules.sft import TLSFTModule


@pytest.fixture(scope="module")
def tok():
    return hand_tokenizer()


def _batch(tok, n=4):
    return collate_encoded(hand_trajectories(n), tok.pad_token_id)


def _trainer(tmp_path, **kw):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=tmp_path, num_sanity_val_steps=0)
    return Trainer(**{**defaults, **kw})


@pytest.mark.parametrize(("use_mae", "use_pkt"), [(False, False), (True, False), (False, True), (True, True)])
def test_training_step_is_the_pure_loss(tok, use_mae, use_pkt):
    seed_everything(0)
    module = TLSFTModule(tokenizer=tok, tiny_config=TINY, use_mae=use_mae, use_pkt=use_pkt, w_max=9.0)
    batch = _batch(tok)
    w = pkt_weights(batch.labels, batch.key_mask, batch.step_ids, batch.error_mask, use_mae, use_pkt, 9.0)
    expected, _ = weighted_masked_nll(module(batch.input_ids, batch.attention_mask), batch.labels, w)
    got = module.training_step(batch, 0)
    torch.testing.assert_close(got, expected)
    # Hand-built steps: step 0 (4 tokens, 1 key, erroneous), step 1 (6 tokens, 1 key), answer (4 tokens, 1 key).
    sup = batch.labels != -100
    assert w[sup].min() == (0.0 if use_mae else 1.0)
    assert w[0, 12] == (5.0 if use_pkt else 1.0) and w[0, 20] == (3.0 if use_pkt else 1.0)


def test_masked_step_fraction(tok):
    batch = _batch(tok)
    for mae, frac in [(True, 1 / 3), (False, 0.0)]:
        w = pkt_weights(batch.labels, batch.key_mask, batch.step_ids, batch.error_mask, use_mae=mae)
        got = dropped_step_fraction(batch.labels, batch.step_ids, w, batch.segment_ids, batch.num_segments)
        assert got.item() == pytest.approx(frac)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_chunked_loss_path_equals_the_unchunked_one(tok, packed):
    """loss_chunk_size below the batch's loss positions: head + CE run in checkpointed chunks on the captured
    hidden states; loss and every gradient equal the [N, V]-logits path."""
    items = hand_trajectories(6)
    batch = collate_packed([items[:3], items[3:5], items[5:]], tok.pad_token_id) if packed else _batch(tok, 6)
    grads = []
    for chunk in (None, 7):
        seed_everything(0)
        module = TLSFTModule(tokenizer=tok, tiny_config=TINY, loss_chunk_size=chunk)
        loss = module.training_step(batch, 0)
        loss.backward()
        grads.append((loss.detach(), [p.grad for p in module.parameters()]))
    assert batch.clean_target_index.numel() > 7
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-6)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cosine_schedule_with_warmup_ratio(tok, tmp_path):
    module = TLSFTModule(tokenizer=tok, tiny_config=TINY, lr=1e-3, warmup_ratio=0.1)
    trainer = _trainer(tmp_path, max_steps=20)
    module.trainer = trainer  # estimated_stepping_batches comes from max_steps
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.5e-3) and lrs[2] == pytest.approx(1e-3)
    assert lrs[11] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 9 / 18)))


def test_fit_changes_every_parameter_and_checkpoint_carries_tokenizer(tok, tmp_path):
    seed_everything(0)
    module = TLSFTModule(tokenizer=tok, tiny_config=TINY, lr=1e-2, warmup_ratio=0.0, lr_schedule="constant")
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=1, val_check_interval=3)
    trainer.fit(module, datamodule=HandBuiltDataModule())
    for n, p in module.named_parameters():
        assert not torch.equal(before[n], p), f"{n} did not change"
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())
    assert "val/loss" in trainer.callback_metrics and "train/masked_step_frac" in trainer.callback_metrics

    ckpt_path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert "tokenizer.json" in ckpt["tokenizer"] and ckpt["hyper_parameters"]["tiny_config"] == TINY
    restored = TLSFTModule.load_from_checkpoint(ckpt_path)  # no tokenizer given: rebuilt from the checkpoint
    assert restored.tokenizer.get_vocab() == tok.get_vocab()
    for (n, a), (_, b) in zip(module.state_dict().items(), restored.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_export_hf_loads_with_plain_transformers(tok, tmp_path):
    module = TLSFTModule(tokenizer=tok, tiny_config=TINY)
    out = module.export_hf(tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(out)
    tok2 = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok2("get_weather_forecast(city=")["input_ids"]])
    module.eval()
    torch.testing.assert_close(model(ids).logits, module(ids))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w_max": -3}, "w_max must be >= 1"),
        ({"w_max": 0.5}, "w_max must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-5}, "lr must be > 0"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
        ({"warmup_ratio": -0.1}, r"warmup_ratio must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"betas": (0.9, 1.0)}, "betas must be two numbers"),
        ({"lr_schedule": "cosin"}, r"lr_schedule must be one of \['cosine', 'linear', 'constant'\]"),
        ({"loss_chunk_size": -1}, "loss_chunk_size must be >= 0"),
        ({"model": "runs/x/last.ckpt"}, "model .* is a Lightning checkpoint; resume it with --ckpt_path"),
    ],
)
def test_out_of_range_settings_fail_at_construction_in_one_line(tok, kwargs, message):
    with pytest.raises(ValueError, match=f"^TLSFTModule: {message}") as err:
        TLSFTModule(tokenizer=tok, tiny_config=TINY, **kwargs)
    assert "\n" not in str(err.value)


def test_the_quickstart_callbacks_log_tokens_per_second_with_lightnings_throughput_monitor(tmp_path):
    """configs/callbacks/sft.yaml's ThroughputMonitor counts a batch's real tokens: items/s = tokens / time."""
    import csv
    from pathlib import Path

    import yaml
    from lightning.pytorch.callbacks import ThroughputMonitor
    from lightning.pytorch.loggers import CSVLogger

    from tl_lightning.data.batch import tokens_in, trajectories_in

    configs = Path(__file__).resolve().parents[2] / "configs"
    spec = next(c for c in yaml.safe_load((configs / "callbacks" / "sft.yaml").read_text())
                if c["class_path"].endswith("ThroughputMonitor"))
    assert spec["init_args"]["length_fn"] == "tl_lightning.data.batch.tokens_in"
    seed_everything(0)
    data = HandBuiltDataModule(num_train=12, batch_size=2)
    batch = next(iter(data.train_dataloader()))
    assert (trajectories_in(batch), tokens_in(batch)) == (2, int(batch.attention_mask.sum()))
    monitor = ThroughputMonitor(batch_size_fn=trajectories_in, length_fn=tokens_in, window_size=3)
    trainer = Trainer(accelerator="cpu", max_steps=6, logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=1,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, callbacks=[monitor],
                      limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(TLSFTModule(tokenizer=data.tokenizer, tiny_config=TINY, lr=1e-2), datamodule=data)
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/device/items_per_sec")]
    assert rows and all(float(r["train/device/items_per_sec"]) > 0 for r in rows)
    last = rows[-1]  # cumulative counts: 6 batches of 2 trajectories, every real token
    assert float(last["train/samples"]) == 12 and float(last["train/lengths"]) == sum(
        tokens_in(b) for b in data.train_dataloader())
