"""Multi-turn episodes token-in/token-out: exact tensors of a scripted two-turn sandbox episode."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tl_lightning.benchmarks.synthetic import read_synthetic_cases
from tl_lightning.data.templates import get_template
from tl_lightning.generation import GenerationOutput
from tl_lightning.rl import kl_penalty, policy_loss, sampled_gae
from tl_lightning.rl.data import known_sandbox_tasks
from tl_lightning.rl.episodes import (
    EpisodeSettings,
    episode_logprobs,
    episode_tensors,
    observation_text,
    run_episodes,
)
from tl_lightning.rl.rewards import turn_reward
from tl_lightning.synthetic import ensure_quickstart_data
from tl_lightning.tokenization import resolve_tokenizer

TURNS = [' convert_units(value=50, from_unit="lb", to_unit="kg")', ' finish(answer="50 lb is 22.68 kg.")']


@pytest.fixture(scope="module")
def setup():
    ensure_quickstart_data()
    task = read_synthetic_cases("quickstart:test_multi").cases[0]
    assert task.meta["reference"]["calls"][0]["name"] == "convert_units"  # the scripted turns solve this task
    return task, resolve_tokenizer("tl-tiny"), get_template("python_sig")


def char_ids(tok, text: str) -> list[int]:
    """A non-canonical tokenisation a sampler can produce: one token per character."""
    return [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]


def scripted_policy(tok, turns: list[list[int]], eot: int, logprobs: list[list[float] | None] | None = None):
    """Plays the scripted ids, one turn per call, for every row; records what it was given. ``logprobs``: the
    sampler's log-probs of each turn's ids (eot included), as a rollout engine returns them."""
    seen: list[list[list[int]]] = []

    def policy(prompt_ids, seed):
        seen.append([list(p) for p in prompt_ids])
        ids = turns[len(seen) - 1] + [eot]
        b = len(prompt_ids)
        seq = torch.tensor([[0] + ids] * b)  # a one-column "prompt" is enough: only responses are read
        turn_logprobs = None if logprobs is None else logprobs[len(seen) - 1]
        return GenerationOutput(seq, torch.ones(b, 1, dtype=torch.long), torch.ones(b, len(ids), dtype=torch.long),
                                torch.ones(b, dtype=torch.bool), [tok.decode(ids[:-1])] * b,
                                None if turn_logprobs is None else torch.tensor([turn_logprobs] * b))

    return policy, seen


def test_scripted_episode_exact_ids_masks_and_rewards(setup):
    task, tok, tpl = setup
    eot = tok.convert_tokens_to_ids(tpl.end_of_turn(tok))
    turns = [char_ids(tok, t) for t in TURNS]
    policy, seen = scripted_policy(tok, turns, eot)
    settings = EpisodeSettings(max_turns=9, success_bonus=2.0, max_new_tokens=64)
    (trace,) = run_episodes(policy, tok, tpl, [task], settings)
    assert trace.result.success and trace.result.finished and trace.result.categories == ["all_right", "all_right"]

    prompt = tok(tpl.render_prompt(task.as_trajectory(), tok))["input_ids"]
    assert trace.prompt_ids == prompt
    obs = tok(observation_text_after_turn1(task, tok, tpl), add_special_tokens=False)["input_ids"]
    # token-in/token-out: the episode is [turn-1 ids as sampled + eot] [observation ids] [turn-2 ids as sampled + eot]
    assert trace.ids == turns[0] + [eot] + obs + turns[1] + [eot]
    assert trace.sampled == [1] * (len(turns[0]) + 1) + [0] * len(obs) + [1] * (len(turns[1]) + 1)
    # the second turn was conditioned on exactly those ids, not on re-rendered or re-tokenised text
    assert seen[1] == [prompt + turns[0] + [eot] + obs]
    end1, end2 = len(turns[0]), len(trace.ids) - 1
    # a +1 (all_right) per call at its turn's end-of-turn token; the success bonus at the last one
    assert trace.rewards == [(end1, 1.0), (end2, 1.0), (end2, 2.0)]
    assert trace.components == {"calls": 2.0, "success": 2.0, "max_turns": 0.0}

    sequences, attention_mask, response_mask, scores = episode_tensors([trace], pad_id=tok.pad_token_id)
    p = len(prompt)
    assert sequences[0, :p].tolist() == prompt and sequences[0, p:].tolist() == trace.ids
    assert response_mask[0].tolist() == [float(s) for s in trace.sampled]
    assert response_mask[0, end1] == 1 and response_mask[0, end2] == 1  # the model's own eot is trained
    expected = torch.zeros(len(trace.ids))
    expected[end1], expected[end2] = 1.0, 3.0
    assert torch.equal(scores[0], expected)
    assert attention_mask.sum() == p + len(trace.ids)  # observations are attended to


def test_the_samplers_logprobs_follow_the_sampled_ids_and_are_zero_on_observations(setup):
    task, tok, tpl = setup
    eot = tok.convert_tokens_to_ids(tpl.end_of_turn(tok))
    turns = [char_ids(tok, t) for t in TURNS]
    scripted = [[-0.1 * (i + 1) for i in range(len(t) + 1)] for t in turns]  # one per sampled id, eot included
    policy, _ = scripted_policy(tok, turns, eot, logprobs=scripted)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings())
    _, _, response_mask, _ = episode_tensors([trace], pad_id=tok.pad_token_id)
    sampling = episode_logprobs([trace])
    assert sampling.shape == response_mask.shape
    n_obs = len(trace.ids) - len(scripted[0]) - len(scripted[1])
    assert sampling[0].tolist() == pytest.approx(scripted[0] + [0.0] * n_obs + scripted[1])
    # a turn that came without them (an engine not asked for any) leaves the episode with none, not half
    policy, _ = scripted_policy(tok, turns, eot, logprobs=[scripted[0], None])
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings())
    assert trace.logprobs is None and episode_logprobs([trace]) is None


def observation_text_after_turn1(task, tok, tpl) -> str:
    from tl_lightning.evaluation.multiturn import Episode

    ep = Episode(task, call_format=tpl.call_format)
    ep.step(TURNS[0])
    text = observation_text(tpl, tok, ep)
    assert text.startswith("\nOutput: ") and text.endswith("\nAssistant:")
    return text


def test_decode_then_reencode_would_change_the_ids_training_uses_the_sampled_ones(setup):
    task, tok, tpl = setup
    eot = tok.convert_tokens_to_ids(tpl.end_of_turn(tok))
    turns = [char_ids(tok, t) for t in TURNS]
    policy, _ = scripted_policy(tok, turns, eot)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings())
    full = trace.prompt_ids + trace.ids
    reencoded = tok(tok.decode(full, skip_special_tokens=False), add_special_tokens=False)["input_ids"]
    # re-tokenising the decoded text merges the sampled characters back into words: other ids, fewer of them
    assert reencoded != full and len(reencoded) < len(full)
    differs = next(i for i, (a, b) in enumerate(zip(full, reencoded, strict=False)) if a != b)
    assert differs == len(trace.prompt_ids)  # the first difference is the first sampled token
    sequences, attention_mask, response_mask, scores = episode_tensors([trace], pad_id=tok.pad_token_id)
    assert sequences[0].tolist() == full  # what training scores: the sampled ids


def test_observation_tokens_get_no_policy_loss_no_kl_and_no_advantage(setup):
    task, tok, tpl = setup
    eot = tok.convert_tokens_to_ids(tpl.end_of_turn(tok))
    policy, _ = scripted_policy(tok, [char_ids(tok, t) for t in TURNS], eot)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings())
    sequences, attention_mask, response_mask, scores = episode_tensors([trace], pad_id=tok.pad_token_id)
    mask, obs = response_mask, response_mask == 0
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(mask.shape, generator=g).requires_grad_()
    ref = torch.randn(mask.shape, generator=g)
    assert (kl_penalty(logp.detach(), ref, mask, 0.4)[obs] == 0).all()
    rewards = kl_penalty(logp.detach(), ref, mask, 0.4) + scores
    adv, _ = sampled_gae(rewards, torch.randn(mask.shape, generator=g), mask)
    assert (adv[obs] == 0).all() and (adv[mask == 1] != 0).all()
    loss, _ = policy_loss(logp, logp.detach() + 0.05, adv, mask, ref_logprobs=ref, kl_coef=0.1)
    loss.backward()
    assert (logp.grad[obs] == 0).all()
    eots = [i for i, t in enumerate(trace.ids) if t == eot and trace.sampled[i]]
    assert len(eots) == 2 and all(logp.grad[0, i] != 0 for i in eots)  # the end-of-turn tokens are trained


def test_unparseable_turn_ends_the_episode_with_the_unparseable_reward_and_max_turns_penalty(setup):
    task, tok, tpl = setup
    eot = tok.convert_tokens_to_ids(tpl.end_of_turn(tok))
    policy, _ = scripted_policy(tok, [char_ids(tok, " ???")], eot)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings(category_rewards={"unparseable": -3.0}))
    assert trace.components == {"calls": -3.0, "success": 0.0, "max_turns": 0.0}  # ended on error, not on max_turns
    assert turn_reward(["all_right", "parameter_missing"]) == 1.0 - 0.5
    # a wrong call every turn for 2 turns: the max_turns penalty
    policy, _ = scripted_policy(tok, [char_ids(tok, ' convert_units(value=1)')] * 2, eot)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings(max_turns=2, max_turns_penalty=-1.0))
    assert trace.components["max_turns"] == -1.0 and len(trace.result.turns) == 2
    # a context bound that leaves no room for a second turn truncates the episode (no penalty, no bonus)
    policy, _ = scripted_policy(tok, [char_ids(tok, t) for t in TURNS], eot)
    (trace,) = run_episodes(policy, tok, tpl, [task], EpisodeSettings(max_context=len(trace.prompt_ids) + 80))
    assert trace.truncated and trace.components["max_turns"] == 0.0 and len(trace.result.turns) == 1


def test_tasks_with_toolkits_the_sandbox_lacks_are_skipped_and_counted(setup):
    task = setup[0]
    alien = dataclasses.replace(task, id="alien", meta={**task.meta, "toolkits": ["teleporter"]})
    kept, skipped = known_sandbox_tasks([task, alien, task])
    assert [t.id for t in kept] == [task.id, task.id] and skipped == {"unknown_toolkit": 1}
