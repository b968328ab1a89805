"""The ``hf`` rollout engine: the training model's own ``generate`` (:func:`hoi_r1.generation.generate`).

Nothing to synchronise (the engine *is* the policy). Generation runs outside gradient
checkpointing: recomputation only serves a backward pass, and with the cache off (which
checkpointing forces) every new token would re-run the whole sequence; it is switched off for
the generation and back on after. Under FSDP or DeepSpeed ZeRO-3 every rank must keep calling
the model until all ranks are done (``synced_gpus=True``), or the parameter all-gathers
deadlock; the root unit's parameters are gathered for the duration (FSDP1: ``summon_full_params``
of ``fsdp_root``; FSDP2: :func:`hoi_r1.strategies.unsharded_root`), since ``generate`` runs
parts of the model outside its ``forward`` (the vision tower, for the image features), where
no FSDP hook gathers them.

The sampler's per-token log-probs are left out by default (``Completions.token_logprobs`` is
``None``): GRPO reads the engine's own log-probs only from ``vllm`` (importance correction) and
computes the policy's with a forward pass (:mod:`hoi_r1.rollout.logprobs`), so generating them
would cost a log-softmax over the vocabulary per step for nothing. ``logprobs=True`` returns them
(gathered step by step, :class:`hoi_r1.generation.ChosenTokenLogprobs`).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterable

import torch

from hoi_r1.generation import Completions, generate
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.strategies import unsharded_root


class HFRolloutEngine:
    """Sample completions with the policy's ``generate``.

    Args:
        model: the policy (Hugging Face or peft model); generation uses it as it is now.
        processor: the model's processor (tokenizer: pad and end tokens).
        synced_gpus: keep every rank stepping until all are done (FSDP, DeepSpeed ZeRO-3).
        fsdp_root: the FSDP1-wrapped root module whose own parameters must be summoned around
            generation (``None`` otherwise).
        logprobs: return the sampler's per-token log-probs (``None`` otherwise; see the module
            docstring).
    """

    weights_stale = False

    def __init__(self, model, processor, synced_gpus: bool = False, fsdp_root: torch.nn.Module | None = None,
                 logprobs: bool = False) -> None:
        self.model = model
        self.processor = processor
        self.synced_gpus = synced_gpus
        self.fsdp_root = fsdp_root
        self.logprobs = logprobs

    def generate(self, batch: dict, n: int, sampling: RolloutSampling) -> Completions:
        settings = sampling.generation_settings(num_samples=n)
        model = _SyncedGenerate(self.model) if self.synced_gpus else self.model
        with gradient_checkpointing_off(self.model), _summoned(self.fsdp_root), unsharded_root(self.model):
            return generate(model, self.processor, batch, settings, logprobs=self.logprobs)

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Nothing to do: the engine generates with the training model itself."""

    def sleep(self) -> None:
        pass

    def wake(self) -> None:
        pass


@contextmanager
def gradient_checkpointing_off(model):
    """Switch a Hugging Face model's gradient checkpointing off for the block (and back on after)."""
    was_on = bool(getattr(model, "is_gradient_checkpointing", False))
    if was_on:
        model.gradient_checkpointing_disable()
    try:
        yield
    finally:
        if was_on:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class _SyncedGenerate:
    """The model, with ``synced_gpus=True`` added to every ``generate`` call."""

    def __init__(self, model) -> None:
        self._model = model

    def generate(self, *args, **kwargs):
        return self._model.generate(*args, synced_gpus=True, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def _summoned(fsdp_root):
    if fsdp_root is None:
        return nullcontext()
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel.summon_full_params(fsdp_root, recurse=False, writeback=False)
