"""Policy losses as pure tensor functions (algorithms.md sections 0.1, 1.11, 2.2, 3.3, 4.3, 6.2–6.3).

Every function takes per-example (or per-token) tensors and returns per-example losses plus what a trainer
logs, so each is tested alone against hand-computed values. Log-probabilities are *summed* over the tokens
of a step (or response); the prompt and earlier steps never enter them.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["dpo_loss", "step_apo_loss", "svpo_loss", "full_step_dpo_loss", "tree_grpo_advantages",
           "clipped_policy_loss", "sigmoid_preference", "visit_smoothing"]


def sigmoid_preference(z: torch.Tensor, label_smoothing: float | torch.Tensor = 0.0) -> torch.Tensor:
    """−(1−ε)·log σ(z) − ε·log σ(−z): the (conservative) DPO loss of a margin z (ε a number, or one per pair)."""
    return -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def visit_smoothing(visits_chosen: torch.Tensor, visits_rejected: torch.Tensor) -> torch.Tensor:
    """MCTS-DPO's conservative label smoothing from the pair's visit counts (5.3, ``calculate_preference_confidence``).

    conf = 1 / (1 + N_l / max(1, N_w)),  ε = min(1 − conf, 0.5) = min(N_l / (max(1, N_w) + N_l), 0.5).
    A chosen step the search visited far more often than the rejected one is a confident preference (ε → 0);
    at equal visits ε = 0.5 and the pair's loss no longer prefers either side. Pass ε to `dpo_loss`.
    """
    chosen = visits_chosen.float().clamp(min=1.0)
    confidence = 1.0 / (1.0 + visits_rejected.float() / chosen)
    return (1.0 - confidence).clamp(max=0.5)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1,
             label_smoothing: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sigmoid DPO (0.1); Step-DPO (2.2) is this on one-step completions with the correct prefix as prompt;
    MCTS-DPO (5.3) with a per-pair ε from `visit_smoothing`.

    h_w = log π(y_w|c) − log π_ref(y_w|c),  h_l likewise;
    L = −(1−ε)·log σ(β(h_w − h_l)) − ε·log σ(−β(h_w − h_l)).
    Returns (losses, chosen_rewards = β·h_w, rejected_rewards = β·h_l), each of shape [batch].
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    losses = sigmoid_preference(chosen_rewards - rejected_rewards, label_smoothing)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def step_apo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                  ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, q_chosen: torch.Tensor,
                  q_rejected: torch.Tensor, beta: float = 0.3, alpha: float = 1.0,
                  label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step-APO (4.3, CPL's ``sigmoid_a_α``): the advantage gap is an offset inside the sigmoid.

    z = β(h_w − h_l) − α(Q_w − Q_l);  L = −(1−ε)·log σ(z) − ε·log σ(−z).
    Siblings share V(s), so A_w − A_l = Q_w − Q_l. A pair with a large advantage gap keeps a gradient until
    the implicit-reward margin exceeds α(Q_w − Q_l): critical steps are pushed further.
    Returns (losses, β·h_w, β·h_l). [UNVERIFIED] (13.3): that the paper writes the offset's weight as α; the code's
    form is ``sigmoid_a_{α}``.
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    z = chosen_rewards - rejected_rewards - alpha * (q_chosen - q_rejected)
    return sigmoid_preference(z, label_smoothing), chosen_rewards.detach(), rejected_rewards.detach()


def svpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, value_chosen: torch.Tensor,
              value_rejected: torch.Tensor, q_chosen: torch.Tensor, q_rejected: torch.Tensor, beta: float = 0.1,
              mse_weight: float = 0.5, rank_weight: float = 0.5, margin: float | None = 0.1,
              label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SVPO (1.11) — RECONSTRUCTED: the paper's exact form, weights and margin are unverified.

    L = L_DPO + λ₁·L_MSE + λ₂·L_rank, per pair, with the policy and value head sharing the backbone:
      L_DPO  = −log σ(β(h_w − h_l))                           (step DPO; conservative with ``label_smoothing``),
      L_MSE  = ½[(V_w − Q_w)² + (V_l − Q_l)²]                 (value regression to the MCTS Q, tanh values),
      L_rank = max(0, γ − (V_w − V_l)), γ = ``margin``, or the Q gap Q_w − Q_l when ``margin`` is None.
    Returns (losses [batch], parts) with the three terms per pair in ``parts``.
    """
    dpo, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen_logps, policy_rejected_logps,
                                                     ref_chosen_logps, ref_rejected_logps, beta, label_smoothing)
    mse = 0.5 * ((value_chosen - q_chosen) ** 2 + (value_rejected - q_rejected) ** 2)
    gamma = (q_chosen - q_rejected) if margin is None else torch.full_like(value_chosen, margin)
    rank = torch.clamp(gamma - (value_chosen - value_rejected), min=0)
    losses = dpo + mse_weight * mse + rank_weight * rank
    return losses, {"dpo": dpo, "mse": mse, "rank": rank, "chosen_rewards": chosen_rewards,
                    "rejected_rewards": rejected_rewards}


