"""Every policy loss against values computed by hand."""

import math

import pytest
import torch

from reasoner.losses import (clipped_policy_loss, dpo_loss, full_step_dpo_loss, sigmoid_preference, step_apo_loss,
                             svpo_loss, tree_grpo_advantages, visit_smoothing)

T = lambda *values: torch.tensor(values, dtype=torch.float32)
log_sigmoid = lambda z: -math.log1p(math.exp(-z))


def test_dpo_loss_by_hand():
    # h_w = -1 - (-2) = 1, h_l = -3 - (-2.5) = -0.5, beta 0.1: z = 0.15
    losses, chosen, rejected = dpo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), beta=0.1)
    assert losses.item() == pytest.approx(-log_sigmoid(0.15))
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.05)
    smoothed, _, _ = dpo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), beta=0.1, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(-0.8 * log_sigmoid(0.15) - 0.2 * log_sigmoid(-0.15))
    # equal policy and reference: log 2
    assert dpo_loss(T(-1.0), T(-2.0), T(-1.0), T(-2.0))[0].item() == pytest.approx(math.log(2))


def test_mcts_dpo_visit_smoothing_by_hand():
    # conf = 1 / (1 + N_l / max(1, N_w)): N_w 9, N_l 1 → conf 0.9, ε 0.1; N_w 0 counts as 1; equal visits cap at 0.5
    eps = visit_smoothing(T(9.0, 0.0, 4.0, 1.0), T(1.0, 1.0, 4.0, 12.0))
    assert eps.tolist() == pytest.approx([0.1, 0.5, 0.5, 0.5])
    assert visit_smoothing(T(3.0), T(0.0)).item() == 0.0
    # one ε per pair inside the DPO loss
    losses, _, _ = dpo_loss(T(-1.0, -1.0), T(-3.0, -3.0), T(-2.0, -2.0), T(-2.5, -2.5), beta=0.1,
                            label_smoothing=T(0.1, 0.5))
    assert losses.tolist() == pytest.approx([-0.9 * log_sigmoid(0.15) - 0.1 * log_sigmoid(-0.15),
                                             -0.5 * log_sigmoid(0.15) - 0.5 * log_sigmoid(-0.15)])


def test_step_apo_offset_sign():
    # beta 0.3: β(h_w − h_l) = 0.3 * 1.5 = 0.45; α(Q_w − Q_l) = 1.0 * (0.8 - (-0.6)) = 1.4; z = -0.95
    losses, _, _ = step_apo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), T(0.8), T(-0.6), beta=0.3, alpha=1.0)
    assert losses.item() == pytest.approx(-log_sigmoid(-0.95))
    # a larger advantage gap makes the same pair cost more (keeps the gradient longer)
    small, _, _ = step_apo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), T(0.2), T(-0.1), beta=0.3, alpha=1.0)
    assert small.item() < losses.item()
    # alpha 0 is plain DPO
    assert step_apo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), T(0.8), T(-0.6), beta=0.3, alpha=0.0)[0].item() == \
        pytest.approx(dpo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), beta=0.3)[0].item())


def test_svpo_composite_by_hand():
    losses, parts = svpo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), value_chosen=T(0.5), value_rejected=T(0.45),
                              q_chosen=T(1.0), q_rejected=T(-1.0), beta=0.1, mse_weight=0.5, rank_weight=2.0, margin=0.1)
    dpo = -log_sigmoid(0.15)
    mse = 0.5 * ((0.5 - 1.0) ** 2 + (0.45 + 1.0) ** 2)
    rank = 0.1 - 0.05
    assert parts["mse"].item() == pytest.approx(mse) and parts["rank"].item() == pytest.approx(rank)
    assert losses.item() == pytest.approx(dpo + 0.5 * mse + 2.0 * rank)
    _, gap = svpo_loss(T(-1.0), T(-3.0), T(-2.0), T(-2.5), T(0.5), T(0.45), T(1.0), T(-1.0), margin=None)
    assert gap["rank"].item() == pytest.approx(2.0 - 0.05)


