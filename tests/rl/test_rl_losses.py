"""RL maths against hand-computed values (tl_lightning.rl.losses, rollout rewards, GAE)."""

from __future__ import annotations

import math

import pytest
import torch

from tl_lightning.rl import (
    clip_return,
    gae,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    scores_at_last_token,
    value_loss,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype))


def test_policy_loss_ratio_e_is_clipped_to_minus_1_2():
    logp, old, adv, mask = t([[1.0]]), t([[0.0]]), t([[1.0]]), t([[1.0]])
    loss, stats = policy_loss(logp, old, adv, mask, 0.2)
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
    loss, stats = policy_loss(logp, old, adv, mask, 0.2)
    assert loss.item() == pytest.approx((0.8 - 2.0) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_policy_loss_gradient_is_zero_when_clipped():
    logp = t([[1.0, 0.0]]).requires_grad_()
    loss, _ = policy_loss(logp, t([[0.0, 0.0]]), t([[1.0, 1.0]]), t([[1, 1]]))
    loss.backward()
    # clipped token: no gradient; unclipped token: d(-A*r)/dlogp / n = -1 * 1 / 2
    assert logp.grad.tolist() == [[0.0, -0.5]]


def test_policy_loss_is_weights_scale_each_surrogate_but_not_the_kl_term():
    # token 0: ratio 1, A=2 -> -2, weight 0.5 -> -1; token 1: ratio 1, A=-1 -> 1, weight 2 -> 2; token 2: padding
    logp = t([[0.0, 0.0, 0.0]])
    adv, mask, w = t([[2.0, -1.0, 5.0]]), t([[1, 1, 0]]), t([[0.5, 2.0, 9.0]])
    loss, _ = policy_loss(logp, logp, adv, mask, is_weights=w)
    assert loss.item() == pytest.approx((-1.0 + 2.0) / 2)
    # with KL in the loss: k3(logp=0, ref=log 2) = 2 - 1 - log 2 per token, added after the weights
    ref = t([[math.log(2)] * 3])
    loss, _ = policy_loss(logp, logp, adv, mask, ref_logprobs=ref, kl_coef=0.1, is_weights=w)
    assert loss.item() == pytest.approx((-1.0 + 2.0) / 2 + 0.1 * (1 - math.log(2)))


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
    loss, stats = value_loss(values, old, ret, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.64 + 4.0) / 3)
    assert stats["vf_clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["value_error"].item() == pytest.approx((0.81 + 0.0 + 4.0) / 3)
    unclipped, _ = value_loss(values, old, ret, mask, clip=None)
    assert unclipped.item() == pytest.approx(0.5 * (0.81 + 0.0 + 4.0) / 3)


def test_value_loss_ignores_padding():
    loss, _ = value_loss(t([[1.0, 50.0]]), t([[1.0, 0.0]]), t([[0.0, 0.0]]), t([[1, 0]]))
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


def test_kl_penalty_and_the_clipped_score_at_the_last_token():
    logp, ref = t([[-1.0, -2.0, -0.5]]), t([[-1.5, -1.0, 0.0]])
    mask = t([[1, 1, 0]])
    close(kl_penalty(logp, ref, mask, 0.4), [[-0.2, 0.4, 0.0]])
    scores = scores_at_last_token(t([7.0]), mask)
    close(scores, [[0.0, 7.0, 0.0]])  # the last valid token is index 1
    # clipped to 5 there: DeepSpeed-Chat's clamp of the sequence reward
    close(kl_penalty(logp, ref, mask, 0.4) + clip_return(scores.double(), 5.0), [[-0.2, 5.4, 0.0]])
    close(clip_return(scores_at_last_token(t([-1.5]), mask), None), [[0.0, -1.5, 0.0]])


def test_scores_at_last_token_and_empty_rows():
    mask = t([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    scores = scores_at_last_token(t([1.0, 2.0, 3.0]), mask)
    close(scores, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))


def test_clip_return_holds_each_running_return_within_the_clip():
    # an episode of turns earning 2, 2, 2, -1 (clip 5): the running sums 2, 4, 6, 5 are clipped to 2, 4, 5, 5, so the
    # third turn earns 1 and the fourth 0 (its -1 is paid out of the excess above the clip)
    scores = t([[2.0, 0.0, 2.0, 2.0, 0.0, -1.0]])
    clipped = clip_return(scores, 5.0)
    close(clipped, [[2.0, 0.0, 2.0, 1.0, 0.0, 0.0]])
    assert clipped.sum().item() == 5.0
    # -3, -3: the second turn earns -2, and the return is -5
    close(clip_return(t([[-3.0, -3.0]]), 5.0), [[-3.0, -2.0]])
    # a row of one reward is a plain clamp, both ways
    close(clip_return(t([[0.0, -7.0], [9.0, 0.0]]), 5.0), [[0.0, -5.0], [5.0, 0.0]])
    assert clip_return(scores, None) is scores
