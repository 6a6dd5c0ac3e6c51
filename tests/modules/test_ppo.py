"""TLPPOModule: rollouts, advantages, a toy task where PPO must raise the reward, checkpoints, loading."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader

from tl_lightning.checkpoints import load_pretrained
from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.generation import sequence_logprobs
from tl_lightning.modules.ppo import TLPPOModule
from tl_lightning.rl import Rollout, compute_advantages
from tl_lightning.rl.data import PromptRecord
from tl_lightning.rl.rewards import gold_reward, sandbox_reward

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}
PROMPT = "User: ping\nAssistant:"
TOOLS = [Tool("ping_a"), Tool("ping_b")]


def toy_record() -> PromptRecord:
    traj = Trajectory("toy", TOOLS, [Message("user", "ping")])
    return PromptRecord("toy", PROMPT, traj, [ToolCall("ping_a")], TOOLS, 0, "python", "</s>")


def make_module(tokenizer, **kw) -> TLPPOModule:
    defaults = dict(tokenizer=tokenizer, tiny_config=TINY, max_new_tokens=8, kl_coef=0.05, actor_lr=2e-3, critic_lr=1e-2)
    return TLPPOModule(**{**defaults, **kw})


def warm_up(module: TLPPOModule, tokenizer, steps: int = 80) -> None:
    """SFT the actor (and reference) so that ``ping_a()`` and ``ping_b()`` are about equally likely."""
    opt = torch.optim.AdamW(module.actor.parameters(), lr=1e-2)
    enc = tokenizer([PROMPT + " ping_a()</s>", PROMPT + " ping_b()</s>"], return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[:, : len(tokenizer(PROMPT)["input_ids"])] = -100
    labels[enc["attention_mask"] == 0] = -100
    for _ in range(steps):
        loss = module.actor(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.reference.load_state_dict(module.actor.state_dict())


def p_call(module: TLPPOModule, tokenizer, call: str) -> float:
    enc = tokenizer([PROMPT + call], return_tensors="pt")
    start = len(tokenizer(PROMPT)["input_ids"])
    with torch.no_grad():
        return sequence_logprobs(module.actor, enc["input_ids"], enc["attention_mask"], start).sum().exp().item()


class RewardLog(Callback):
    def __init__(self):
        self.rewards = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rewards.append(trainer.callback_metrics["train/reward"].item())


def trainer(tmp_path, **kw) -> Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=tmp_path)
    return Trainer(**{**defaults, **kw})


def test_ppo_raises_mean_reward_on_a_two_tool_toy_task(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, do_sample=True, ppo_epochs=2, num_minibatches=2)
    warm_up(module, tiny_tokenizer)
    p_a, p_b = p_call(module, tiny_tokenizer, " ping_a()</s>"), p_call(module, tiny_tokenizer, " ping_b()</s>")
    assert 0.3 < p_a < 0.7 and 0.3 < p_b < 0.7  # the start is a coin flip between the two tools
    log = RewardLog()
    trainer(tmp_path, max_epochs=8, callbacks=[log]).fit(module, DataLoader([toy_record()] * 16, batch_size=16, collate_fn=list))
    assert len(log.rewards) == 8
    first, last = sum(log.rewards[:2]) / 2, sum(log.rewards[-3:]) / 3
    assert last > first + 0.5, log.rewards
    assert p_call(module, tiny_tokenizer, " ping_a()") > p_a + 0.2
    assert module.rollout([toy_record()], greedy=True).texts == [" ping_a()"]


def test_rollout_at_start_has_zero_kl_and_zero_values(tiny_tokenizer):
    seed_everything(0)
    module = make_module(tiny_tokenizer)
    r = module.rollout([toy_record(), toy_record()])
    B, T = r.response_mask.shape
    assert r.sequences.shape == (B, r.response_start + T) and r.logprobs.shape == r.values.shape == (B, T)
    torch.testing.assert_close(r.logprobs, r.ref_logprobs)  # the reference is a copy of the actor
    assert torch.equal(r.values, torch.zeros(B, T))  # zero-initialised value head
    assert (r.logprobs[r.response_mask == 0] == 0).all()


def test_compute_advantages_by_hand():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    r = Rollout(
        sequences=torch.zeros(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 5, dtype=torch.long),
        response_mask=mask, scores=torch.tensor([[0.0, 9.0, 0.0]]), logprobs=torch.tensor([[-1.0, -1.0, 0.0]]),
        ref_logprobs=torch.tensor([[-1.5, -0.5, 0.0]]), values=torch.tensor([[0.5, 0.25, 0.0]]), texts=["x"],
    )
    # per-token rewards: the KL penalty -0.4 * (logp - ref) = [-0.2, 0.2], plus the score clipped to 5 at the last token
    adv, ret, _ = compute_advantages("gae", r, kl_coef=0.4, reward_clip=5.0, gamma=1.0, lam=0.95, whiten=False)
    a1 = 5.2 - 0.25
    a0 = -0.2 + 0.25 - 0.5 + 0.95 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, 5.2, 0.0]]))
    whitened = compute_advantages("gae", r, kl_coef=0.4, reward_clip=5.0, whiten=True).advantages
    assert whitened[0, 2] == 0 and abs(whitened[0, :2].sum().item()) < 1e-5


def _params(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def test_one_iteration_updates_every_actor_and_critic_parameter_not_the_reference(tiny_tokenizer, tmp_path, one_thread):
    for critic in ("separate", "shared"):
        seed_everything(0)
        # two updates: the zero-initialised value head passes no gradient to the critic backbone in the first
        module = make_module(tiny_tokenizer, critic=critic, do_sample=True, ppo_epochs=2)
        before = {"actor": _params(module.actor), "ref": _params(module.reference),
                  "critic": _params(module.critic)}
        trainer(tmp_path, max_epochs=1).fit(module, DataLoader([toy_record()] * 4, batch_size=4, collate_fn=list))
        after = {"actor": _params(module.actor), "ref": _params(module.reference),
                 "critic": _params(module.critic)}
        assert all(torch.equal(before["ref"][k], after["ref"][k]) for k in before["ref"])
        changed = [k for k in before["actor"] if not torch.equal(before["actor"][k], after["actor"][k])]
        assert len(changed) == len(before["actor"]), (critic, set(before["actor"]) - set(changed))
        assert all(not torch.equal(before["critic"][k], after["critic"][k]) for k in before["critic"]), critic


def test_gold_and_sandbox_rewards():
    from tl_lightning.rewards import IRM_DEFAULTS, IRMValues
    from tl_lightning.tools.sandbox import Sandbox

    rec = toy_record()
    assert gold_reward(" ping_a()", rec, IRM_DEFAULTS) == (1.0, "correct")
    assert gold_reward(" ping_b()", rec, IRM_DEFAULTS) == (-1.5, "wrong_tool")
    assert gold_reward(" nonsense(", rec, IRM_DEFAULTS) == (-2.0, "unparseable")
    assert gold_reward(" ping_b()", rec, IRMValues.from_dict({"wrong_tool": -0.1})) == (-0.1, "wrong_tool")

    write = ToolCall("write_file", {"path": "/a.txt", "content": "hi"})
    ctx = Trajectory("fs", [], [Message("user", "read it")], steps=[Step([write], feedback=['{"size": 2}'])])
    srec = PromptRecord("fs", "", ctx, [], [], 1, "python", "</s>")
    box = Sandbox(seed=0)
    # the earlier write is replayed, so the read succeeds; a fresh sandbox would say "No such file"
    assert sandbox_reward(' read_file(path="/a.txt")', srec, box) == (1.0, "all_right")
    assert sandbox_reward(' read_file(path="/b.txt")', srec, box) == (-0.25, "others")
    assert sandbox_reward(' read_file(pth="/a.txt")', srec, box) == (-0.8, "parameter_hallucination")
    assert sandbox_reward(' read_fil(path="/a.txt")', srec, box, {"tool_hallucination": -3.0}) == (-3.0, "tool_hallucination")
    assert sandbox_reward(" ???", srec, box) == (-2.0, "unparseable")


def test_checkpoint_drops_reference_and_resume_restores_it(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, do_sample=True)
    data = DataLoader([toy_record()] * 2, batch_size=2, collate_fn=list)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(module, data)
    path = tmp_path / "ppo.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert not any(k.startswith("reference.") for k in ckpt["state_dict"])
    assert any(k.startswith("critic.") for k in ckpt["state_dict"]) and len(ckpt["optimizer_states"]) == 2
    assert "tokenizer" in ckpt
    loaded = TLPPOModule.load_from_checkpoint(path)
    for k, v in module.actor.state_dict().items():
        assert torch.equal(v, loaded.actor.state_dict()[k])
    # resume: one more epoch from the checkpoint runs and continues the step count
    resumed = make_module(tiny_tokenizer, do_sample=True)
    t2 = trainer(tmp_path, max_epochs=2)
    t2.fit(resumed, data, ckpt_path=path)
    assert t2.global_step == 2 * t.global_step


def test_load_pretrained_from_sft_checkpoint_and_hf_export(tiny_tokenizer, tmp_path):
    from tl_lightning.checkpoints import tokenizer_to_state
    from tl_lightning.modules.sft import TLSFTModule

    seed_everything(1)
    sft = TLSFTModule(tokenizer=tiny_tokenizer, tiny_config=TINY)
    ckpt = {"state_dict": sft.state_dict(), "hyper_parameters": dict(sft.hparams), "tokenizer": tokenizer_to_state(tiny_tokenizer)}
    torch.save(ckpt, tmp_path / "sft.ckpt")
    loaded = load_pretrained(str(tmp_path / "sft.ckpt"))
    actor, tok = loaded.model, loaded.tokenizer
    assert len(tok) == len(tiny_tokenizer)
    for k, v in sft.model.state_dict().items():
        assert torch.equal(v, actor.state_dict()[k]), k
    sft.export_hf(tmp_path / "hf")
    exported = load_pretrained(str(tmp_path / "hf"), tokenizer=tiny_tokenizer).model
    for k, v in sft.model.state_dict().items():
        assert torch.equal(v, exported.state_dict()[k]), k
    assert actor.training and exported.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
        ({"lam": -0.1}, r"lam must be in \[0, 1\]"),
        ({"clip_policy": 0.0}, r"clip_policy must be in \(0, 1\)"),
        ({"clip_policy": 1.0}, r"clip_policy must be in \(0, 1\)"),
        ({"clip_value": 0.0}, "clip_value must be > 0"),
        ({"reward_clip": -5.0}, "reward_clip must be > 0"),
        ({"kl_coef": -0.1}, "kl_coef must be >= 0"),
        ({"actor_lr": 0.0}, "actor_lr must be > 0"),
        ({"critic_lr": -1.0}, "critic_lr must be > 0"),
        ({"ppo_epochs": 0}, "ppo_epochs must be >= 1"),
        ({"num_minibatches": 0}, "num_minibatches must be >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"sandbox_instability_rate": 2.0}, r"sandbox_instability_rate must be in \[0, 1\]"),
        ({"critic": "both"}, r"critic must be one of \['separate', 'shared'\]"),
        ({"reward_source": "oracle"}, r"reward_source must be one of \['gold', 'sandbox'\]"),
        ({"kl_mode": "both"}, r"kl_mode must be one of \['reward', 'loss'\]"),
    ],
)
def test_out_of_range_settings_fail_at_construction_in_one_line(tiny_tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=f"^TLPPOModule: {message}, got") as err:
        make_module(tiny_tokenizer, **kwargs)
    assert "\n" not in str(err.value)
