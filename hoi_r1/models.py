"""Load a vision-language model and its processor: hub name or local path, dtype, attention
kernel, LoRA, freezing.

``trust_remote_code`` stays off unless a config turns it on, and weights load from safetensors
only (``use_safetensors=True``), so a checkpoint cannot run code while it loads.

>>> import tempfile
>>> from hoi_r1.tiny import build_tiny_qwen2_5_vl, TinyModelSize
>>> small = TinyModelSize(text_hidden=32, vision_hidden=32, vocab_size=300)
>>> path = build_tiny_qwen2_5_vl(tempfile.mkdtemp(), small, corpus=["person ball [1, 2]"])
>>> model = load_model(ModelSettings(name_or_path=str(path), freeze_vision=True))
>>> any(p.requires_grad for p in vision_tower(model).blocks.parameters())
False
>>> all(p.requires_grad for p in vision_tower(model).merger.parameters())
True
>>> model.config._attn_implementation
'sdpa'
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch

DType = Literal["float32", "bfloat16", "float16"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2"]


@dataclass
class LoraSettings:
    """LoRA adapters (peft).

    Args:
        r: rank of the adapters.
        alpha: scaling numerator (``lora_alpha``).
        dropout: dropout on the adapter input.
        target_modules: names of the linear layers that get adapters (language model only by default).
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelSettings:
    """Which model to load and how.

    Args:
        name_or_path: Hugging Face Hub name (``Qwen/Qwen2.5-VL-3B-Instruct``) or a local directory.
        dtype: parameter dtype.
        attn_implementation: ``auto`` picks ``flash_attention_2`` when flash-attn is installed and a
            GPU is present, else ``sdpa``.
        trust_remote_code: allow code from the checkpoint (off by default).
        lora: LoRA adapters; ``None`` trains the full model.
        freeze_vision: freeze the vision tower's blocks and patch embedding.
        freeze_merger: freeze the vision-to-language merger (projector).
        freeze_llm: freeze the language model (LoRA adapters stay trainable).
        gradient_checkpointing: recompute activations in the backward pass.

    The processor's image-size limits are the data's (``data.min_pixels`` / ``data.max_pixels``,
    :class:`~hoi_r1.datamodule.HOIDataModule`), since the answers' coordinate frame is built
    from them; ``hoi-r1 export`` writes them into the exported processor.
    """

    name_or_path: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    dtype: DType = "float32"
    attn_implementation: AttnImplementation = "auto"
    trust_remote_code: bool = False
    lora: LoraSettings | None = None
    freeze_vision: bool = False
    freeze_merger: bool = False
    freeze_llm: bool = False
    gradient_checkpointing: bool = False


# Settings travel inside checkpoints (hyper-parameters); let torch.load(weights_only=True) read them.
torch.serialization.add_safe_globals([LoraSettings, ModelSettings])


RETIRED_FIELDS = frozenset({"min_pixels", "max_pixels"})
"""Fields earlier versions wrote into checkpoints' model settings (they never reached the processor)."""


def model_settings_from(value) -> ModelSettings:
    """``ModelSettings`` from a dataclass or from the plain dict LightningCLI stores in checkpoints."""
    if isinstance(value, ModelSettings):
        return value
    if isinstance(value, dict):
        fields = dict(value)
        for name in RETIRED_FIELDS & fields.keys():  # written by earlier versions
            if (retired := fields.pop(name)) is not None:
                warnings.warn(f"model settings: {name}={retired} is ignored; the processor's pixel limits "
                              f"are data.{name} (hoi_r1.datamodule.HOIDataModule)", stacklevel=2)
        if isinstance(fields.get("lora"), dict):
            fields["lora"] = LoraSettings(**fields["lora"])
        return ModelSettings(**fields)
    raise TypeError(f"expected ModelSettings or a dict of its fields, found {type(value).__name__}")


def resolve_attn_implementation(choice: AttnImplementation) -> str:
    """``auto`` → ``flash_attention_2`` if flash-attn is importable and CUDA is available, else ``sdpa``."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_model(settings: ModelSettings):
    """Load the model for training or evaluation, apply freezing and LoRA."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        settings.name_or_path,
        dtype=getattr(torch, settings.dtype),
        attn_implementation=resolve_attn_implementation(settings.attn_implementation),
        trust_remote_code=settings.trust_remote_code,
        use_safetensors=True,
    )
    apply_freezing(model, settings)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if settings.lora is not None:
        model = add_lora(model, settings.lora)
    return model


def load_processor(name_or_path: str, trust_remote_code: bool = False, min_pixels: int | None = None,
                   max_pixels: int | None = None):
    """Load the processor of ``name_or_path``; ``min_pixels`` / ``max_pixels`` (image areas in
    pixels) replace its resize limits when given, ``None`` keeps the checkpoint's."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    ip = processor.image_processor
    if min_pixels is not None:
        ip.size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        ip.size["longest_edge"] = max_pixels
    return processor


def pixel_limits(image_processor) -> tuple[int, int, int]:
    """``(min_pixels, max_pixels, factor)`` of a Qwen2-VL-family image processor: the resize
    settings that :class:`~hoi_r1.frames.Frame` (and vLLM) must share with it."""
    size = image_processor.size
    lo = size.get("shortest_edge") if hasattr(size, "get") else size["shortest_edge"]
    hi = size.get("longest_edge") if hasattr(size, "get") else size["longest_edge"]
    return int(lo), int(hi), int(image_processor.patch_size * image_processor.merge_size)


def vision_tower(model) -> torch.nn.Module:
    """The vision encoder (``model.visual`` in Qwen2/2.5/3-VL)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "visual")


def language_model(model) -> torch.nn.Module:
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model")


def apply_freezing(model, settings: ModelSettings) -> None:
    """Set ``requires_grad`` according to the freezing options."""
    visual = vision_tower(model)
    merger = getattr(visual, "merger", None)
    if settings.freeze_vision:
        for name, p in visual.named_parameters():
            if not name.startswith("merger."):
                p.requires_grad_(False)
    if settings.freeze_merger and merger is not None:
        merger.requires_grad_(False)
    if settings.freeze_llm:
        language_model(model).requires_grad_(False)
        model.lm_head.requires_grad_(False)


def add_lora(model, lora: LoraSettings):
    """Wrap ``model`` with peft LoRA adapters on the language model's linear layers."""
    from peft import LoraConfig, get_peft_model

    # Anchor the names on the language model so the vision tower's layers with the same names
    # (qkv, proj, gate_proj…) do not get adapters.
    pattern = r".*language_model.*\.(" + "|".join(lora.target_modules) + r")$"
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern)
    return get_peft_model(model, config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
