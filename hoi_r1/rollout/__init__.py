"""Rollout engines: who samples the GRPO completions.

One interface (:class:`RolloutEngine`), two engines:

* ``hf`` (:class:`hoi_r1.rollout.hf.HFRolloutEngine`): the training model's own ``generate``;
  CPU and GPU, nothing to install, nothing to synchronise.
* ``vllm`` (:class:`hoi_r1.rollout.vllm.VLLMRolloutEngine`): a colocated ``vllm.LLM`` per rank
  (GPU: ``pip install -e ".[vllm]"``; vLLM's CPU build for the tests: ``make test-vllm``),
  weights pushed after every optimizer step (:mod:`hoi_r1.rollout.policy_weights`), optional
  sleep mode between generations (GPU only).

Both return :class:`~hoi_r1.generation.Completions` (``n`` per prompt, prompt-major), with the
sampler's own per-token log-probabilities (``vllm`` always; ``hf`` when built with
``logprobs=True``, else ``None``), and both block image placeholder tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Literal, Protocol

import torch

from hoi_r1.generation import Completions

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


def build_engine(kind: EngineKind, model, processor, trainer, name_or_path: str, vllm_settings=None,
                 trust_remote_code: bool = False) -> RolloutEngine:
    """The engine of ``kind`` for this rank of ``trainer`` (``hf``: sharded strategies get ``synced_gpus``)."""
    if kind == "vllm":
        from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings

        return VLLMRolloutEngine(
            name_or_path, processor, vllm_settings or VLLMSettings(), rank=trainer.global_rank,
            local_rank=trainer.local_rank, world_size=trainer.world_size, trust_remote_code=trust_remote_code,
        )
    if kind != "hf":
        raise ValueError(f"rollout engine must be 'hf' or 'vllm', found {kind!r}")
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    from hoi_r1.rollout.hf import HFRolloutEngine

    strategy = trainer.strategy
    zero3 = isinstance(strategy, DeepSpeedStrategy) and strategy.config.get("zero_optimization", {}).get("stage") == 3
    fsdp = isinstance(strategy, FSDPStrategy)
    synced = (fsdp or zero3) and trainer.world_size > 1
    return HFRolloutEngine(model, processor, synced_gpus=synced, fsdp_root=strategy.model if fsdp else None)


class SamplingStream:
    """A random stream of its own for sampling rollouts, saved in checkpoints.

    Whatever else draws from torch's global generator (data loading, a resumed run's set-up)
    cannot change what is sampled, so a resumed run samples what the uninterrupted run sampled.

    Args:
        seed: seed of the stream (the first time it is used).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.state: dict | None = None

    @contextmanager
    def active(self, device: torch.device):
        """Within the block, torch's generators (CPU, and ``device`` if CUDA) follow this stream."""
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            if self.state is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.state["cpu"])
                if cuda and self.state.get("cuda") is not None:
                    torch.cuda.set_rng_state(self.state["cuda"], device)
            yield
            self.state = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if cuda else None}
