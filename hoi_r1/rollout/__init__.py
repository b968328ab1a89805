"""Rollout engines: who samples the GRPO completions.

One interface (:class:`hoi_r1.rollout.engine.RolloutEngine`), two engines, and
:func:`build_engine`, which picks the engine of a run:

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

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

from hoi_r1.rollout.engine import EngineKind, RolloutEngine
from hoi_r1.rollout.hf import HFRolloutEngine
from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings


def build_engine(kind: EngineKind, model, processor, trainer, name_or_path: str, vllm_settings=None,
                 trust_remote_code: bool = False) -> RolloutEngine:
    """The engine of ``kind`` for this rank of ``trainer`` (``hf``: sharded models get ``synced_gpus``:
    FSDP1, DeepSpeed ZeRO-3 and every model with ``DTensor`` parameters, e.g. FSDP2 through
    Lightning's ``ModelParallelStrategy``)."""
    if kind == "vllm":
        return VLLMRolloutEngine(
            name_or_path, processor, vllm_settings or VLLMSettings(), rank=trainer.global_rank,
            local_rank=trainer.local_rank, world_size=trainer.world_size, trust_remote_code=trust_remote_code,
        )
    if kind != "hf":
        raise ValueError(f"rollout engine must be 'hf' or 'vllm', found {kind!r}")
    strategy = trainer.strategy
    zero3 = isinstance(strategy, DeepSpeedStrategy) and strategy.config.get("zero_optimization", {}).get("stage") == 3
    fsdp = isinstance(strategy, FSDPStrategy)
    synced = (fsdp or zero3 or has_sharded_parameters(model)) and trainer.world_size > 1
    return HFRolloutEngine(model, processor, synced_gpus=synced, fsdp_root=strategy.model if fsdp else None)


def has_sharded_parameters(model: torch.nn.Module) -> bool:
    """Whether any parameter of ``model`` is a ``DTensor`` shard (FSDP2 ``fully_shard``, tensor parallelism):
    its forward then all-gathers, and every rank must take part in every forward.

    >>> has_sharded_parameters(torch.nn.Linear(2, 2))
    False
    """
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())
