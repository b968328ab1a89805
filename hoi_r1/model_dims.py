"""The dimensions of a Qwen2.5-VL and its parameter counts: pure arithmetic on the published
model dimensions (:data:`hoi_r1.reference_models.REFERENCE_CONFIGS`), the first input of the memory
model (:mod:`hoi_r1.memory_model`).

* **Parameters** — :func:`parameter_count`: embeddings ``V·h`` (+ ``lm_head`` unless tied), per
  decoder layer ``q,k,v,o`` (``q,k,v`` with biases, grouped-query ``k,v`` of ``n_kv·d``), the
  SwiGLU MLP ``3·h·I`` and two RMSNorms; the vision tower: the patch embedding
  ``3·2·14·14·h_v``, per block ``qkv`` + ``proj`` (biases), the gated MLP (biases), two RMSNorms,
  and the merger (RMSNorm, ``4h_v → 4h_v → h_out``). Equals ``sum(p.numel())`` of the built model
  (tested). LoRA (:func:`lora_parameters`): ``r·(in + out)`` per adapted linear layer.

>>> from hoi_r1.reference_models import REFERENCE_CONFIGS
>>> dims = ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"])
>>> parameter_count(dims)
3754622976
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers :class:`hoi_r1.models.LoraSettings` adapts by default."""


@dataclass(frozen=True)
class TextDims:
    """The language model's dimensions.

    Args:
        vocab: vocabulary size ``V`` (embedding rows).
        hidden: hidden size ``h``.
        intermediate: MLP width ``I``.
        layers: decoder layers.
        heads: attention heads (head size ``d = h / heads``).
        kv_heads: key/value heads (grouped-query attention).
        tied: ``lm_head`` shares the embedding matrix.
    """

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class VisionDims:
    """The vision tower's dimensions (Qwen2.5-VL ViT with its patch merger).

    Args:
        depth: vision blocks.
        hidden: hidden size ``h_v``.
        intermediate: gated-MLP width ``I_v``.
        heads: attention heads.
        patch: patch side in pixels.
        temporal_patch: frames per patch.
        in_chans: image channels.
        merge: spatial merge size (``merge²`` patches become one language token).
        out_hidden: merger output size (the language model's ``h``).
    """

    depth: int
    hidden: int
    intermediate: int
    heads: int
    patch: int
    temporal_patch: int
    in_chans: int
    merge: int
    out_hidden: int


@dataclass(frozen=True)
class ModelDims:
    """Both towers.

    Args:
        text: the language model.
        vision: the vision tower.
    """

    text: TextDims
    vision: VisionDims

    @classmethod
    def from_config(cls, values: dict) -> "ModelDims":
        """From a published ``config.json`` (flat layout: text keys at the top, ``vision_config``).

        Args:
            values: the config as a dict, e.g. ``REFERENCE_CONFIGS["qwen2_5_vl_7b"]``.
        """
        v = values["vision_config"]
        text = TextDims(values["vocab_size"], values["hidden_size"], values["intermediate_size"],
                        values["num_hidden_layers"], values["num_attention_heads"], values["num_key_value_heads"],
                        bool(values["tie_word_embeddings"]))
        vision = VisionDims(v["depth"], v["hidden_size"], v["intermediate_size"], v["num_heads"], v["patch_size"],
                            v["temporal_patch_size"], v["in_chans"], v["spatial_merge_size"], v["out_hidden_size"])
        return cls(text, vision)


def text_parameters(t: TextDims) -> int:
    """Parameters of the language model including ``lm_head`` (once if tied).

    Args:
        t: its dimensions.

    >>> text_parameters(TextDims(vocab=10, hidden=4, intermediate=8, layers=1, heads=2, kv_heads=1, tied=True))
    204
    """
    kv = t.kv_heads * t.head_dim
    attention = (t.hidden * t.hidden + t.hidden) + 2 * (t.hidden * kv + kv) + t.hidden * t.hidden
    layer = attention + 3 * t.hidden * t.intermediate + 2 * t.hidden
    embeddings = t.vocab * t.hidden * (1 if t.tied else 2)
    return embeddings + t.layers * layer + t.hidden


def vision_parameters(v: VisionDims) -> int:
    """Parameters of the vision tower: patch embedding, blocks and merger.

    Args:
        v: its dimensions.
    """
    patch = v.in_chans * v.temporal_patch * v.patch * v.patch * v.hidden
    block = (3 * v.hidden * v.hidden + 3 * v.hidden) + (v.hidden * v.hidden + v.hidden) + 2 * v.hidden
    block += 2 * (v.hidden * v.intermediate + v.intermediate) + (v.intermediate * v.hidden + v.hidden)
    return patch + v.depth * block + merger_parameters(v)


def merger_parameters(v: VisionDims) -> int:
    """Parameters of the patch merger (RMSNorm, ``Linear(4h_v, 4h_v)``, GELU, ``Linear(4h_v, h_out)``).

    Args:
        v: the vision tower's dimensions.
    """
    wide = v.hidden * v.merge * v.merge
    return v.hidden + (wide * wide + wide) + (wide * v.out_hidden + v.out_hidden)


def parameter_count(m: ModelDims) -> int:
    """All parameters of a Qwen2.5-VL (``sum(p.numel() for p in model.parameters())``).

    Args:
        m: the model's dimensions.
    """
    return text_parameters(m.text) + vision_parameters(m.vision)


def lora_parameters(t: TextDims, r: int = 16, targets: Sequence[str] = LORA_TARGETS) -> int:
    """LoRA parameters ``r·(in + out)`` per adapted linear layer of every decoder layer.

    Args:
        t: the language model's dimensions.
        r: adapter rank.
        targets: adapted layers (names as in :data:`LORA_TARGETS`).

    >>> lora_parameters(TextDims(10, 4, 8, 1, 2, 1, True), r=1, targets=("q_proj", "down_proj"))
    20
    """
    kv = t.kv_heads * t.head_dim
    shapes = {"q_proj": (t.hidden, t.hidden), "k_proj": (t.hidden, kv), "v_proj": (t.hidden, kv),
              "o_proj": (t.hidden, t.hidden), "gate_proj": (t.hidden, t.intermediate),
              "up_proj": (t.hidden, t.intermediate), "down_proj": (t.intermediate, t.hidden)}
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; known: {sorted(shapes)}")
    return t.layers * sum(r * (shapes[name][0] + shapes[name][1]) for name in targets)


def trainable_parameters(m: ModelDims, lora_r: int | None = None, freeze_vision: bool = True) -> int:
    """Trainable parameters: the LoRA adapters (peft freezes everything else), or the whole model
    minus the vision blocks and patch embedding when ``freeze_vision`` (the merger trains).

    Args:
        m: the model's dimensions.
        lora_r: LoRA rank on :data:`LORA_TARGETS`; ``None`` for full fine-tuning.
        freeze_vision: :class:`hoi_r1.models.ModelSettings` ``freeze_vision``.
    """
    if lora_r is not None:
        return lora_parameters(m.text, lora_r)
    total = parameter_count(m)
    if freeze_vision:
        total -= vision_parameters(m.vision) - merger_parameters(m.vision)
    return total



def layer_parameters(t: TextDims) -> int:
    """Parameters of one decoder layer (the unit FSDP wraps).

    Args:
        t: the language model's dimensions.
    """
    one = replace(t, layers=1, vocab=0)
    return text_parameters(one) - t.hidden
