"""Each family's transformers architecture (Qwen2, Qwen3, Llama, Mistral), built tiny and random with no download,
with the shipped ``tl-small`` tokenizer carrying the family's special tokens and stock chat template: a few
steps of SFT with MAE and PKT, the ``test`` stage on single- and multi-turn sets, a GRPO step, and a
multi-turn episode whose tool results come back in the family's format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from family_helpers import FAMILIES, family_tokenizer
from lightning.pytorch import Trainer, seed_everything

from tl_lightning.data.paths import resolve_data_path
from tl_lightning.data.readers import read_trajectories
from tl_lightning.data.readers.openai import write_openai_jsonl
from tl_lightning.data.schema import ToolCall, Trajectory

pytestmark = pytest.mark.slow

#: One family per architecture; Qwen3 is the one whose stock template re-renders earlier turns.
CASES = [("qwen2_5", "qwen2"), ("qwen3", "qwen3"), ("llama3_1", "llama"), ("mistral_v3", "mistral")]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
            max_position_embeddings=4096, tie_word_embeddings=True)


def tiny_model(architecture: str, tokenizer, out: Path) -> Path:
    """A random model of ``architecture`` for ``tokenizer``'s vocabulary, saved as an HF directory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = {"head_dim": 16} if architecture == "qwen3" else {}
    if architecture in ("qwen2", "qwen3", "mistral"):
        extra["sliding_window"] = None
    config = AutoConfig.for_model(architecture, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **TINY, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def training_file(tmp_path: Path, reasoning: bool) -> Path:
    """Eight quick-start trajectories (failed calls among them); with ``reasoning`` every other step carries a thought,
    which Qwen3's template renders as ``<think>`` text (and drops from earlier turns without one)."""
    trajs = [t for t in read_trajectories(resolve_data_path("quickstart")) if len(t.steps) >= 2][:8]
    if reasoning:
        for t in trajs:
            for i, step in enumerate(t.steps):
                step.text = f"I should call {step.calls[0].name}." if i % 2 else ""
    path = tmp_path / "train.jsonl"
    write_openai_jsonl(trajs, path)
    return path


def trainer(tmp_path: Path, steps: int) -> Trainer:
    return Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0, num_sanity_val_steps=0)


@pytest.mark.parametrize(("family", "architecture"), CASES)
def test_sft_test_stage_grpo_and_episodes_on_each_architecture(family, architecture, tmp_path, one_thread, monkeypatch):
    from tl_lightning.data.datamodule import ToolTrajectoryDataModule
    from tl_lightning.data.templates import get_template
    from tl_lightning.evaluation.datamodule import BenchmarkDataModule
    from tl_lightning.modules.evaluate import TLEvalModule
    from tl_lightning.modules.ppo import TLPPOModule
    from tl_lightning.modules.sft import TLSFTModule
    from tl_lightning.rl.data import PromptDataModule

    seed_everything(0)
    tok = family_tokenizer(family)
    base = tiny_model(architecture, tok, tmp_path / "base")
    data = training_file(tmp_path, reasoning=family == "qwen3")

    # SFT with MAE and PKT under the family's template
    dm = ToolTrajectoryDataModule(train_path=str(data), template="chat_template", tokenizer=tok, max_length=4096, batch_size=2, cache=False)
    sft = TLSFTModule(model=str(base), tokenizer=tok, use_mae=True, use_pkt=True, lr=1e-3)
    assert type(sft.model).__name__.lower().startswith(architecture)
    before = {k: v.detach().clone() for k, v in sft.model.named_parameters()}
    trainer(tmp_path / "sft", steps=3).fit(sft, datamodule=dm)
    report = dm.reports["train"]
    assert report.trajectories == 8 and sum(report.erroneous_steps.values()) > 0 and report.key_tokens > 0
    assert report.sequences > report.trajectories if family == "qwen3" else report.sequences == report.trajectories
    changed = [k for k, v in sft.model.named_parameters() if not torch.equal(before[k], v.detach())]
    assert len(changed) == len(before), "every trainable parameter moves"
    tuned = tmp_path / "sft_hf"
    sft.model.save_pretrained(tuned)
    tok.save_pretrained(tuned)

    # the test stage: single-turn TS/PI/CF and multi-turn DE/CE/VA, parsed with the family's own parser
    for path, limit in (("quickstart:test_single", 4), ("quickstart:test_multi", 2)):
        ev = TLEvalModule(model=str(tuned), tokenizer=tok, template="chat_template", max_new_tokens=12, output_dir=str(tmp_path / "eval" / path[-5:]))
        assert ev.call_format == FAMILIES[family].call_format
        metrics = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path).test(ev, datamodule=BenchmarkDataModule("synthetic", path, batch_size=4, limit=limit), verbose=False)[0]
        keys = ("test/TS", "test/PI", "test/CF") if path.endswith("single") else ("test/DE", "test/CE", "test/VA")
        assert all(0.0 <= metrics[k] <= 100.0 for k in keys)
        assert ev.last_report["n"] == limit and ev.last_report["format"] == FAMILIES[family].call_format

    # GRPO on the training steps' prompts, rendered by the same template. A random model's samples are all
    # unparseable (-2 each, no advantage): a tie-break by length gives the groups a spread, so the update runs.
    import tl_lightning.rl.rewards as ppo

    formats = []

    def reward(text, record, values):
        formats.append(record.call_format)
        r, category = gold_reward(text, record, values)
        return r + 0.01 * len(text), category

    gold_reward = ppo.gold_reward
    monkeypatch.setattr(ppo, "gold_reward", reward)
    pdm = PromptDataModule(train_path=str(data), template="chat_template", tokenizer=tok, batch_size=2, max_train_prompts=2)
    grpo = TLPPOModule(actor=str(tuned), tokenizer=tok, advantage="grpo", group_size=2, do_sample=True, kl_mode="loss",
                       max_new_tokens=12, actor_lr=1e-3, sampling_seed=0)
    before = {k: v.detach().clone() for k, v in grpo.actor.named_parameters()}
    t = trainer(tmp_path / "grpo", steps=2)
    t.fit(grpo, datamodule=pdm)
    assert torch.isfinite(t.callback_metrics["train/policy_loss"])
    assert formats and set(formats) == {FAMILIES[family].call_format}  # 2 steps x 4 samples, read by the family's parser
    assert any(not torch.equal(before[k], v.detach()) for k, v in grpo.actor.named_parameters())

    # a multi-turn episode: the policy's turn, then the tool results in the family's own role and format
    from tl_lightning.benchmarks import load_benchmark
    from tl_lightning.data.calls import format_calls
    from tl_lightning.evaluation.multiturn import Episode
    from tl_lightning.rl.episodes import observation_text

    template = get_template("chat_template")
    task = load_benchmark("synthetic", "quickstart:test_multi").cases[0]
    episode = Episode(task, call_format=template.call_format_for(tok))
    ref = task.meta["reference"]["calls"][0]
    episode.step(format_calls([ToolCall(ref["name"], ref.get("arguments") or {})], template.call_format_for(tok)))
    obs = observation_text(template, tok, episode)
    marker = {"qwen2_5": "<tool_response>", "qwen3": "<tool_response>", "llama3_1": "ipython", "mistral_v3": "[TOOL_RESULTS]"}[family]
    assert marker in obs and episode.turns[0].feedback[0][:20] in obs.replace('\\"', '"')
    assert template.render_prompt(episode.trajectory(), tok).endswith(obs)
    assert isinstance(episode.trajectory(), Trajectory)
