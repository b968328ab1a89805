"""The settings of the GRPO stage (:class:`~hoi_r1.grpo.GRPOModule`'s constructor arguments, the
``model.init_args`` keys ``rollout``, ``loss`` and ``logging`` of a config): how training
completions are sampled, the objective, and what is shown besides the scalar curves
(docs/grpo.md, "Settings").

>>> GRPOLossSettings(loss_type="grpo", baseline="greedy").scale_rewards
'group'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoi_r1.advantages import Baseline, ScaleRewards
from hoi_r1.calibration import CalibrationLoss
from hoi_r1.grpo_loss import LossType
from hoi_r1.rollout.engine import RolloutSampling

@dataclass
class RolloutSettings:
    """How training completions are sampled.

    Args:
        num_generations: ``G``, completions per prompt (the group of the advantages).
        max_completion_length: longest completion in tokens.
        temperature: sampling temperature ``τ`` (every log-prob pass divides logits by it).
        top_p: nucleus sampling mass.
        top_k: keep only the ``top_k`` most likely tokens (0 disables).
        train_prompts: dynamic sampling (DAPO's, by over-sampling): of each generation batch's
            ``data.batch_size`` prompts, train on this many groups, those whose ``G`` rewards
            differ first (:mod:`hoi_r1.dynamic_sampling`); ``None``: train on every prompt.
    """

    num_generations: int = 8
    max_completion_length: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    train_prompts: int | None = None

    def check(self) -> None:
        """Refuse settings the stage cannot run (a group needs two completions)."""
        if self.num_generations < 2:
            raise ValueError(f"rollout.num_generations must be >= 2 (a group), found {self.num_generations}")
        if self.train_prompts is not None and self.train_prompts < 1:
            raise ValueError(f"rollout.train_prompts must be >= 1 or null, found {self.train_prompts}")

    def trained_prompts(self, batch_size: int) -> int:
        """Prompts trained on per generation batch of ``batch_size`` (``data.batch_size``).

        >>> RolloutSettings(train_prompts=8).trained_prompts(16)
        8
        >>> RolloutSettings(train_prompts=8).trained_prompts(4)
        Traceback (most recent call last):
        ...
        ValueError: rollout.train_prompts=8 must not exceed the prompts sampled per generation batch (data.batch_size=4)
        """
        if self.train_prompts is None:
            return batch_size
        if self.train_prompts > batch_size:
            raise ValueError(f"rollout.train_prompts={self.train_prompts} must not exceed the prompts sampled per "
                             f"generation batch (data.batch_size={batch_size})")
        return self.train_prompts

    def sampling(self) -> RolloutSampling:
        """The engines' sampling of one generation batch.

        >>> RolloutSettings(max_completion_length=64, temperature=0.7).sampling()
        RolloutSampling(max_new_tokens=64, temperature=0.7, top_p=1.0, top_k=0, greedy=False)
        """
        return RolloutSampling(self.max_completion_length, self.temperature, self.top_p, self.top_k)


@dataclass
class GRPOLossSettings:
    """The GRPO objective (docs/grpo.md).

    Args:
        loss_type: normalisation: ``grpo`` | ``bnpo`` | ``dr_grpo`` | ``dapo`` (TRL's conventions).
        epsilon_low: lower clip ``ρ ≥ 1 − ε_low``.
        epsilon_high: upper clip ``ρ ≤ 1 + ε_high`` (DAPO's clip-higher: 0.28).
        beta: KL weight ``β``; 0 needs no reference policy.
        kl_ratio_correction: multiply the KL term by ``ρ`` (TRL 1.16's ``use_bias_correction_kl``).
        scale_rewards: divide advantages by the std of the ``group``, the ``batch`` or ``none``.
        baseline: what a completion's reward is measured against: the mean of its ``group``
            (GRPO) or the reward of the prompt's ``greedy`` answer, decoded once per prompt and
            generation batch (ReMax's baseline; docs/grpo.md). Single-turn answers only.
        positive_only: learn only from completions whose reward beats the baseline: negative
            advantages become 0 (RAFT++; docs/grpo.md).
        num_iterations: optimisation passes over each generation batch (``μ`` of GRPO).
        triplet_credit: weight ``λ`` of the per-detection advantages added to the tokens of each
            answer element (:mod:`hoi_r1.triplet_credit`); 0: every token gets its
            completion's advantage (plain GRPO). Single-turn answers only.
        calibration: weight of the calibration loss of each detection's ``logprob`` confidence
            against its hit (:mod:`hoi_r1.calibration`), added to the loss; 0: off. Single-turn
            answers only.
        calibration_loss: ``brier`` (the Brier score) or ``log`` (the log loss; docs/grpo.md).
        steps_per_generation: micro-batches one generation batch is cut into; ``None``: the
            trainer's ``accumulate_grad_batches`` (one optimizer step per generation batch).
            Must be a multiple of ``accumulate_grad_batches``.
    """

    loss_type: LossType = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    kl_ratio_correction: bool = False
    scale_rewards: ScaleRewards = "group"
    baseline: Baseline = "group"
    positive_only: bool = False
    num_iterations: int = 1
    triplet_credit: float = 0.0
    calibration: float = 0.0
    calibration_loss: CalibrationLoss = "brier"
    steps_per_generation: int | None = None

    def check(self) -> None:
        """Refuse negative term weights and fewer than one pass or micro-batch.

        >>> GRPOLossSettings(calibration=-1.0).check()
        Traceback (most recent call last):
        ...
        ValueError: loss.calibration must be >= 0, found -1.0
        """
        if self.triplet_credit < 0:
            raise ValueError(f"loss.triplet_credit must be >= 0, found {self.triplet_credit}")
        if self.calibration < 0:
            raise ValueError(f"loss.calibration must be >= 0, found {self.calibration}")
        if self.num_iterations < 1 or (self.steps_per_generation is not None and self.steps_per_generation < 1):
            raise ValueError("loss.num_iterations and loss.steps_per_generation must be >= 1")

    def micro_batches(self, accumulate: int) -> int:
        """Micro-batches per generation batch: ``steps_per_generation``, by default the
        ``accumulate`` micro-batches of one optimizer step."""
        return self.steps_per_generation or accumulate

    def check_micro_batches(self, accumulate: int, rows: int) -> None:
        """Refuse micro-batches that do not cut a generation batch of ``rows`` completions evenly
        or an optimizer step (``accumulate`` micro-batches) that spans two generation batches.

        >>> GRPOLossSettings(steps_per_generation=3).check_micro_batches(accumulate=3, rows=64)
        Traceback (most recent call last):
        ...
        ValueError: the 64 trained completions of a generation batch (data.batch_size or rollout.train_prompts × rollout.num_generations) cannot be cut into steps_per_generation=3 equal micro-batches
        """
        spg = self.micro_batches(accumulate)
        if spg % accumulate:
            raise ValueError(
                f"loss.steps_per_generation={spg} must be a multiple of trainer.accumulate_grad_batches={accumulate}: "
                "every optimizer step must use micro-batches of one generation batch"
            )
        if rows % spg:
            raise ValueError(
                f"the {rows} trained completions of a generation batch (data.batch_size or rollout.train_prompts "
                f"× rollout.num_generations) cannot be cut into "
                f"steps_per_generation={spg} equal micro-batches"
            )


@dataclass
class GRPOLogSettings:
    """What GRPO shows besides the scalar curves.

    Args:
        completions: completions (with their rewards) written as TensorBoard text per logged rollout.
        every_n_generations: log them every this many generation batches.
    """

    completions: int = 4
    every_n_generations: int = 10


torch.serialization.add_safe_globals([RolloutSettings, GRPOLossSettings, GRPOLogSettings])  # hyper-parameters inside checkpoints
