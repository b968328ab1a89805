"""Dynamic sampling: train on the groups whose rewards differ.

A group whose ``G`` completions all earn the same reward has advantage 0 everywhere
(:mod:`hoi_r1.advantages`): it costs a forward and backward pass and adds nothing to the
gradient. DAPO (Yu et al. 2025, "DAPO: an open-source LLM reinforcement learning system at
scale", section 3.2) over-samples prompts and keeps only groups with reward spread, so that every
optimizer step has a full batch of informative groups. Here the over-sampling is one larger
prompt batch per generation: the stage samples ``data.batch_size`` prompts, and
:func:`spread_groups` picks the ``keep`` groups it trains on: those with spread first, in batch
order, then groups without spread to fill when too few have any (the optimizer step keeps its
size, and the fillers carry advantage 0, so they only enter the loss's normaliser). DAPO instead
draws further batches until the quota is met; a fixed prompt batch keeps every step's cost and
the sampler's order (and so resuming) unchanged.

>>> spread = has_spread(torch.tensor([1., 1., 0., 1., 2., 2., 0., 0.5]), group_size=2)
>>> spread.tolist(), spread_groups(spread, keep=2).tolist()
([False, True, False, True], [1, 3])
>>> spread_groups(torch.tensor([False, True, False]), keep=2).tolist()
[0, 1]
"""

from __future__ import annotations

import torch

from hoi_r1.advantages import nanstd


def has_spread(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B,)`` whether each group's rewards differ (a non-zero std, as
    :func:`~hoi_r1.advantages.group_advantages` decides it; NaN rewards are left out).

    Args:
        rewards: ``(B·G,)`` total rewards, the ``G`` completions of a prompt contiguous; NaN marks
            a completion no reward applied to.
        group_size: ``G`` (at least 2).
    """
    if rewards.ndim != 1 or group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"has_spread: rewards must be a flat tensor of whole groups of {group_size} >= 2, "
                         f"found shape {tuple(rewards.shape)}")
    std = nanstd(rewards.reshape(-1, group_size), dim=1)
    return ~(torch.isclose(std, torch.zeros_like(std)) | std.isnan())


def spread_groups(spread: torch.Tensor, keep: int) -> torch.Tensor:
    """Which ``keep`` of the ``B`` groups to train on.

    Args:
        spread: ``(B,)`` whether each group has reward spread (:func:`has_spread`).
        keep: groups to keep, ``1 ≤ keep ≤ B``.

    Returns:
        ``(keep,)`` sorted group indices: the first ``keep`` groups with spread, then the first
        groups without spread when fewer than ``keep`` have any.
    """
    if not 1 <= keep <= len(spread):
        raise ValueError(f"spread_groups: cannot keep {keep} of {len(spread)} groups")
    order = torch.cat([spread.nonzero().flatten(), (~spread).nonzero().flatten()])
    return order[:keep].sort().values


def group_rows(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """The completion rows of ``groups`` (each group's ``G`` rows, in order).

    >>> group_rows(torch.tensor([1, 3]), 2).tolist()
    [2, 3, 6, 7]
    """
    return (groups[:, None] * group_size + torch.arange(group_size)).flatten()
