"""GRPO maths: per-token log-probabilities, the clipped objective with KL (the group
advantages they weigh are :mod:`hoi_r1.advantages`).

The algorithm, for one generation batch (sources in brackets):

1. Each prompt ``q`` gets ``G`` completions ``o_1..o_G`` sampled from the current policy
   ``π_old`` at temperature ``τ``; each gets a reward ``r_i = Σ_k w_k r_k(o_i)``
   (:mod:`hoi_r1.rewards`) [DeepSeekMath, Shao et al. 2024, "outcome supervision"].
2. Advantage of every token of ``o_i``: ``A_i = (r_i - mean_group(r)) / (std(r) + 1e-4)``
   (:func:`hoi_r1.advantages.group_advantages`, which says how ``scale_rewards``, NaN rewards,
   groups without spread and the greedy baseline are treated).
3. Log-probabilities ``log π(o_t | q, o_<t)`` from logits divided by ``τ`` — the distribution
   the tokens were sampled from — in every pass: policy, old and reference (TRL)
   (:func:`per_token_logps`, one chunk of rows at a time to bound memory).
4. Per-token ratio ``ρ_t = exp(logp_t - old_t)``. With one policy update per generation batch
   (``num_iterations = 1``) ``old = logp.detach()``: ``ρ = 1`` but its gradient is the policy
   gradient ``A ∇ log π`` [DeepSeekMath; TRL].
5. Per-token loss ``ℓ_t = -min(ρ_t A, clip(ρ_t, 1 - ε_low, 1 + ε_high) A) + β KL_t`` with the
   PPO clipped surrogate [Schulman et al. 2017], an asymmetric "clip-higher" range
   ``ε_high ≥ ε_low`` [DAPO, Yu et al. 2025], and the k3 estimator of ``KL(π ‖ π_ref)``
   ``KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1`` [Schulman 2020; DeepSeekMath eq. 4].
   ``kl_ratio_correction`` multiplies ``KL_t`` by ``ρ_t`` (TRL ``use_bias_correction_kl``,
   after DeepSeek-V3.2: the unbiased reverse-KL gradient; TRL 1.16 turns it on by default, we
   keep the textbook form by default).
6. Optional correction of the sampler mismatch (vLLM samples with slightly different numbers):
   the policy part of ``ℓ_t`` is multiplied by ``min(exp(old_t - sampler_t), C)``
   (:func:`truncated_importance_weights`; truncated importance sampling, Yao et al. 2025,
   "Your efficient RL framework secretly brings you off-policy RL training"; TRL ``token_truncate``).
7. Normalisation of ``Σ_t ℓ_t`` by ``loss_type`` (TRL's, so numbers compare):

   ============  =========================================================================
   ``grpo``      each sequence by its own length, then mean over sequences (DeepSeekMath;
                 favours short correct and long wrong answers — the length bias Dr. GRPO names)
   ``bnpo``      active tokens of the micro-batch
   ``dr_grpo``   micro-batch size × ``max_completion_length`` (Dr. GRPO: a constant)
   ``dapo``      active tokens of the whole generation batch over all ranks ÷ world size
                 (DAPO's token-level mean, the same for every micro-batch; TRL's default)
   ============  =========================================================================

The loss returned is that of one micro-batch *before* division by the gradient-accumulation
steps, because Lightning's automatic optimisation divides by ``accumulate_grad_batches`` itself;
TRL's ``GRPOTrainer._compute_loss`` divides inside, so its value equals ours divided by its
``current_gradient_accumulation_steps`` (tested equal in ``tests/test_grpo_loss.py``).

>>> logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
>>> mask = torch.tensor([[1, 1, 0]])
>>> loss, stats = clipped_policy_loss(logp, None, None, torch.tensor([2.0]), mask, loss_type="grpo")
>>> loss.item(), stats.ratio.item()
(-2.0, 1.0)
>>> loss.backward(); logp.grad.tolist() == [[-1.0, -1.0, 0.0]]  # -A/2 per active token of the sequence
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
ImportanceLevel = Literal["token", "sequence", "token_mask", "sequence_mask"]


# ===================================================================== log-probabilities
def per_token_logps(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0, chunk_rows: int = 512
) -> torch.Tensor:
    """``log softmax(logits / τ)`` at the given tokens, ``(B, T)``, one chunk of rows at a time.

    Only one chunk of ``chunk_rows`` rows of ``(V,)`` logits is turned into log-probabilities at a
    time; half- and bfloat16 logits are upcast to float32 per chunk (the result is float32), so
    the full float32 log-softmax of a ``(B, T, V)`` tensor is never materialised at once.

    Args:
        logits: ``(B, T, V)``; ``logits[b, t]`` is the distribution that produced
            ``input_ids[b, t]`` (already shifted by the caller).
        input_ids: ``(B, T)`` token ids.
        temperature: sampling temperature ``τ > 0``.
        chunk_rows: rows (positions) per chunk.

    >>> logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    >>> [round(x, 4) for x in per_token_logps(logits, torch.tensor([[1, 0]]), temperature=2.0)[0].tolist()]
    [-0.6931, -0.3133]
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, found {temperature}")
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(
            f"per_token_logps: logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)} "
            "(expected logits (B, T, V) for input_ids (B, T))"
        )
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_ids = input_ids.reshape(-1, 1)
    out = []
    for rows, ids in zip(flat_logits.split(chunk_rows), flat_ids.split(chunk_rows)):
        if rows.dtype not in (torch.float32, torch.float64):
            rows = rows.float()
        rows = rows / temperature
        out.append(rows.gather(-1, ids).squeeze(-1) - torch.logsumexp(rows, dim=-1))
    if not out:
        return torch.zeros(input_ids.shape, dtype=torch.float32 if logits.dtype != torch.float64 else logits.dtype)
    return torch.cat(out).reshape(input_ids.shape)