def full_step_dpo_loss(token_logps: torch.Tensor, ref_token_logps: torch.Tensor, token_rewards: torch.Tensor,
                       rewards: torch.Tensor, beta: float = 0.05, token_rate: float = 1.0,
                       reward_temp: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Full-Step-DPO step-wise loss of one prompt's K responses (3.3, from the reference code).

    Inputs are [K, T]: per-token log-probs ℓ (policy) and ℓ_ref, and per-token step rewards w (the reward of
    the step a token belongs to; 0 marks padding, so real rewards must be non-zero), plus outcome rewards
    R [K]. With δ = ℓ − ℓ_ref and everything but ℓ detached:
      H_k = β Σ_t δ_{k,t};  g_ij = σ(H_j − H_i);
      a⁺ = σ(−ρδ), a⁻ = σ(ρδ);  p⁺_k = softmax_t(τ w_k), p⁻_k = softmax_t(−τ w_k) over valid tokens;
      P_i = Σ_t a⁺ p⁺ ℓ_i,  N_j = Σ_t a⁻ p⁻ ℓ_j;
      L = mean over pairs (i, j) with R_i > R_j of −g_ij (P_i − N_j).
    Returns (scalar loss, parts) — a zero loss that keeps the graph when no pair has R_i > R_j.
    """
    valid = token_rewards != 0
    delta = (token_logps - ref_token_logps).detach() * valid
    implicit = beta * delta.sum(-1)
    masked = lambda x, fill: torch.where(valid, x, torch.full_like(x, fill))
    p_pos = torch.softmax(masked(reward_temp * token_rewards, float("-inf")), dim=-1).nan_to_num(0.0)
    p_neg = torch.softmax(masked(-reward_temp * token_rewards, float("-inf")), dim=-1).nan_to_num(0.0)
    gate_pos, gate_neg = torch.sigmoid(-token_rate * delta), torch.sigmoid(token_rate * delta)
    logps = token_logps * valid
    positive = (gate_pos * p_pos * logps).sum(-1)
    negative = (gate_neg * p_neg * logps).sum(-1)
    winners, losers = torch.nonzero(rewards[:, None] > rewards[None, :], as_tuple=True)
    if winners.numel() == 0:
        return (token_logps * 0).sum(), {"pairs": torch.tensor(0)}
    weight = torch.sigmoid(implicit[losers] - implicit[winners]).detach()
    loss = (-weight * (positive[winners] - negative[losers])).mean()
    return loss, {"pairs": torch.tensor(winners.numel()), "implicit_rewards": implicit.detach()}


def tree_grpo_advantages(rewards: Sequence[float] | torch.Tensor, prompt_ids: Sequence, tree_ids: Sequence,
                         mode: str = "tree", eps: float = 1e-6) -> torch.Tensor:
    """Tree-GRPO group-relative advantages (6.2), one per trajectory (leaf).

    Â_i = (R_i − mean_inter)/(std_inter + ε) + (R_i − mean_intra)/(std_intra + ε), where the inter group is
    every trajectory of the same prompt and the intra group those of the same tree; std is unbiased (n−1)
    and a singleton group uses mean 0, std 1. ``mode``: ``tree`` (both), ``tree_inner`` (intra only),
    ``grpo`` (inter only).
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float32)

    def normalised(keys: Sequence) -> torch.Tensor:
        out = torch.empty_like(rewards)
        groups: dict = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        for members in groups.values():
            values = rewards[members]
            if len(members) == 1:
                mean, std = torch.tensor(0.0), torch.tensor(1.0)
            else:
                mean, std = values.mean(), values.std(unbiased=True)
            out[members] = (values - mean) / (std + eps)
        return out

    if mode == "grpo":
        return normalised(list(prompt_ids))
    intra = normalised([(p, t) for p, t in zip(prompt_ids, tree_ids)])
    if mode == "tree_inner":
        return intra
    if mode != "tree":
        raise ValueError(f"unknown advantage mode {mode!r}: use tree, tree_inner or grpo")
    return normalised(list(prompt_ids)) + intra


def clipped_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                        advantages: torch.Tensor, mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2,
                        dual_clip: float = 3.0, kl_coef: float = 0.001, entropy: torch.Tensor | None = None,
                        entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Dual-clip PPO/GRPO token loss with the k3 ("low_var_kl") KL penalty and an entropy bonus, token-mean (6.3).

    ρ_t = exp(clip(log π − log π_old, −20, 20));
    ℓ_clip = max(−Â ρ_t, −Â clip(ρ_t, 1−ε_low, 1+ε_high)); ℓ_t = min(ℓ_clip, −c Â) when Â < 0, else ℓ_clip;
    KL_t = clip(exp(log π_ref − log π) − (log π_ref − log π) − 1, −10, 10);
    L = token-mean(ℓ_t) − c_ent · token-mean(H_t) + c_KL · token-mean(KL_t).  Inputs [B, T] (``entropy`` H_t of
    the policy's next-token distribution, omitted when None); ``advantages`` [B] (broadcast over tokens).
    Every response token counts in the means, those of advantage-0 trajectories included (verl's token-mean).
    """
    adv = advantages[:, None].expand_as(logps)
    ratio = torch.exp(torch.clamp(logps - old_logps, -20.0, 20.0))
    clipped = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    per_token = torch.where(adv < 0, torch.minimum(clipped, -dual_clip * adv), clipped)
    log_ratio = ref_logps - logps
    kl = torch.clamp(torch.exp(log_ratio) - log_ratio - 1, -10.0, 10.0)
    count = mask.sum().clamp(min=1)
    policy = (per_token * mask).sum() / count
    kl_mean = (kl * mask).sum() / count
    loss = policy + kl_coef * kl_mean
    outside = (ratio < 1 - clip_low) | (ratio > 1 + clip_high)
    parts = {"policy_loss": policy.detach(), "kl": kl_mean.detach(),
             "clip_fraction": (outside.float() * mask).sum() / count}
    if entropy is not None:
        entropy_mean = (entropy * mask).sum() / count
        loss = loss - entropy_coef * entropy_mean
        parts["entropy"] = entropy_mean.detach()
    return loss, parts
