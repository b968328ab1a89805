"""The worker of the 2-process FSDP1 runs outside Lightning (``tests/test_sharded_cpu.py``), run
as ``python -c "from helpers.fsdp1 import fsdp1_worker; fsdp1_worker(RANK, ...)"`` with ``tests``
on the PYTHONPATH."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers.grpo import EXTRA_TOKENS_PER_RANK
from helpers.rollout import prompt_batch


def fsdp1_worker(rank: int, init_file: str, model_dir: str, out: str, mode: str) -> None:
    """One of 2 gloo processes: the tiny model wrapped by torch's FSDP1 as
    :class:`~hoi_r1.strategies.LayerWrapFSDPStrategy` wraps it (one unit per decoder layer /
    vision block, the LightningModule-like container the root unit), ``device_id=cpu``; the ``hf``
    engine generates on it, rank ``r`` up to ``4 + EXTRA_TOKENS_PER_RANK · r`` tokens. Writes
    ``<out>/<mode>.rank<N>.json``: the longest completion, or the error.

    ``mode``: ``engine`` (as :func:`hoi_r1.rollout.build_engine` builds it under FSDP1:
    ``synced_gpus`` and the root unit summoned), ``no_summon`` (``fsdp_root=None``), ``unsynced``
    (``generate(synced_gpus=False)`` forced: left unset, transformers turns it on by itself for
    FSDP-managed modules; a collective timeout of 20 s stands for the deadlock).
    """
    import functools
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from hoi_r1.models import ModelSettings, load_model, load_processor
    from hoi_r1.rollout.engine import RolloutSampling
    from hoi_r1.rollout.hf import HFRolloutEngine
    from hoi_r1.rollout.policy_weights import policy_weights
    from hoi_r1.strategies import LayerWrapFSDPStrategy

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))
    result: dict = {}
    try:
        settings = ModelSettings(name_or_path=model_dir)
        processor = load_processor(model_dir)
        container = torch.nn.Module()
        container.model = load_model(settings).eval()
        root = FullyShardedDataParallel(container, auto_wrap_policy=ModuleWrapPolicy(LayerWrapFSDPStrategy().wrapped_layers),
                                        device_id=torch.device("cpu"), use_orig_params=True)
        if mode == "unsynced":
            container.model.generate = functools.partial(container.model.generate, synced_gpus=False)
        engine = HFRolloutEngine(container.model, processor, synced_gpus=mode != "unsynced",
                                 fsdp_root=None if mode == "no_summon" else root)
        batch, _, _ = prompt_batch(processor, [(56, 56), (112, 56)])
        torch.manual_seed(rank)
        sampling = RolloutSampling(max_new_tokens=4 + EXTRA_TOKENS_PER_RANK * rank)
        try:
            completions = engine.generate(batch, 2, sampling)
            result["length"] = int(completions.mask.sum(dim=1).max())
            result["rows"] = len(completions.texts)
        except Exception as e:  # noqa: BLE001 - the error is the result
            result["error"] = f"{type(e).__name__}: {e}"
        if mode == "engine":
            try:
                next(iter(policy_weights(container.model)))
            except NotImplementedError as e:
                result["weight_push"] = str(e)
    finally:
        (Path(out) / f"{mode}.rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()
