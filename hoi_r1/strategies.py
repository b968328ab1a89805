"""Distributed-strategy presets that LightningCLI can build from YAML.

Lightning's ``FSDPStrategy`` takes its wrap policy as a set of module *classes*, which a YAML
file cannot name; :class:`LayerWrapFSDPStrategy` takes dotted class paths instead and wraps (and
optionally checkpoints) each transformer block on its own, the usual layout for decoder models.
It is FSDP1, which needs CUDA (Lightning and torch both refuse a CPU run).

:class:`LayerShardStrategy` is the same layout with FSDP2 (``fully_shard``) on Lightning's
``ModelParallelStrategy``: each named block is one unit, the rest of the model the root unit,
sharded over all processes (data parallel, no tensor parallelism). It also runs on CPU (gloo).
Code that runs parts of such a model outside its ``forward`` (``generate`` computes the image
features first) gathers the root unit with :func:`unsharded_root`.

>>> s = LayerWrapFSDPStrategy(layers=["torch.nn.TransformerEncoderLayer"])
>>> sorted(c.__name__ for c in s.wrapped_layers)
['TransformerEncoderLayer']
>>> s = LayerShardStrategy(layers=["torch.nn.TransformerEncoderLayer"])
>>> sorted(c.__name__ for c in s.sharded_layers)
['TransformerEncoderLayer']
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import torch

from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

QWEN2_5_VL_LAYERS = (
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLDecoderLayer",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLVisionBlock",
)


class LayerWrapFSDPStrategy(FSDPStrategy):
    """FSDP that shards each named transformer block as its own unit.

    Args:
        layers: dotted class paths of the blocks to wrap (default: Qwen2.5-VL's decoder layers
            and vision blocks).
        checkpoint_layers: also apply activation checkpointing to those blocks.
        sharding_strategy: ``FULL_SHARD``, ``SHARD_GRAD_OP``, ``HYBRID_SHARD`` or ``NO_SHARD``.
        state_dict_type: ``sharded`` (fast, one file per rank) or ``full`` checkpoints.
        cpu_offload: keep parameters and gradients in CPU memory between uses.
    """

    def __init__(
        self,
        layers: list[str] = list(QWEN2_5_VL_LAYERS),
        checkpoint_layers: bool = False,
        sharding_strategy: str = "FULL_SHARD",
        state_dict_type: str = "sharded",
        cpu_offload: bool = False,
    ) -> None:
        self.wrapped_layers = {_import(path) for path in layers}
        super().__init__(
            auto_wrap_policy=self.wrapped_layers,
            activation_checkpointing_policy=self.wrapped_layers if checkpoint_layers else None,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
            use_orig_params=True,  # LoRA / partly frozen models need the original parameters
        )


class LayerShardStrategy(ModelParallelStrategy):
    """FSDP2 over all processes: each named block one ``fully_shard`` unit, the model the root unit.

    The LightningModule keeps its model in ``.model`` (built in ``configure_model``, as every
    module of the project does); the strategy shards it after ``configure_model``, before the
    optimizer is built. Parameters become ``DTensor`` shards (``full_tensor()`` gathers one).

    Args:
        layers: dotted class paths of the blocks to shard as their own unit (default: Qwen2.5-VL's
            decoder layers and vision blocks).
        reshard_after_forward: free each unit's gathered parameters after its forward (ZeRO-3);
            ``False`` keeps them until the backward (ZeRO-2-like, more memory, fewer all-gathers).
        save_distributed_checkpoint: one shard file per rank in a checkpoint folder (``True``) or
            the full state gathered on rank 0 into one file (``False``).
        process_group_backend: ``nccl`` / ``gloo``; ``None``: the device's default (gloo on CPU).
    """

    def __init__(
        self,
        layers: list[str] = list(QWEN2_5_VL_LAYERS),
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
    ) -> None:
        self.sharded_layers = tuple(_import(path) for path in layers)
        self.reshard_after_forward = reshard_after_forward
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_processes * self.num_nodes  # all processes shard (Lightning's "auto": one per node)
        super().setup_environment()

    def setup(self, trainer) -> None:
        model = getattr(self.lightning_module, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{type(self).__name__} shards the LightningModule's `.model`, which "
                            f"`configure_model` must build (found {type(model).__name__})")
        shard_layers(model, self.sharded_layers, self.device_mesh["data_parallel"], self.reshard_after_forward)
        super().setup(trainer)


def shard_layers(model: torch.nn.Module, layers: tuple[type, ...], mesh, reshard_after_forward: bool = True) -> None:
    """``fully_shard`` every module of a class in ``layers``, then ``model`` itself (once: a
    model that is sharded already is left as it is)."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):
        return
    for module in model.modules():
        if isinstance(module, layers):
            fully_shard(module, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


@contextmanager
def unsharded_root(model: torch.nn.Module):
    """Gather an FSDP2 (``fully_shard``) model's root-unit parameters for the block, resharded
    after; a no-op for any other model. Every rank must enter it (an all-gather).

    The root is lazily initialised first: otherwise the first unit whose forward runs (a vision
    block, called from ``generate`` before the model's own ``forward``) claims to be the root and
    the model's ``forward`` fails after it.

    >>> with unsharded_root(torch.nn.Linear(2, 2)):
    ...     pass
    """
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model._get_fsdp_state()._lazy_init()
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import layer class {path!r}: {e}") from None
