"""The rollout engine interface: what GRPO asks of whoever samples its completions
(:class:`RolloutEngine`), how one generation batch is sampled (:class:`RolloutSampling`), and the
engines' names (:data:`EngineKind`). The engines (:mod:`hoi_r1.rollout.hf`,
:mod:`hoi_r1.rollout.vllm`) implement it; :func:`hoi_r1.rollout.build_engine` picks one.

>>> RolloutSampling(max_new_tokens=8, temperature=0.7)
RolloutSampling(max_new_tokens=8, temperature=0.7, top_p=1.0, top_k=0, greedy=False)
>>> RolloutSampling.from_generation(GenerationSettings(max_new_tokens=8, top_k=5))
RolloutSampling(max_new_tokens=8, temperature=1.0, top_p=1.0, top_k=5, greedy=True)
>>> RolloutSampling(8, temperature=0.7).generation_settings(num_samples=4)
GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=1.0, top_k=0, num_samples=4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Protocol

import torch

from hoi_r1.generation import Completions, GenerationSettings

EngineKind = Literal["hf", "vllm"]


@dataclass(frozen=True)
class RolloutSampling:
    """How one generation batch is sampled.

    Args:
        max_new_tokens: longest completion in tokens.
        temperature: sampling temperature (the log-prob passes divide logits by it too).
        top_p: nucleus sampling mass.
        top_k: keep only the ``top_k`` most likely tokens (0 disables).
        greedy: decode greedily instead (start-up agreement check).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False

    @classmethod
    def from_generation(cls, generation: GenerationSettings) -> RolloutSampling:
        """The sampling of evaluation / episode generation settings (greedy unless ``do_sample``)."""
        return cls(generation.max_new_tokens, generation.temperature, generation.top_p, generation.top_k,
                   greedy=not generation.do_sample)

    def generation_settings(self, num_samples: int) -> GenerationSettings:
        """These settings for :func:`hoi_r1.generation.generate`, ``num_samples`` answers per prompt."""
        return GenerationSettings(max_new_tokens=self.max_new_tokens, do_sample=not self.greedy,
                                  temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                  num_samples=num_samples)


class RolloutEngine(Protocol):
    """What :class:`~hoi_r1.grpo.GRPOModule` needs from a sampler.

    ``weights_stale`` is true when the engine's copy of the policy must be pushed again before
    the next generation (after building it, after waking from sleep level 2).
    """

    weights_stale: bool

    def generate(self, batch: dict, n: int, sampling: RolloutSampling) -> Completions:
        """``n`` completions for every prompt of a generation batch (left-padded prompts, images)."""

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load the policy's current weights (Hugging Face parameter names)."""

    def sleep(self) -> None:
        """Free the engine's memory between generations (no-op where not supported)."""

    def wake(self) -> None:
        """Undo :meth:`sleep` before the next generation."""
