"""GRPO's group-relative advantages: what each completion's reward is worth against the others of
its prompt.

Each prompt ``q`` gets ``G`` completions ``o_1..o_G`` with rewards ``r_i`` (:mod:`hoi_r1.rewards`);
every token of ``o_i`` gets the advantage ``A_i = (r_i - mean_group(r)) / (std(r) + 1e-4)``
[DeepSeekMath, Shao et al. 2024, "outcome supervision"]:

- ``std`` is Bessel-corrected (``n - 1``) and NaN-aware, as TRL's ``nanstd`` (:func:`nanstd`);
- ``scale_rewards`` picks the std of the group (GRPO), of the whole batch (the mean stays per
  group; TRL's ``batch``, after "Tricks or Traps", Liu et al. 2025) or none (Dr. GRPO, Liu et al.
  2025: dividing by the group std over-weights too easy and too hard prompts);
- a completion for which no reward applies (NaN total) is left out of its group's statistics and
  gets ``A = 0`` (TRL); groups whose rewards are all equal get ``A = 0`` exactly (where TRL leaves
  ``±1e-13`` rounding residue);
- ``baseline: greedy``: the centre is the reward of the prompt's greedy answer,
  ``A_i = (r_i - r_greedy) / (std(r) + 1e-4)`` (ReMax, Li et al. 2023): a sample gains only by
  beating the answer greedy evaluation would see;
- ``positive_only``: advantages below 0 become 0, so only completions that beat their centre
  are learned from (RAFT++, Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning: from
  Rejection Sampling to Reinforce"); with ``baseline: greedy``, the samples better than the
  greedy answer.

The loss that weighs log-probabilities by these advantages is :mod:`hoi_r1.grpo_loss`; the
per-detection variant, :mod:`hoi_r1.triplet_credit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ScaleRewards = Literal["group", "batch", "none"]
Baseline = Literal["group", "greedy"]
STD_EPSILON = 1e-4
"""Added to the reward std before dividing (DeepSeekMath / TRL)."""


@dataclass(frozen=True)
class AdvantageStats:
    """What :func:`group_advantages` saw.

    Args:
        num_groups: prompts in the batch.
        zero_std_groups: groups whose rewards are all equal (no learning signal; ``A = 0``).
        unscorable: completions whose reward is NaN (no reward applied; ``A = 0``).
    """

    num_groups: int
    zero_std_groups: int
    unscorable: int

    @property
    def zero_std_fraction(self) -> float:
        return self.zero_std_groups / max(self.num_groups, 1)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_rewards: ScaleRewards = "group",
    baseline: torch.Tensor | None = None, positive_only: bool = False,
) -> tuple[torch.Tensor, AdvantageStats]:
    """Group-relative advantages ``(r - mean_group) / (std + 1e-4)`` of ``B*G`` rewards.

    Args:
        rewards: ``(B*G,)`` total rewards, the ``G`` completions of a prompt contiguous; NaN
            marks a completion no reward applied to.
        group_size: ``G``, completions per prompt.
        scale_rewards: divide by the std of the ``group``, of the whole ``batch``, or ``none``.
        baseline: ``(B,)`` what each group's rewards are measured against instead of their mean
            (the reward of the prompt's greedy answer); NaN falls back to the group mean.
        positive_only: set the negative advantages to 0 (learn from the better completions only).

    Returns:
        ``(B*G,)`` advantages (float, NaN-free) and :class:`AdvantageStats`.

    >>> a, s = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), group_size=2)
    >>> [round(x, 4) for x in a.tolist()], s.zero_std_groups
    ([0.707, -0.707, 0.0, 0.0], 1)
    >>> a, _ = group_advantages(torch.tensor([1.0, 0.0, 3.0, 1.0]), 2, "none", baseline=torch.tensor([1.0, float("nan")]))
    >>> a.tolist()
    [0.0, -1.0, 1.0, -1.0]
    >>> group_advantages(torch.tensor([1.0, 0.0, 3.0, 1.0]), 2, "none", positive_only=True)[0].tolist()
    [0.5, 0.0, 1.0, 0.0]
    """
    if rewards.ndim != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(
            f"group_advantages: rewards must be a flat tensor whose length is a multiple of group_size="
            f"{group_size}, found shape {tuple(rewards.shape)}"
        )
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', found {scale_rewards!r}")
    grouped = rewards.reshape(-1, group_size)
    group_std = nanstd(grouped, dim=1) if group_size > 1 else torch.zeros(len(grouped), dtype=rewards.dtype)
    zero_std = torch.isclose(group_std, torch.zeros_like(group_std)) | group_std.isnan()
    centre = torch.nanmean(grouped, dim=1, keepdim=True)
    if baseline is not None:
        if baseline.shape != (len(grouped),):
            raise ValueError(f"group_advantages: baseline must hold one value per group ({len(grouped)}), "
                             f"found shape {tuple(baseline.shape)}")
        given = baseline.to(grouped)[:, None]
        centre = torch.where(given.isnan(), centre, given)
    centred = grouped - centre
    if scale_rewards == "group":
        centred = centred / (group_std[:, None] + STD_EPSILON)
    elif scale_rewards == "batch":
        batch_std = nanstd(rewards) if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
        centred = centred / (batch_std + STD_EPSILON)
    centred = torch.where(zero_std[:, None], torch.zeros_like(centred), centred)
    if positive_only:
        centred = centred.clamp(min=0.0)
    stats = AdvantageStats(len(grouped), int(zero_std.sum()), int(rewards.isnan().sum()))
    return torch.nan_to_num(centred.reshape(-1), nan=0.0), stats


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Bessel-corrected standard deviation ignoring NaNs (NaN with fewer than two values).

    >>> round(nanstd(torch.tensor([1.0, float("nan"), 3.0])).item(), 4)
    1.4142
    """
    dims = dim if dim is not None else tuple(range(x.ndim))
    mean = torch.nanmean(x, dim=dims, keepdim=True)
    count = (~x.isnan()).sum(dim=dims)
    var = torch.nansum((x - mean) ** 2, dim=dims) / (count - 1).clamp(min=1)
    return torch.where(count > 1, var.sqrt(), torch.full_like(var, float("nan")))