def test_full_step_dpo_by_hand():
    # two responses of 2 tokens; response 0 wins. Padding token (reward 0) in response 1.
    logps = T([-1.0, -2.0], [-0.5, -4.0]).reshape(2, 2)
    ref = T([-1.5, -2.0], [-0.5, -4.0]).reshape(2, 2)
    step_rewards = T([0.9, 0.1], [0.2, 0.0]).reshape(2, 2)
    loss, parts = full_step_dpo_loss(logps, ref, step_rewards, rewards=T(1.0, 0.0), beta=0.05, token_rate=1.0,
                                     reward_temp=0.5)
    delta0 = [0.5, 0.0]
    h0, h1 = 0.05 * 0.5, 0.0
    g = 1 / (1 + math.exp(-(h1 - h0)))
    e = [math.exp(0.5 * 0.9), math.exp(0.5 * 0.1)]
    p_pos = [v / sum(e) for v in e]
    gate = [1 / (1 + math.exp(d)) for d in delta0]
    positive = sum(a * p * l for a, p, l in zip(gate, p_pos, [-1.0, -2.0]))
    negative = 0.5 * 1.0 * -0.5  # gate σ(0) = 0.5, one valid token with weight 1
    assert loss.item() == pytest.approx(-g * (positive - negative))
    assert parts["pairs"].item() == 1
    equal, none = full_step_dpo_loss(logps, ref, step_rewards, rewards=T(1.0, 1.0))
    assert equal.item() == 0.0 and none["pairs"].item() == 0


def test_full_step_dpo_gradient_pushes_winner_up():
    logps = torch.tensor([[-1.0, -2.0], [-1.0, -2.0]], requires_grad=True)
    loss, _ = full_step_dpo_loss(logps, logps.detach().clone(), T([0.9, 0.5], [0.3, 0.2]).reshape(2, 2), T(1.0, 0.0))
    loss.backward()
    assert (logps.grad[0] < 0).all() and (logps.grad[1] > 0).all()  # descent raises the winner, lowers the loser


def test_tree_grpo_advantages_by_hand():
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0]
    prompts = ["p", "p", "p", "p", "q"]
    trees = [0, 0, 1, 1, 0]
    adv = tree_grpo_advantages(rewards, prompts, trees)
    inter_std = torch.tensor([1.0, 0.0, 1.0, 1.0]).std().item()  # unbiased
    inter = [(r - 0.75) / (inter_std + 1e-6) for r in (1.0, 0.0, 1.0, 1.0)]
    intra_std = math.sqrt(0.5)
    intra = [(1 - 0.5) / (intra_std + 1e-6), (0 - 0.5) / (intra_std + 1e-6), 0.0, 0.0]
    for i in range(4):
        assert adv[i].item() == pytest.approx(inter[i] + intra[i], rel=1e-5)
    assert adv[4].item() == pytest.approx(0.0 + 0.0)  # singleton groups: mean 0, std 1 → R itself = 0
    assert tree_grpo_advantages([2.0], ["p"], [0], mode="grpo")[0].item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        tree_grpo_advantages(rewards, prompts, trees, mode="nope")


def test_clipped_policy_loss_by_hand():
    logps = T([math.log(1.5), math.log(0.5)]).reshape(1, 2)
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    loss, parts = clipped_policy_loss(logps, old, ref_logps=logps.clone(), advantages=T(1.0), mask=mask)
    # Â = 1: token 1 ratio 1.5 → max(-1.5, -1.2) = -1.2; token 2 ratio 0.5 → max(-0.5, -0.8) = -0.5
    assert parts["policy_loss"].item() == pytest.approx((-1.2 - 0.5) / 2)
    assert parts["kl"].item() == pytest.approx(0.0) and loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    # Â = -1, ratio 5 (log 5): clip gives max(5, 1.2) = 5, dual clip min(5, 3) = 3
    big = T([math.log(5.0)]).reshape(1, 1)
    _, dual = clipped_policy_loss(big, torch.zeros(1, 1), big.clone(), T(-1.0), torch.ones(1, 1))
    assert dual["policy_loss"].item() == pytest.approx(3.0)
    # k3 KL with log π_ref − log π = 0.5: e^0.5 − 0.5 − 1
    _, kl = clipped_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), T([0.5]).reshape(1, 1), T(0.0), torch.ones(1, 1))
    assert kl["kl"].item() == pytest.approx(math.exp(0.5) - 1.5)
    # entropy bonus: L − c_ent · token-mean(H), over masked tokens only; absent when no entropy is given
    entropy, two = T([2.0, 4.0, 100.0]).reshape(1, 3), T([1.0, 1.0, 0.0]).reshape(1, 3)
    zeros = torch.zeros(1, 3)
    bonus, parts = clipped_policy_loss(zeros, zeros, zeros, T(0.0), two, entropy=entropy, entropy_coef=0.5)
    assert parts["entropy"].item() == pytest.approx(3.0) and bonus.item() == pytest.approx(-1.5)
    assert "entropy" not in kl


def test_sigmoid_preference_is_symmetric_in_smoothing():
    z = T(0.7)
    assert sigmoid_preference(z, 1.0).item() == pytest.approx(sigmoid_preference(-z, 0.0).item())
