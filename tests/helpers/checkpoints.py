"""Training checkpoints written by hand for the ``init_from_checkpoint`` tests of the SFT and GRPO
modules: the tiny model's weights, perturbed, in the layout ``hoi-r1 fit`` saves."""

from __future__ import annotations

import torch

from hoi_r1.models import ModelSettings, load_model


def perturbed_checkpoint(model_dir, path, lora=None):
    """Save the model of ``model_dir`` (LoRA ``lora``: only its ``lora_B`` weights) with every
    weight moved by ``0.01 · N(0, 1)`` as a checkpoint at ``path``; return that model."""
    model = load_model(ModelSettings(name_or_path=str(model_dir), lora=lora))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if lora is None or "lora_B" in name:
                p.add_(0.01 * torch.randn_like(p))
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": ModelSettings(name_or_path=str(model_dir), lora=lora)}}, path)
    return model
