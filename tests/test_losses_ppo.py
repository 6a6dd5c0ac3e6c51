"""PPO maths against hand-computed values (tl_lightning.losses, PPO section)."""

from __future__ import annotations

import math

import pytest
import torch

from tl_lightning.losses import (
    gae,
    kl_penalty,
    last_token_index,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_rewards,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype))


def test_policy_loss_ratio_e_is_clipped_to_minus_1_2():
    logp, old, adv, mask = t([[1.0]]), t([[0.0]]), t([[1.0]]), t([[1.0]])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    # ratio e: max(-1 * e, -1 * 1.2) = -1.2
    assert loss.item() == pytest.approx(-1.2)
    assert stats["clipfrac"].item() == 1.0
    assert stats["ratio"].item() == pytest.approx(math.e)
    assert stats["approx_kl"].item() == pytest.approx(0.5)


def test_policy_loss_negative_advantage_and_unclipped_tokens_and_padding():
    # token 0: ratio e^-1, A=-1 -> max(e^-1, 0.8) = 0.8 (clipped side wins)
    # token 1: ratio 1,   A=2  -> -2 (inside the clip range)
    # token 2: padding with a huge value must not count
    logp, old = t([[-1.0, 0.5, 100.0]]), t([[0.0, 0.5, 0.0]])
    adv, mask = t([[-1.0, 2.0, 1e6]]), t([[1, 1, 0]])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((0.8 - 2.0) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_policy_loss_gradient_is_zero_when_clipped():
    logp = t([[1.0, 0.0]]).requires_grad_()
    loss, _ = ppo_policy_loss(logp, t([[0.0, 0.0]]), t([[1.0, 1.0]]), t([[1, 1]]))
    loss.backward()
    # clipped token: no gradient; unclipped token: d(-A*r)/dlogp / n = -1 * 1 / 2
    assert logp.grad.tolist() == [[0.0, -0.5]]


def test_gae_three_tokens_by_hand():
    r, v = t([[0.1, -0.2, 1.0]]), t([[0.5, 0.4, 0.3]])
    gamma, lam = 0.9, 0.8
    adv, ret = gae(r, v, t([[1, 1, 1]]), gamma, lam)
    d2 = 1.0 - 0.3  # V past the end is 0
    d1 = -0.2 + 0.9 * 0.3 - 0.4
    d0 = 0.1 + 0.9 * 0.4 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3])


def test_gae_paper_defaults_and_padding_ends_the_episode():
    # gamma 1, lambda 0.95; the row is 2 tokens long, the third is padding with junk values
    r, v = t([[0.0, 1.0, 7.0]]), t([[0.2, 0.6, 9.0]])
    adv, ret = gae(r, v, t([[1, 1, 0]]))
    a1 = 1.0 - 0.6
    a0 = (0.0 + 0.6 - 0.2) + 0.95 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, 0.0])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.2, 1.0, 0.0])


def test_gae_lambda_one_gamma_one_gives_monte_carlo_returns():
    r = t([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    v = torch.rand(2, 3, dtype=torch.float64)
    mask = t([[1, 1, 1], [1, 1, 0]])
    _, ret = gae(r, v, mask, gamma=1.0, lam=1.0)
    close(ret, [[6.0, 5.0, 3.0], [9.0, 5.0, 0.0]])


def test_value_loss_clip_cases():
    old, ret, mask = t([[0.0, 0.0, 0.0]]), t([[1.0, 1.0, -1.0]]), t([[1, 1, 1]])
    # token 0: V=0.1 inside the clip: both errors 0.81
    # token 1: V=1.0 moved past the clip: clipped V=0.2 -> err 0.64 > unclipped 0 -> 0.64 counts
    # token 2: V=1.0 moved away from R=-1: clipped 0.2 -> err 1.44 < unclipped 4 -> 4 counts
    values = t([[0.1, 1.0, 1.0]])
    loss, stats = ppo_value_loss(values, old, ret, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.64 + 4.0) / 3)
    assert stats["vf_clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["value_error"].item() == pytest.approx((0.81 + 0.0 + 4.0) / 3)
    unclipped, _ = ppo_value_loss(values, old, ret, mask, clip=None)
    assert unclipped.item() == pytest.approx(0.5 * (0.81 + 0.0 + 4.0) / 3)


def test_value_loss_ignores_padding():
    loss, _ = ppo_value_loss(t([[1.0, 50.0]]), t([[1.0, 0.0]]), t([[0.0, 0.0]]), t([[1, 0]]))
    assert loss.item() == pytest.approx(0.5)


def test_masked_mean_var_whiten():
    x, mask = t([[1.0, 2.0, 100.0], [3.0, 4.0, -100.0]]), t([[1, 1, 0], [1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 3.5])
    assert masked_var(x, mask).item() == pytest.approx(5.0 / 3)  # unbiased: sum sq dev 5 over n-1=3
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)
    w = masked_whiten(x, mask)
    s = math.sqrt(5.0 / 3)
    close(w, [[-1.5 / s, -0.5 / s, 0.0], [0.5 / s, 1.5 / s, 0.0]])
    kept = masked_whiten(x, mask, shift_mean=False)
    assert kept[0, 0].item() == pytest.approx(-1.5 / s + 2.5)
    assert masked_mean(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0.0


def test_kl_penalty_and_token_rewards():
    logp, ref = t([[-1.0, -2.0, -0.5]]), t([[-1.5, -1.0, 0.0]])
    mask = t([[1, 1, 0]])
    close(kl_penalty(logp, ref, mask, 0.4), [[-0.2, 0.4, 0.0]])
    rewards = token_rewards(t([7.0]), logp, ref, mask, kl_coef=0.4, clip=5.0)
    # score clipped to 5 and added to the last valid token (index 1)
    close(rewards, [[-0.2, 5.4, 0.0]])
    unclipped = token_rewards(t([-1.5]), logp, ref, mask, kl_coef=0.0, clip=None)
    close(unclipped, [[0.0, -1.5, 0.0]])


def test_last_token_index_and_empty_rows():
    mask = t([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 2, 0]
    rewards = token_rewards(t([1.0, 1.0, 1.0]), torch.zeros(3, 3), torch.zeros(3, 3), mask, 0.1)
    assert rewards.sum(dim=1).tolist() == [1.0, 1.0, 0.0]
