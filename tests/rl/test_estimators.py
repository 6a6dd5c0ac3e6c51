"""Estimators against hand-computed values (tl_lightning.rl: GAE, the GRPO family, aggregation, GSPO, k3)."""

from __future__ import annotations

import math

import pytest
import torch

from tl_lightning.rl import (
    ESTIMATORS,
    Rollout,
    aggregate,
    compute_advantages,
    group_advantages,
    k3_kl,
    masked_whiten,
    policy_loss,
    sampled_gae,
    scores_at_last_token,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# --------------------------------------------------------------------------------- estimators
# Two groups of G=4: [1, 0, 0, 0] (mean 0.25, Bessel std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5) and an
# all-equal group [2, 2, 2, 2], which carries no signal: advantage exactly 0 under every estimator.
SCORES = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])


def test_grpo_divides_by_the_group_std_and_zeroes_unanimous_groups():
    adv, zero = group_advantages(SCORES, 4, "grpo")
    close(adv, [1.5, -0.5, -0.5, -0.5, 0, 0, 0, 0], atol=1e-5, rtol=0)
    assert zero.tolist() == [False, True]
    assert (adv[4:] == 0).all()  # exact, not merely small


def test_dr_grpo_keeps_the_raw_deviation_from_the_group_mean():
    adv, zero = group_advantages(SCORES, 4, "dr_grpo")
    close(adv, [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    assert zero.tolist() == [False, True]


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    adv, _ = group_advantages(SCORES, 4, "rloo")
    # sample 0: 1 - mean(0, 0, 0) = 1; samples 1-3: 0 - mean(1, 0, 0) = -1/3
    close(adv, [1.0, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0])


@pytest.mark.parametrize("bad", [1, 3, 0])
def test_group_size_must_be_at_least_2_and_divide_the_samples(bad):
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(SCORES, bad, "grpo")


def test_group_advantages_rejects_a_non_group_estimator():
    with pytest.raises(ValueError, match="estimator"):
        group_advantages(SCORES, 4, "gae")


def test_reinforce_pp_return_to_go_with_per_token_kl_then_batch_whitening():
    # row 0: 2 tokens, score 1, logp - ref = 0.5 each -> rewards [-0.1, -0.1 + 1] -> returns [0.8, 0.9]
    # row 1: 3 tokens, score -1, no KL -> rewards [0, 0, -1] -> returns [-1, -1, -1]
    logp, ref = t([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]), t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = t([[1, 1, 0], [1, 1, 1]])
    adv = compute_advantages("reinforce_pp", rollout(logp, ref, mask, t([1.0, -1.0])), kl_coef=0.2).advantages
    returns = t([[0.8, 0.9, 0.0], [-1.0, -1.0, -1.0]])
    vals = torch.tensor([0.8, 0.9, -1.0, -1.0, -1.0], dtype=torch.float64)
    expected = (returns - vals.mean()) / vals.std() * mask  # Bessel std, as masked_whiten
    close(adv, expected, atol=1e-6, rtol=0)
    close(masked_whiten(returns, mask), expected, atol=1e-6, rtol=0)


def rollout(logp, ref, mask, scores=None, values=None) -> Rollout:
    """A rollout over [B, T] tensors; ``scores`` [B] at each row's last token, or [B, T] where they fall."""
    b, n = mask.shape
    scores = torch.zeros(b) if scores is None else scores
    at = scores_at_last_token(scores, mask).to(mask) if scores.dim() == 1 else scores
    values = torch.zeros_like(mask) if values is None else values
    return Rollout(torch.zeros(b, n + 1, dtype=torch.long), torch.ones(b, n + 1, dtype=torch.long), mask, at, logp, ref,
                   values, [""] * b)


def test_critic_free_grpo_subtracts_the_sequence_kl_from_the_score_and_broadcasts_over_tokens():
    # scores [1, 1]; sequence KL [0.5, 0] * 0.2 -> effective [0.9, 1.0]: mean 0.95, std sqrt(2 * 0.05^2) = 0.0707
    ro = rollout(t([[0.25, 0.25, 0.0], [0.0, 0.0, 0.0]]), t([[0.0] * 3] * 2), t([[1, 1, 0], [1, 0, 0]]), t([1.0, 1.0]))
    adv, _, stats = compute_advantages("grpo", ro, group_size=2, kl_coef=0.2)
    s = 1 / math.sqrt(2)
    close(adv, [[-s, -s, 0.0], [s, 0.0, 0.0]], atol=1e-4, rtol=0)
    assert stats["frac_zero_std_groups"].item() == 0.0
    # the same rollout with the KL as a loss term instead: equal scores -> a unanimous group, advantage 0
    adv, _, stats = compute_advantages("grpo", ro, group_size=2, kl_coef=0.0)
    assert (adv == 0).all() and stats["frac_zero_std_groups"].item() == 1.0


def test_default_aggregation_per_estimator():
    assert [ESTIMATORS[e].loss_agg for e in ("gae", "grpo", "dr_grpo", "rloo", "reinforce_pp")] == [
        "token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean", "token_mean"]


# --------------------------------------------------------------------------------- aggregation
PER_TOKEN = t([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
AGG_MASK = t([[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # the third row is empty: it never counts


def test_token_mean_weighs_every_token_alike():
    assert aggregate(PER_TOKEN, AGG_MASK, "token_mean").item() == pytest.approx(6 / 3)


def test_seq_mean_token_mean_averages_each_row_first():
    assert aggregate(PER_TOKEN, AGG_MASK, "seq_mean_token_mean").item() == pytest.approx((1.5 + 3.0) / 2)


def test_seq_mean_token_sum_norm_divides_by_a_constant():
    assert aggregate(PER_TOKEN, AGG_MASK, "seq_mean_token_sum_norm", norm=4).item() == pytest.approx((3 / 4 + 3 / 4) / 2)
    # default constant: the padded width T = 3
    assert aggregate(PER_TOKEN, AGG_MASK, "seq_mean_token_sum_norm").item() == pytest.approx((1.0 + 1.0) / 2)


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="loss_agg"):
        aggregate(PER_TOKEN, AGG_MASK, "sum")


# --------------------------------------------------------------------------------- policy loss
def test_defaults_are_ppos_clipped_surrogate_averaged_over_the_batchs_tokens():
    g = torch.Generator().manual_seed(0)
    logp, old, adv = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    mask = (torch.rand(3, 5, generator=g) > 0.3).double()
    ours, stats = policy_loss(logp, old, adv, mask, 0.2)
    ratio = torch.exp(logp - old)
    per_token = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    close(ours, (per_token * mask).sum() / mask.sum())
    close(stats["ratio"], (ratio * mask).sum() / mask.sum())


def test_asymmetric_clip_caps_the_ratio_at_1_plus_clip_high_and_1_minus_clip_low():
    # A=+1, ratio e^0.5 = 1.65 -> capped at 1.28: loss -1.28.  A=-1, ratio e^-1 = 0.37 -> max(0.37, 0.8) = 0.8
    loss, stats = policy_loss(t([[0.5]]), t([[0.0]]), t([[1.0]]), t([[1.0]]), clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-1.28)
    loss, _ = policy_loss(t([[-1.0]]), t([[0.0]]), t([[-1.0]]), t([[1.0]]), clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(0.8)
    # a ratio of 1.25 is clipped symmetrically (0.2) but not with clip-higher (0.28)
    lr = math.log(1.25)
    assert policy_loss(t([[lr]]), t([[0.0]]), t([[1.0]]), t([[1.0]]), 0.2)[0].item() == pytest.approx(-1.2)
    assert policy_loss(t([[lr]]), t([[0.0]]), t([[1.0]]), t([[1.0]]), 0.2, 0.28)[0].item() == pytest.approx(-1.25)


def test_gspo_sequence_ratio_by_hand():
    # row 0: log-ratios [0.2, -0.4] -> sequence ratio exp(mean) = e^-0.1 = 0.905 (inside [0.8, 1.2]): -0.905 per token
    # row 1: log-ratio [0.6] -> e^0.6 = 1.82, clipped to 1.2: -1.2
    logp = t([[0.2, -0.4, 9.0], [0.6, 0.0, 0.0]]).requires_grad_()
    old, adv, mask = torch.zeros(2, 3, dtype=torch.float64), t([[1.0] * 3, [1.0] * 3]), t([[1, 1, 0], [1, 0, 0]])
    s0 = math.exp(-0.1)
    loss, stats = policy_loss(logp, old, adv, mask, 0.2, ratio_level="sequence")
    assert loss.item() == pytest.approx((-2 * s0 - 1.2) / 3)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)
    loss.backward()
    # loss = (-s0 - s0 - 1.2) / 3 and s0 = exp(mean of row 0's two log-ratios): d/dlogp_t = 2 * (-s0 / 2) / 3;
    # the clipped row 1 and the padding get no gradient
    close(logp.grad, [[-s0 / 3, -s0 / 3, 0.0], [0.0, 0.0, 0.0]])
    # per-token ratios give another loss: e^0.2 = 1.22 is clipped to 1.2, e^-0.4 = 0.67 is not
    token, _ = policy_loss(logp.detach(), old, adv, mask, 0.2)
    assert token.item() == pytest.approx((-1.2 - math.exp(-0.4) - 1.2) / 3)
    with pytest.raises(ValueError, match="ratio_level"):
        policy_loss(logp, old, adv, mask, ratio_level="group")


def test_k3_kl_by_hand_and_as_a_loss_term():
    logp, ref = t([[0.0, -0.3]]), t([[math.log(0.5), -0.3]])
    # d = ln 0.5: 0.5 - ln 0.5 - 1 = 0.1931; equal log-probs: exactly 0
    close(k3_kl(logp, ref), [[0.5 - math.log(0.5) - 1.0, 0.0]])
    loss, stats = policy_loss(logp, logp, torch.zeros_like(logp), t([[1, 1]]), ref_logprobs=ref, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.1 * (0.5 - math.log(0.5) - 1.0) / 2)
    assert stats["kl_k3"].item() == pytest.approx((0.5 - math.log(0.5) - 1.0) / 2)


def test_sampled_gae_bootstraps_across_observation_tokens():
    # turn 1 = columns 0-1 (reward 1 at its last token), observation = columns 2-3, turn 2 = column 4 (reward 2)
    mask = t([[1, 1, 0, 0, 1, 0]])
    rewards = t([[0.0, 1.0, 0.0, 0.0, 2.0, 0.0]])
    values = t([[0.5, 0.25, 9.0, 9.0, 1.0, 0.0]])  # observation values must be ignored
    adv, ret = sampled_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    a4 = 2.0 - 1.0                          # last generated token: delta = r - V
    a1 = 1.0 + 1.0 - 0.25 + 0.5 * a4        # bootstraps from column 4, not from the observation
    a0 = 0.0 + 0.25 - 0.5 + 0.5 * a1
    close(adv, [[a0, a1, 0.0, 0.0, a4, 0.0]])
    close(ret, [[a0 + 0.5, a1 + 0.25, 0.0, 0.0, a4 + 1.0, 0.0]])


# --------------------------------------------------------------------------------- multi-turn rollouts
# An episode: turn 1 = columns 0-1 (reward 4 at its last token), an observation = columns 2-3, turn 2 = column 4
# (reward 4, plus a success bonus of 3): a return of 11, clipped to 5 as configured.
EPISODE_MASK = t([[1, 1, 0, 0, 1]])
EPISODE_SCORES = t([[0.0, 4.0, 0.0, 0.0, 7.0]])


def test_gae_on_an_episode_holds_the_return_to_reward_clip():
    ro = rollout(torch.zeros(1, 5, dtype=torch.float64), torch.zeros(1, 5, dtype=torch.float64), EPISODE_MASK, EPISODE_SCORES)
    _, returns, _ = compute_advantages("gae", ro, reward_clip=5.0, gamma=1.0, lam=1.0, whiten=False)
    # the first turn keeps its 4; the second adds only what the clip leaves: 1
    close(returns, [[5.0, 5.0, 0.0, 0.0, 1.0]])
    _, unclipped, _ = compute_advantages("gae", ro, reward_clip=None, gamma=1.0, lam=1.0, whiten=False)
    close(unclipped, [[11.0, 11.0, 0.0, 0.0, 7.0]])


def test_group_estimators_score_an_episode_by_its_clipped_return():
    two = torch.cat([EPISODE_MASK, EPISODE_MASK])
    scores = torch.cat([EPISODE_SCORES, torch.zeros_like(EPISODE_SCORES)])  # returns 11 and 0: clipped 5 and 0
    ro = rollout(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64), two, scores)
    adv, _, _ = compute_advantages("dr_grpo", ro, group_size=2, reward_clip=5.0)
    close(adv, [[2.5, 2.5, 0.0, 0.0, 2.5], [-2.5, -2.5, 0.0, 0.0, -2.5]])


def test_reinforce_pp_return_to_go_runs_across_observation_tokens():
    # rewards at columns 1 and 4 (1 and 2, no clip, no KL): return-to-go 3, 3, -, -, 2 over the sampled tokens
    mask, zeros = t([[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]]), torch.zeros(2, 5, dtype=torch.float64)
    scores = t([[0.0, 1.0, 0.0, 0.0, 2.0], [0.0] * 5])
    adv = compute_advantages("reinforce_pp", rollout(zeros, zeros, mask, scores), reward_clip=None).advantages
    returns = t([[3.0, 3.0, 0.0, 0.0, 2.0], [0.0] * 5])
    close(adv, masked_whiten(returns, mask))


def test_every_advantage_choice_has_an_estimator_and_nothing_else():
    from typing import get_args

    from tl_lightning.rl import Advantage

    assert set(get_args(Advantage)) == set(ESTIMATORS)
    with pytest.raises(ValueError, match="advantage must be one of"):
        compute_advantages("ppo", rollout(*(torch.zeros(1, 2),) * 2, torch.ones(1, 2)))
