"""Group advantages (:mod:`hoi_r1.advantages`): hand-computed values on tiny tensors, and TRL's
own ``nanstd``.

TRL computes its advantages inside the 450-line ``_generate_and_score_completions`` (generation,
reward calls, gathering across processes), which cannot be called without a model, so they are
checked against hand-computed values here instead of against TRL.
"""

from __future__ import annotations

import math

import pytest
import torch

from hoi_r1.advantages import AdvantageStats, group_advantages, nanstd

EPS = 1e-4


def test_group_scaling_by_hand():
    # group 1: rewards 1, 0 -> mean 0.5, unbiased std sqrt(0.5) = 0.7071
    # group 2: 0.2, 0.2 -> zero variance -> A = 0 exactly
    a, stats = group_advantages(torch.tensor([1.0, 0.0, 0.2, 0.2]), 2, "group")
    s = math.sqrt(0.5)
    assert a.tolist() == pytest.approx([0.5 / (s + EPS), -0.5 / (s + EPS), 0.0, 0.0], abs=1e-7)
    assert a[2:].eq(0).all()
    assert stats == AdvantageStats(num_groups=2, zero_std_groups=1, unscorable=0) and stats.zero_std_fraction == 0.5


def test_batch_scaling_uses_group_mean_and_batch_std():
    r = torch.tensor([1.0, 0.0, 0.5, 0.5])
    a, stats = group_advantages(r, 2, "batch")
    # batch std (unbiased) of [1, 0, .5, .5]: sqrt((.25 + .25 + 0 + 0) / 3)
    std = math.sqrt(0.5 / 3)
    assert a.tolist() == pytest.approx([0.5 / (std + EPS), -0.5 / (std + EPS), 0.0, 0.0], abs=1e-7)
    assert stats.zero_std_groups == 1


def test_no_scaling_only_centres():
    a, _ = group_advantages(torch.tensor([3.0, 1.0, 2.0, 0.0, 0.0, 6.0]), 3, "none")
    assert a.tolist() == pytest.approx([1.0, -1.0, 0.0, -2.0, -2.0, 4.0])


def test_greedy_baseline_by_hand():
    # group 1: rewards 3, 1, 2 against a greedy answer worth 2 -> 1, -1, 0 (the group mean is 2 too)
    # group 2: 0, 0, 6 against a greedy answer worth 6 -> -6, -6, 0 (the mean, 2, would give -2, -2, 4)
    r = torch.tensor([3.0, 1.0, 2.0, 0.0, 0.0, 6.0])
    a, _ = group_advantages(r, 3, "none", baseline=torch.tensor([2.0, 6.0]))
    assert a.tolist() == pytest.approx([1.0, -1.0, 0.0, -6.0, -6.0, 0.0])
    a, _ = group_advantages(r, 3, "group", baseline=torch.tensor([2.0, 6.0]))  # group 2's std: sqrt(12)
    assert a[3:].tolist() == pytest.approx([-6 / (math.sqrt(12) + EPS)] * 2 + [0.0])
    # a group whose samples all tie gets 0 even when the greedy answer differs; NaN: the group mean
    a, stats = group_advantages(torch.tensor([1.0, 1.0, 0.0, 2.0]), 2, "none", baseline=torch.tensor([3.0, math.nan]))
    assert a.tolist() == [0.0, 0.0, -1.0, 1.0] and stats.zero_std_groups == 1
    with pytest.raises(ValueError, match="one value per group"):
        group_advantages(r, 3, baseline=torch.tensor([1.0]))


def test_positive_only_keeps_the_completions_that_beat_their_centre():
    # against the greedy answers (2, 6): 3, 1, 2 -> 1, 0, 0 and 0, 0, 6 -> 0, 0, 0
    r = torch.tensor([3.0, 1.0, 2.0, 0.0, 0.0, 6.0])
    a, _ = group_advantages(r, 3, "none", baseline=torch.tensor([2.0, 6.0]), positive_only=True)
    assert a.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # against the group means (2, 2), scaled by the group std (1, sqrt(12)): only 3 and 6 keep theirs
    a, _ = group_advantages(r, 3, "group", positive_only=True)
    assert a.tolist() == pytest.approx([1 / (1 + EPS), 0.0, 0.0, 0.0, 0.0, 4 / (math.sqrt(12) + EPS)])


def test_unscorable_completions_are_left_out_and_get_zero():
    # group [1, NaN, 0]: mean and std over the two scored values; the NaN one gets A = 0
    a, stats = group_advantages(torch.tensor([1.0, math.nan, 0.0]), 3)
    s = math.sqrt(0.5)
    assert a.tolist() == pytest.approx([0.5 / (s + EPS), 0.0, -0.5 / (s + EPS)])
    assert stats.unscorable == 1 and stats.zero_std_groups == 0
    a, stats = group_advantages(torch.tensor([math.nan, math.nan, 1.0, 2.0]), 2)
    assert a[:2].tolist() == [0.0, 0.0] and stats.zero_std_groups == 1  # nothing to compare in group 1


def test_group_of_one_has_no_signal():
    a, stats = group_advantages(torch.tensor([0.3, 0.9]), 1)
    assert a.tolist() == [0.0, 0.0] and stats.zero_std_groups == 2


def test_bad_advantage_inputs_are_refused():
    with pytest.raises(ValueError, match="multiple of group_size=4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="scale_rewards must be"):
        group_advantages(torch.zeros(4), 2, "global")


def test_nanstd_is_trls():
    from trl.trainer.utils import nanstd as trl_nanstd

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 8, generator=g, dtype=torch.float64)
    x[x > 1.2] = math.nan
    assert torch.allclose(nanstd(x, dim=1), trl_nanstd(x, dim=1), equal_nan=True, atol=1e-12)
    assert torch.allclose(nanstd(x), trl_nanstd(x), atol=1e-12)
