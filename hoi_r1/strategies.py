"""Distributed-strategy presets that LightningCLI can build from YAML.

Lightning's ``FSDPStrategy`` takes its wrap policy as a set of module *classes*, which a YAML
file cannot name; :class:`LayerWrapFSDPStrategy` takes dotted class paths instead and wraps (and
optionally checkpoints) each transformer block on its own, the usual layout for decoder models.

>>> s = LayerWrapFSDPStrategy(layers=["torch.nn.TransformerEncoderLayer"])
>>> sorted(c.__name__ for c in s.wrapped_layers)
['TransformerEncoderLayer']
"""

from __future__ import annotations

import importlib

from lightning.pytorch.strategies import FSDPStrategy

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


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import layer class {path!r}: {e}") from None
