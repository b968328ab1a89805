"""The terms of per-GPU training memory, each in bytes: model states, activations, logits, KV cache
and the prefill working set (pure arithmetic on :mod:`hoi_r1.model_dims` and a job's settings;
:mod:`hoi_r1.memory_model` adds them up per job). Every term, per GPU:

* **Model states** — :func:`model_state_bytes`. Torch AdamW keeps two moments in the
  parameter's dtype; mixed precision with fp32 weights therefore costs 4 (weights) + 4 (grads)
  + 8 (moments) = 16 bytes per trainable parameter, the same 16 bytes as the "2 + 2 + 12" of
  mixed-precision Adam in the ZeRO paper (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations
  Toward Training Trillion Parameter Models", Sec. 3.1), which DeepSpeed uses (bf16 weights and
  grads, fp32 master weights and moments). ZeRO-2 shards the gradients and optimizer states over
  the ``N`` data-parallel ranks, ZeRO-3 / FSDP ``FULL_SHARD`` the parameters too (ZeRO paper
  Sec. 5; PyTorch FSDP paper, Zhao et al. 2023). DDP keeps its gradient buckets beside the
  gradients unless ``gradient_as_bucket_view=True`` (PyTorch ``DistributedDataParallel`` docs:
  "the saved memory size will be equal to the total gradients size"); Lightning leaves it off.
  Autocast (``bf16-mixed`` over fp32 weights) caches a bf16 copy of every trainable weight for
  the forward (PyTorch autocast's weight cache, ``cache_enabled=True``): 2 bytes each.
* **Activations** — :func:`decoder_layer_activation_bytes`: what one decoder layer saves for
  backward per token, counted tensor by tensor as Korthikanti et al. 2022 ("Reducing Activation
  Recomputation in Large Transformer Models", Sec. 4.1) do for GPT, here for RMSNorm (its fp32
  up-cast and normalised copy, then the bf16 product: ``10h`` bytes, twice), attention with
  flash / memory-efficient SDPA (no ``s²`` term: ``q``, ``k``, ``v``, output) and the SwiGLU MLP
  (gate, SiLU(gate), up, their product: ``8I``). With gradient checkpointing (HF's, per layer)
  only each layer's input stays (``h`` in the residual dtype: fp32 under autocast over fp32
  weights) plus one recomputed layer and its gradients (:func:`activation_bytes`). A frozen
  vision tower saves nothing (no gradient reaches its input).
* **Logits** — :func:`logits_bytes`. SFT (:func:`hoi_r1.sft.answer_loss`) keeps logits only
  where a label is: bf16 logits (2), their fp32 copy (4), the log-softmax cross-entropy saves
  (4), its fp32 gradient (4): 14 bytes per ``(row, position, vocab)``. GRPO
  (:func:`hoi_r1.grpo_loss.per_token_logps`) turns one chunk of rows into fp32 at a time, but
  with gradients autograd keeps every chunk's fp32 input of ``logsumexp`` until backward: 2 (bf16
  logits) + 4 (fp32 chunks) + 2 (gradient) = 8 bytes, plus one chunk's transient fp32; without
  gradients (old / reference log-probs) only the chunk is extra.
* **KV cache** — :func:`kv_cache_bytes`: ``2 · layers · n_kv · d · 2`` bytes per token in bf16
  (keys and values), for every row being generated (HF ``generate``: all ``P·G`` at once).

>>> from hoi_r1.model_dims import ModelDims, parameter_count
>>> from hoi_r1.reference_models import REFERENCE_CONFIGS
>>> dims = ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"])
>>> round(model_state_bytes(parameter_count(dims), parameter_count(dims), "float32", "bf16-mixed", "ddp").total / 2**30, 1)
76.9
>>> kv_cache_bytes(dims.text, tokens=1)  # bytes per token of bf16 keys and values
36864
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from hoi_r1.model_dims import ModelDims, TextDims, VisionDims

BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per element of each parameter dtype."""