def truncated_importance_weights(
    old_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    cap: float = 3.0,
    mask: torch.Tensor | None = None,
    level: ImportanceLevel = "token",
) -> torch.Tensor:
    """Importance weights correcting the mismatch between the sampler's log-probs (vLLM) and the
    trainer's own log-probs of the same tokens: ``min(exp(old - sampler), cap)`` (truncated), or
    ``exp(old - sampler)`` set to 0 where it exceeds ``cap`` (masked).

    Args:
        old_logp: ``(B, T)`` trainer log-probs of the sampled tokens (no gradient).
        sampler_logp: ``(B, T)`` the sampler's log-probs of them (NaN where it gave none:
            weight 1 there).
        cap: upper bound ``C`` (TRL's ``vllm_importance_sampling_clip_max``, default 3).
        mask: ``(B, T)`` active completion tokens (others count as no mismatch).
        level: ``token`` / ``sequence``: truncated weights ``(B, T)`` / one per sequence ``(B, 1)``
            from the summed log-ratio (TRL's ``token_truncate`` / ``sequence_truncate``);
            ``token_mask`` / ``sequence_mask``: the same ratios, 0 above the cap, which drops a
            token or a whole sequence the sampler saw too differently (TRL 1.16's ``*_mask``
            modes, ``sequence_mask`` its default; no lower bound, as TRL's default).

    >>> truncated_importance_weights(torch.tensor([[0.0, -1.0]]), torch.tensor([[-2.0, -1.0]])).tolist()
    [[3.0, 1.0]]
    >>> truncated_importance_weights(torch.tensor([[0.0, -1.0]]), torch.tensor([[-2.0, -1.0]]), level="token_mask").tolist()
    [[0.0, 1.0]]
    """
    if level not in ("token", "sequence", "token_mask", "sequence_mask"):
        raise ValueError(f"importance level must be 'token', 'sequence', 'token_mask' or 'sequence_mask', found {level!r}")
    diff = (old_logp - sampler_logp).detach()
    if mask is not None:
        diff = diff * mask.to(diff.dtype)
    diff = torch.nan_to_num(diff, nan=0.0)
    if level.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if level.endswith("_mask"):
        return ratio.masked_fill(ratio > cap, 0.0)
    return ratio.clamp(max=cap)


