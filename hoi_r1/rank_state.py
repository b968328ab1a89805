"""State that differs between ranks, kept per rank in a checkpoint.

Lightning writes a checkpoint from rank 0, so state a module adds in ``on_save_checkpoint`` is
rank 0's unless it gathers it first. GRPO's sampling stream and its half-used generation batch
differ on every rank; a resume that handed rank 0's to every rank would sample the same
completions on all ranks. :func:`gather_per_rank` (called on every rank, as Lightning calls
``on_save_checkpoint``) returns every rank's value, tensors moved to the CPU so that any rank
can read them; :func:`own_rank` picks this rank's value back on load.

>>> values = gather_per_rank({"seed": 3})  # one process: a list of one
>>> values, own_rank(values, rank=0, world_size=1)
([{'seed': 3}], {'seed': 3})
>>> own_rank(values, rank=1, world_size=2) is None  # saved by another number of ranks
True
"""

from __future__ import annotations

from typing import Any

import torch


def gather_per_rank(value: Any) -> list[Any]:
    """Every rank's ``value`` (a picklable tree of tensors, lists, dicts), in rank order; every
    rank must call it (an all-gather)."""
    value = _to_cpu(value)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def own_rank(values: list[Any] | None, rank: int, world_size: int) -> Any:
    """This rank's value of :func:`gather_per_rank`, or ``None`` when the checkpoint has none or
    was saved by another number of ranks (then the caller keeps what it has)."""
    if not values or len(values) != world_size:
        return None
    return values[rank]


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
