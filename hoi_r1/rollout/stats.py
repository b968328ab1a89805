"""What a generation batch looked like: the numbers GRPO logs per rollout, and the completions
shown as text (pure functions; :class:`~hoi_r1.grpo.GRPOModule` logs them).

>>> from hoi_r1.advantages import AdvantageStats
>>> s = rollout_stats({"format": [1.0, 0.0, None]}, torch.tensor([1.0, 0.0, float("nan")]),
...                   torch.tensor([0.5, -0.5, 0.0]), AdvantageStats(1, 0, 1),
...                   torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]]), [False, True, False])
>>> s["reward/format"], s["reward"], s["completion_length/max"], round(s["truncation_rate"], 3)
(0.5, 0.5, 3.0, 0.333)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from hoi_r1.advantages import AdvantageStats
from hoi_r1.grpo_loss import PolicyLossStats
from hoi_r1.image_counts import ImageCounts


def rollout_stats(
    per_reward: dict[str, Sequence[float | None]],
    total: torch.Tensor,
    advantages: torch.Tensor,
    advantage_stats: AdvantageStats,
    completion_mask: torch.Tensor,
    truncated: Sequence[bool],
    seconds: float | None = None,
    greedy: torch.Tensor | None = None,
) -> dict[str, float]:
    """Per-reward mean / std, total reward, advantage statistics, lengths and truncation.

    Args:
        per_reward: reward name → one value (``None`` where it does not apply) per completion.
        total: ``(N,)`` weighted total rewards (NaN where no reward applies).
        advantages: ``(N,)`` advantages.
        advantage_stats: what :func:`~hoi_r1.advantages.group_advantages` counted.
        completion_mask: ``(N, T)`` 1 on real completion tokens.
        truncated: per completion, stopped at the length limit.
        seconds: how long generating them took (adds ``rollout_tokens_per_s``).
        greedy: ``(N / G,)`` total rewards of each group's greedy answer, the groups of ``G =
            N / len(greedy)`` completions in a row (adds :func:`greedy_baseline_stats`).

    Returns:
        ``reward/<name>``, ``reward/<name>_std``, ``reward``, ``reward_std``, ``advantage/mean``,
        ``advantage/std``, ``advantage/abs_mean``, ``frac_reward_zero_std``, ``unscorable``,
        ``completion_length/{mean,min,max}``, ``truncation_rate`` (NaN where nothing applies),
        and with ``seconds`` / ``greedy`` also ``rollout_tokens_per_s`` / ``reward_greedy``,
        ``frac_above_greedy`` and ``frac_below_greedy``.
    """
    out: dict[str, float] = {}
    for name, values in per_reward.items():
        kept = torch.tensor([v for v in values if v is not None], dtype=torch.float64)
        out[f"reward/{name}"] = _mean(kept)
        out[f"reward/{name}_std"] = _std(kept)
    scored = total[~total.isnan()].double()
    out["reward"] = _mean(scored)
    out["reward_std"] = _std(scored)
    adv = advantages.double()
    out["advantage/mean"] = _mean(adv)
    out["advantage/std"] = _std(adv)
    out["advantage/abs_mean"] = _mean(adv.abs())
    out["frac_reward_zero_std"] = advantage_stats.zero_std_fraction
    out["unscorable"] = float(advantage_stats.unscorable)
    lengths = completion_mask.sum(dim=1).double()
    out["completion_length/mean"] = _mean(lengths)
    out["completion_length/min"] = float(lengths.min()) if len(lengths) else math.nan
    out["completion_length/max"] = float(lengths.max()) if len(lengths) else math.nan
    out["truncation_rate"] = sum(truncated) / len(truncated) if len(truncated) else math.nan
    if seconds is not None:
        out["rollout_tokens_per_s"] = float(completion_mask.sum()) / seconds if seconds > 0 else math.nan
    if greedy is not None:
        out.update(greedy_baseline_stats(total, greedy, len(total) // max(len(greedy), 1)))
    return out


def greedy_baseline_stats(total: torch.Tensor, greedy: torch.Tensor, group_size: int) -> dict[str, float]:
    """How the sampled completions compare with their prompt's greedy answer (``baseline: greedy``).

    Args:
        total: ``(B*G,)`` total rewards of the samples, the ``G`` of a prompt contiguous (NaN:
            no reward applied).
        greedy: ``(B,)`` total reward of each prompt's greedy answer.
        group_size: ``G``.

    Returns:
        ``reward_greedy`` (mean over prompts), ``frac_above_greedy`` and ``frac_below_greedy``
        (share of the scored samples whose reward is above / below their greedy answer's by more
        than 1e-6; the rest tie with it).

    >>> out = greedy_baseline_stats(torch.tensor([2.0, 1.0, 1.0, float("nan")]), torch.tensor([1.0, 1.0]), 2)
    >>> out["reward_greedy"], round(out["frac_above_greedy"], 4), out["frac_below_greedy"]
    (1.0, 0.3333, 0.0)
    """
    grouped, base = total.double().reshape(-1, group_size), greedy.double()[:, None]
    scored = ~grouped.isnan()
    count = max(int(scored.sum()), 1)
    return {
        "reward_greedy": _mean(greedy[~greedy.isnan()].double()),
        "frac_above_greedy": float(((grouped > base + 1e-6) & scored).sum()) / count,
        "frac_below_greedy": float(((grouped < base - 1e-6) & scored).sum()) / count,
    }


def completions_markdown(
    texts: Sequence[str], total: Sequence[float], per_reward: dict[str, Sequence[float | None]],
    file_names: Sequence[str], limit: int, max_chars: int = 600,
) -> str:
    """A Markdown table of the first ``limit`` completions with their rewards (TensorBoard text).

    >>> print(completions_markdown(["<think>a|b</think>"], [1.5], {"format": [1.0]}, ["x.jpg"], 1))
    | image | reward | format | completion |
    |---|---|---|---|
    | x.jpg | 1.500 | 1.00 | `<think>a\\|b</think>` |
    """
    names = list(per_reward)
    lines = ["| image | reward | " + " | ".join(names) + " | completion |", "|---|---|" + "---|" * len(names) + "---|"]
    for i in range(min(limit, len(texts))):
        values = " | ".join("–" if per_reward[n][i] is None else f"{per_reward[n][i]:.2f}" for n in names)
        text = texts[i][:max_chars].replace("|", "\\|").replace("\n", " ").replace("`", "'")
        lines.append(f"| {file_names[i]} | {total[i]:.3f} | {values} | `{text}` |")
    return "\n".join(lines)


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if x.numel() else math.nan


def _std(x: torch.Tensor) -> float:
    return float(x.std()) if x.numel() > 1 else (0.0 if x.numel() == 1 else math.nan)


class RewardAverages:
    """Means of each reward and of the weighted total over the evaluated images of every process:
    the rewards of the greedy validation / test answers. They are per-image rows of an
    :class:`~hoi_r1.image_counts.ImageCounts` (a sum and a count per reward), so under DDP the
    means are those of the whole split, with the duplicates a ``DistributedSampler`` pads with
    counted once, like every other validation number.

    Args:
        names: the rewards (their weights' names).

    >>> averages = RewardAverages(["format", "recall"])
    >>> averages.add([0, 1], {"format": [1.0, 0.0], "recall": [0.5, None]}, [1.5, 0.0])
    >>> averages.add([0], {"format": [1.0], "recall": [0.5]}, [1.5])  # a padded duplicate of image 0
    >>> averages.means("val")
    {'val/reward/format': 0.5, 'val/reward/recall': 0.5, 'val/reward': 0.75}
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.counts = ImageCounts([f"{n}{part}" for n in (*self.names, "") for part in (":sum", ":count")])

    def to(self, device: torch.device) -> "RewardAverages":
        """Keep the states on ``device`` (the module's: NCCL gathers device tensors)."""
        self.counts = self.counts.to(device)
        return self

    def add(self, image_ids: Sequence[int], per_reward: dict[str, Sequence[float | None]], total: Sequence[float]) -> None:
        """One row per image: each reward's value (``None``: does not apply) and the weighted
        total (NaN: no reward applies), e.g. a :class:`~hoi_r1.rewards.RewardBreakdown`'s."""
        rows: dict[str, list[float]] = {}
        columns = {**{n: list(per_reward[n]) for n in self.names}, "": [None if math.isnan(t) else t for t in total]}
        for name, values in columns.items():
            rows[f"{name}:sum"] = [0.0 if v is None else float(v) for v in values]
            rows[f"{name}:count"] = [float(v is not None) for v in values]
        self.counts.update(image_ids, rows)

    def means(self, prefix: str) -> dict[str, float]:
        """``{prefix}/reward/<name>`` and ``{prefix}/reward`` (the weighted total), over the images
        where each applies (global: ``compute`` gathers every process's rows)."""
        sums = self.counts.compute()
        out = {}
        for name in (*self.names, ""):
            count = float(sums[f"{name}:count"])
            if count > 0:
                out[f"{prefix}/reward/{name}" if name else f"{prefix}/reward"] = float(sums[f"{name}:sum"]) / count
        return out


def policy_loss_logs(stats: PolicyLossStats, weights: torch.Tensor | None, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """What one micro-batch of the clipped objective logs: clip fractions, ratio, KL and, with
    sampler importance weights, their mean over the tokens and TRL's
    ``sampling/importance_sampling_ratio`` min / mean / max over the weights applied."""
    values = {"clip_ratio/low": stats.clip_low, "clip_ratio/high": stats.clip_high,
              "clip_ratio/region": stats.clip_region, "ratio": stats.ratio}
    if stats.kl is not None:
        values["kl"] = stats.kl
    if weights is not None:
        values["importance_weight"] = (weights.expand_as(mask) * mask).sum() / mask.sum().clamp(min=1)
        applied = weights.flatten() if weights.shape[1] == 1 else weights[mask.bool()]
        if applied.numel():
            values.update({"importance_ratio/min": applied.min(), "importance_ratio/mean": applied.mean(),
                           "importance_ratio/max": applied.max()})
    return {f"train/{k}": v for k, v in values.items()}
