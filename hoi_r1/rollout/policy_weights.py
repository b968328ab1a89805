"""The policy's weights as a rollout engine loads them: Hugging Face names, one tensor at a time.

What a weight push sends (:meth:`hoi_r1.rollout.vllm.VLLMRolloutEngine.sync_weights`):

* **names**: the Hugging Face checkpoint's (``base_model.model.`` and ``.base_layer`` removed for
  peft models, activation-checkpoint wrappers unwrapped); LoRA adapter tensors are not sent.
* **LoRA, merged out of place**: a layer with adapters is sent as ``W + Σ scale·B@A``, computed
  in float32 and cast to ``W``'s dtype (:func:`merged_lora_weight`). The training weights are
  never modified: merging and unmerging in place (peft's ``merge_adapter`` / ``unmerge_adapter``)
  adds and subtracts the same product in the parameter's own dtype, which drifts in bf16 (TRL
  measured ≈ 6e-3 after 100 cycles, as reported in issue #11).
* **sharded parameters**: DTensor (FSDP2) parameters are gathered one at a time with
  ``full_tensor()``; DeepSpeed ZeRO-3 parameters with ``GatheredParameters``, the base weight and
  its adapters *together*, so the merge sees full tensors (merging before gathering would merge
  the empty partitions). FSDP1 needs ``summon_full_params`` per unit: not supported, use FSDP2 or
  DeepSpeed (an FSDP1-wrapped model is refused: outside a forward its parameters are flat shards).

Each yielded tensor is valid until the next one is requested (a gathered parameter is released
then): the engine copies it at once.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

LoraPair = tuple[torch.Tensor, torch.Tensor, float]
"""``(A, B, scale)`` of one adapter: ``A`` is ``(r, in)``, ``B`` is ``(out, r)``."""


def policy_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's weights under Hugging Face names, LoRA merged out of place (module docstring)."""
    _refuse_fsdp1(model)
    lora = lora_layers(model)
    prefix = getattr(model, "prefix", None)  # "lora_" for peft LoRA models
    for name, param in model.named_parameters():
        if prefix and prefix in name:
            continue
        layer = lora.get(name)
        if layer is None:
            with _gathered([param]):
                yield hf_name(name), _full(param.data)
            continue
        adapters = _active_adapters(layer, name)
        tensors = [t for a in adapters for t in (layer.lora_A[a].weight, layer.lora_B[a].weight)]
        with _gathered([param, *tensors]):
            pairs = [(_full(layer.lora_A[a].weight.data), _full(layer.lora_B[a].weight.data), float(layer.scaling[a]))
                     for a in adapters]
            yield hf_name(name), merged_lora_weight(_full(param.data), pairs, bool(getattr(layer, "fan_in_fan_out", False)))


def merged_lora_weight(weight: torch.Tensor, pairs: list[LoraPair], fan_in_fan_out: bool = False) -> torch.Tensor:
    """``W + Σ scale·B@A`` computed in float32 and cast to ``W``'s dtype; ``W`` itself is untouched.

    ``fan_in_fan_out``: ``W`` is stored ``(in, out)`` (GPT-2's ``Conv1D``), so the product is transposed.

    >>> w = torch.zeros(2, 3, dtype=torch.bfloat16)
    >>> a, b = torch.ones(1, 3), torch.full((2, 1), 2.0)
    >>> merged_lora_weight(w, [(a, b, 0.25)]).tolist()
    [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    >>> merged_lora_weight(w, [(a, b, 0.25)]).dtype, w.abs().sum().item()
    (torch.bfloat16, 0.0)
    """
    merged = weight.detach().to(torch.float32, copy=True)
    for a, b, scale in pairs:
        delta = b.detach().to(device=merged.device, dtype=torch.float32) @ a.detach().to(device=merged.device, dtype=torch.float32)
        merged += scale * (delta.T if fan_in_fan_out else delta)
    return merged.to(weight.dtype)


def lora_layers(model) -> dict[str, torch.nn.Module]:
    """``{name of the base weight parameter: its peft LoRA layer}`` (empty for a plain model)."""
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer") and hasattr(module, "scaling"):
            out[f"{name}.base_layer.weight"] = module
    return out


def hf_name(name: str) -> str:
    """The Hugging Face checkpoint name of a (possibly peft-wrapped) parameter.

    >>> hf_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight")
    'model.language_model.layers.0.self_attn.q_proj.weight'
    """
    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
    return name.replace("_checkpoint_wrapped_module.", "")


def _active_adapters(layer, name: str) -> list[str]:
    if getattr(layer, "merged", False):
        raise RuntimeError(f"{name}: the LoRA adapters are merged into the weight already; weights are pushed "
                           "with the adapters unmerged (merged out of place)")
    if getattr(layer, "disable_adapters", False):
        return []
    active = layer.active_adapters if hasattr(layer, "active_adapters") else layer.active_adapter
    active = [active] if isinstance(active, str) else list(active)
    adapters = [a for a in active if a in layer.lora_A]
    for a in adapters:
        if getattr(layer, "use_dora", {}).get(a, False):
            raise NotImplementedError(f"{name}: DoRA adapter {a!r}: pushing DoRA weights is not supported")
    return adapters


def _refuse_fsdp1(model) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise NotImplementedError("pushing the weights of an FSDP1 (FullyShardedDataParallel) model is not supported: "
                                  "its parameters are flat shards outside a forward; use FSDP2 "
                                  "(hoi_r1.strategies.LayerShardStrategy) or DeepSpeed ZeRO-3")


def _full(data: torch.Tensor) -> torch.Tensor:
    return data.full_tensor() if hasattr(data, "full_tensor") else data


@contextmanager
def _gathered(params: list[torch.Tensor]):
    if any(hasattr(p, "ds_id") for p in params):  # DeepSpeed ZeRO-3 partitioned parameters
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            yield
    else:
        yield