# ===================================================================== the objective
@dataclass(frozen=True)
class PolicyLossStats:
    """Detached statistics of one micro-batch (token means over active tokens, as TRL logs).

    Args:
        clip_low: share of tokens with ``ρ < 1 - ε_low`` and ``A < 0`` (clipped from below).
        clip_high: share of tokens with ``ρ > 1 + ε_high`` and ``A > 0``.
        clip_region: share clipped either way.
        ratio: mean ratio ``ρ``.
        kl: mean ``KL_t`` (as it enters the loss, ratio-corrected when asked); ``None`` without
            reference log-probs.
        tokens: active tokens in the micro-batch.
    """

    clip_low: torch.Tensor
    clip_high: torch.Tensor
    clip_region: torch.Tensor
    ratio: torch.Tensor
    kl: torch.Tensor | None
    tokens: torch.Tensor


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    loss_type: LossType = "dapo",
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    steps_per_generation: int = 1,
    importance_weights: torch.Tensor | None = None,
    kl_ratio_correction: bool = False,
) -> tuple[torch.Tensor, PolicyLossStats]:
    """The clipped GRPO objective of one micro-batch (see the module docstring).

    Args:
        logp: ``(B, T)`` log-probs of the completion tokens under the policy (with gradient).
        old_logp: ``(B, T)`` log-probs under the sampling policy; ``None``: ``logp.detach()``
            (one update per generation batch).
        ref_logp: ``(B, T)`` log-probs under the reference policy; needed when ``beta > 0``.
        advantages: ``(B,)`` per completion, or ``(B, T)`` per token.
        mask: ``(B, T)`` 1 on completion tokens that count, 0 on padding (and tool output).
        epsilon_low: lower clip ``ρ ≥ 1 - ε_low``.
        epsilon_high: upper clip ``ρ ≤ 1 + ε_high`` (DAPO's clip-higher uses 0.28).
        beta: KL weight ``β``.
        loss_type: normalisation, ``grpo`` | ``bnpo`` | ``dr_grpo`` | ``dapo``.
        max_completion_length: generation length limit (``dr_grpo``).
        num_items_in_batch: ``dapo``: active completion tokens of the whole generation batch,
            summed over all ranks, divided by the world size.
        steps_per_generation: ``dapo``: micro-batches one generation batch is served as.
        importance_weights: ``(B, T)`` or ``(B, 1)`` sampler-mismatch weights
            (:func:`truncated_importance_weights`), applied to the policy term.
        kl_ratio_correction: multiply ``KL_t`` by ``ρ_t`` (TRL's ``use_bias_correction_kl``).

    Returns:
        The loss (before division by gradient-accumulation steps) and :class:`PolicyLossStats`.
    """
    if logp.shape != mask.shape:
        raise ValueError(f"clipped_policy_loss: logp {tuple(logp.shape)} and mask {tuple(mask.shape)} differ")
    if beta != 0.0 and ref_logp is None:
        raise ValueError("clipped_policy_loss: beta > 0 needs ref_logp (reference-policy log-probs)")
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(f"clip epsilons must be >= 0, found epsilon_low={epsilon_low}, epsilon_high={epsilon_high}")
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype)
    adv = adv[:, None] if adv.ndim == 1 else adv  # (B, 1) or (B, T)
    old_logp = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old_logp)  # (B, T)
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if importance_weights is not None:
        per_token = per_token * importance_weights
    kl = None
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        if kl_ratio_correction:
            kl = kl * ratio
        if beta != 0.0:
            per_token = per_token + beta * kl
    normalise = NORMALISERS[_check_loss_type(loss_type)]
    loss = normalise(per_token * mask, mask, max_completion_length, num_items_in_batch, steps_per_generation)
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (adv < 0)
        high = (ratio > 1 + epsilon_high) & (adv > 0)
        stats = PolicyLossStats(
            clip_low=_masked_mean(low, mask),
            clip_high=_masked_mean(high, mask),
            clip_region=_masked_mean(low | high, mask),
            ratio=_masked_mean(ratio, mask),
            kl=_masked_mean(kl, mask) if kl is not None else None,
            tokens=mask.sum(),
        )
    return loss, stats


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of ``KL(π ‖ π_ref)``: ``exp(ref - logp) - (ref - logp) - 1 ≥ 0``.

    >>> round(k3_kl(torch.tensor([-1.0]), torch.tensor([-2.0])).item(), 4)
    0.3679
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


# ----------------------------------------------------------------- normalisations
Normaliser = Callable[[torch.Tensor, torch.Tensor, "int | None", "float | torch.Tensor | None", int], torch.Tensor]


def sequence_mean(masked_loss, mask, max_completion_length, num_items_in_batch, steps_per_generation):
    """``grpo``: each sequence's sum over its own length, then the mean over sequences."""
    return (masked_loss.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def micro_batch_token_mean(masked_loss, mask, max_completion_length, num_items_in_batch, steps_per_generation):
    """``bnpo``: sum over the micro-batch's active tokens."""
    return masked_loss.sum() / mask.sum().clamp(min=1.0)


def fixed_length_mean(masked_loss, mask, max_completion_length, num_items_in_batch, steps_per_generation):
    """``dr_grpo``: sum over micro-batch size × ``max_completion_length``."""
    if max_completion_length is None or max_completion_length < 1:
        raise ValueError(f"loss_type 'dr_grpo' needs max_completion_length >= 1, found {max_completion_length}")
    return masked_loss.sum() / (masked_loss.shape[0] * max_completion_length)


def generation_batch_token_mean(masked_loss, mask, max_completion_length, num_items_in_batch, steps_per_generation):
    """``dapo``: sum over (generation-batch tokens over all ranks ÷ world size ÷ micro-batches)."""
    if num_items_in_batch is None:
        raise ValueError(
            "loss_type 'dapo' needs num_items_in_batch (active completion tokens of the generation batch "
            "summed over ranks, divided by the world size)"
        )
    total = torch.as_tensor(num_items_in_batch, dtype=masked_loss.dtype, device=masked_loss.device)
    return masked_loss.sum() * steps_per_generation / total.clamp(min=1.0)


NORMALISERS: dict[str, Normaliser] = {
    "grpo": sequence_mean,
    "bnpo": micro_batch_token_mean,
    "dr_grpo": fixed_length_mean,
    "dapo": generation_batch_token_mean,
}


def _check_loss_type(loss_type: str) -> str:
    if loss_type not in NORMALISERS:
        raise ValueError(f"loss_type must be one of {sorted(NORMALISERS)}, found {loss_type!r}")
    return loss_type


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = x.to(mask.dtype).expand_as(mask)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)