Strategy = Literal["ddp", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3"]
Precision = Literal["32-true", "bf16-mixed", "bf16-true"]


@dataclass(frozen=True)
class StateBytes:
    """Bytes of model states on one GPU.

    Args:
        weights: parameters as stored (sharded by FSDP / ZeRO-3), plus gathered working copies.
        autocast_copies: bf16 copies autocast caches of fp32 trainable weights.
        grads: gradients (sharded by ZeRO-2/3 / FSDP).
        buckets: communication buffers (DDP gradient buckets, DeepSpeed reduce buckets).
        optimizer: AdamW moments and, for DeepSpeed, fp32 master weights.
    """

    weights: float
    autocast_copies: float
    grads: float
    buckets: float
    optimizer: float

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))


def model_state_bytes(
    total_params: int,
    trainable_params: int,
    dtype: str = "float32",
    precision: Precision = "bf16-mixed",
    strategy: Strategy = "ddp",
    world_size: int = 8,
    largest_unit_params: int = 0,
) -> StateBytes:
    """Weights, gradients, buffers and optimizer state per GPU.

    Args:
        total_params: all parameters.
        trainable_params: parameters with gradients.
        dtype: ``model.dtype`` of the loaded weights (DeepSpeed converts them to bf16 under
            ``bf16-mixed``).
        precision: Lightning ``trainer.precision``.
        strategy: ``ddp``; ``fsdp`` (``FULL_SHARD``, bf16 gathering under ``bf16-mixed``);
            ``deepspeed_stage_2`` / ``deepspeed_stage_3`` (ZeRO-2 / ZeRO-3).
        world_size: ``N``, data-parallel ranks that shard (FSDP, ZeRO).
        largest_unit_params: FSDP: parameters of the largest wrapped unit (two are gathered at
            once: the running one and the prefetched one). ZeRO-3 gathers up to its
            ``stage3_max_live_parameters`` (1e9, Lightning's default) instead.

    >>> s = model_state_bytes(1000, 1000, "float32", "bf16-mixed", "deepspeed_stage_2", world_size=4)
    >>> s.weights, s.grads, s.optimizer  # ZeRO: 2Ψ, then (2Ψ + 12Ψ) / N
    (2000.0, 500.0, 3000.0)
    """
    n, P, T = world_size, total_params, trainable_params
    if strategy.startswith("deepspeed"):
        stage3 = strategy == "deepspeed_stage_3"
        half = 2 if precision != "32-true" else 4
        live = min(P, 1e9) * half if stage3 else 0
        buckets = 2 * 2e8 * half  # Lightning's reduce_bucket_size = allgather_bucket_size = 2e8 elements
        master = 4 if half == 2 else 0
        return StateBytes(P * half / (n if stage3 else 1) + live, 0, T * half / n, buckets, T * (8 + master) / n)
    w = BYTES[dtype] if precision != "bf16-true" else 2
    copies = 2 * T if precision == "bf16-mixed" and w == 4 and strategy == "ddp" else 0
    if strategy == "fsdp":
        gathered = 2 * largest_unit_params * (2 if precision == "bf16-mixed" else w)
        return StateBytes(P * w / n + gathered, 0, T * w / n, 0, 2 * T * w / n)
    if strategy != "ddp":
        raise ValueError(f"unknown strategy {strategy!r}")
    return StateBytes(P * w, copies, T * w, T * w, 2 * T * w)


# ===================================================================== activations, logits, KV cache
def decoder_layer_activation_bytes(t: TextDims, act_bytes: int = 2) -> int:
    """Bytes one decoder layer saves for backward per token (no recomputation).

    ``2 × 10h`` (two RMSNorms: fp32 up-cast 4h, fp32 normalised 4h, bf16 output 2h)
    + ``2h + 2·2·n_kv·d + 2h`` (SDPA's q, k, v and output) + ``4·2I`` (gate, SiLU, up, product),
    with ``act_bytes`` = 2 for the bf16 tensors.

    Args:
        t: the language model's dimensions.
        act_bytes: bytes per element of the matmul activations (2 under bf16 autocast).

    >>> from hoi_r1.reference_models import REFERENCE_CONFIGS
    >>> decoder_layer_activation_bytes(ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"]).text)
    138240
    """
    kv = t.kv_heads * t.head_dim
    norms = 2 * (8 + act_bytes) * t.hidden
    attention = act_bytes * (2 * t.hidden + 2 * kv)
    mlp = 4 * act_bytes * t.intermediate
    return norms + attention + mlp


def vision_block_activation_bytes(v: VisionDims, act_bytes: int = 2) -> int:
    """Bytes one vision block saves per patch (same count as :func:`decoder_layer_activation_bytes`,
    full multi-head attention: ``q, k, v`` and output of ``h_v`` each)."""
    return 2 * (8 + act_bytes) * v.hidden + act_bytes * 4 * v.hidden + 4 * act_bytes * v.intermediate


def activation_bytes(
    m: ModelDims,
    tokens: int,
    checkpointing: bool = True,
    residual_bytes: int = 4,
    vision_patches: int = 0,
    train_vision: bool = False,
) -> float:
    """Activations kept for backward over a micro-batch of ``tokens`` language tokens.

    Args:
        m: the model's dimensions.
        tokens: language tokens of the micro-batch (rows × sequence length).
        checkpointing: HF gradient checkpointing (per decoder layer / vision block): each
            layer's input in the residual dtype, plus one recomputed layer and its gradients.
        residual_bytes: bytes of the residual stream (4 under autocast over fp32 weights, 2 with
            bf16 weights).
        vision_patches: patches of the micro-batch's images (``4 ×`` their image tokens).
        train_vision: the vision tower has trainable blocks (otherwise it saves nothing).
    """
    layer = decoder_layer_activation_bytes(m.text)
    if checkpointing:
        text = tokens * (m.text.layers * residual_bytes * m.text.hidden + 2 * layer)
    else:
        text = tokens * m.text.layers * layer
    vision = 0.0
    if train_vision and vision_patches:
        block = vision_block_activation_bytes(m.vision)
        per_patch = (m.vision.depth * residual_bytes * m.vision.hidden + 2 * block) if checkpointing else m.vision.depth * block
        vision = vision_patches * per_patch
    return text + vision


def logits_bytes(rows: int, positions: int, vocab: int, kind: Literal["sft", "grpo", "no_grad"] = "sft",
                 chunk_rows: int = 512) -> float:
    """Logits and their loss tensors: 14 bytes per element for SFT, 8 (+ one fp32 chunk) for the
    GRPO policy pass, 2 (+ one fp32 chunk) without gradients (see the module docstring).

    Args:
        rows: sequences.
        positions: positions per sequence whose logits are built (SFT: the labelled ones; GRPO:
            the completion).
        vocab: vocabulary size ``V``.
        kind: ``sft`` (:func:`hoi_r1.sft.answer_loss`), ``grpo`` (policy pass of
            :func:`hoi_r1.grpo_loss.per_token_logps`), ``no_grad`` (old / reference log-probs).
        chunk_rows: ``per_token_logps``'s ``chunk_rows``.

    >>> logits_bytes(1, 10, 100, "sft")
    14000
    """
    elements = rows * positions * vocab
    chunk = min(chunk_rows, rows * positions) * vocab * 4 * 2  # fp32 chunk and its log-softmax
    if kind == "sft":
        return 14 * elements
    if kind == "grpo":
        return 8 * elements + chunk
    return 2 * elements + chunk


def kv_cache_bytes(t: TextDims, tokens: int, dtype_bytes: int = 2) -> int:
    """Keys and values of ``tokens`` cached tokens (all rows together).

    Args:
        t: the language model's dimensions.
        tokens: cached tokens (rows × (prompt + completion)).
        dtype_bytes: bytes per element (bf16: 2).
    """
    return tokens * 2 * t.layers * t.kv_heads * t.head_dim * dtype_bytes


def prefill_bytes(t: TextDims, tokens: int, act_bytes: int = 2) -> int:
    """Transient working set of one decoder layer in a no-grad forward over ``tokens`` tokens
    (gate, up and their product of width ``I``; four ``h``-wide tensors): the prompt pass of
    generation."""
    return tokens * act_bytes * (3 * t.intermediate + 4 * t.hidden)
