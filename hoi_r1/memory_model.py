"""Per-GPU memory of SFT and GRPO of Qwen2.5-VL: a model to plan GPU jobs with.

Pure arithmetic on the published model dimensions (:data:`hoi_r1.reference_models.REFERENCE_CONFIGS`)
and on a job's settings; nothing is allocated. ``python -m hoi_r1.memory_model`` prints the table
of ``docs/training.md`` ("Memory per GPU"). Every term, per GPU, in bytes:

* **Parameters** — :func:`parameter_count`: embeddings ``V·h`` (+ ``lm_head`` unless tied), per
  decoder layer ``q,k,v,o`` (``q,k,v`` with biases, grouped-query ``k,v`` of ``n_kv·d``), the
  SwiGLU MLP ``3·h·I`` and two RMSNorms; the vision tower: the patch embedding
  ``3·2·14·14·h_v``, per block ``qkv`` + ``proj`` (biases), the gated MLP (biases), two RMSNorms,
  and the merger (RMSNorm, ``4h_v → 4h_v → h_out``). Equals ``sum(p.numel())`` of the built model
  (tested). LoRA (:func:`lora_parameters`): ``r·(in + out)`` per adapted linear layer.
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
* **vLLM colocated** — vLLM takes ``gpu_memory_utilization × GPU`` (weights, KV cache,
  activations; vLLM docs "Engine Arguments"); with sleep mode it frees that while training,
  otherwise the trainer has only the rest.
* **Overhead** — CUDA context, NCCL buffers and allocator fragmentation: a flat 2 GiB
  (:data:`OVERHEAD_GIB`, an assumption, not derived).

>>> dims = ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"])
>>> parameter_count(dims)
3754622976
>>> round(model_state_bytes(parameter_count(dims), parameter_count(dims), "float32", "bf16-mixed", "ddp").total / GiB, 1)
76.9
>>> kv_cache_bytes(dims.text, tokens=1)  # bytes per token of bf16 keys and values
36864
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import Literal, Sequence

from hoi_r1.reference_models import REFERENCE_CONFIGS

GiB = 2**30
"""Bytes per GiB (the tables use GiB; "80 GB" GPUs hold 79.6 GiB usable, see :data:`GPUS`)."""

OVERHEAD_GIB = 2.0
"""CUDA context, NCCL buffers and allocator fragmentation per GPU (assumed, not derived)."""

GPUS: dict[str, float] = {"80 GB (A100/H100)": 80e9 / GiB, "141 GB (H200)": 141e9 / GiB}
"""GPU memory in GiB (vendor GB of 1e9 bytes)."""

BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per element of each parameter dtype."""

Strategy = Literal["ddp", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3"]
Precision = Literal["32-true", "bf16-mixed", "bf16-true"]
LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers :class:`hoi_r1.models.LoraSettings` adapts by default."""


# ===================================================================== dimensions and parameters
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


# ===================================================================== model states
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


# ===================================================================== jobs
@dataclass(frozen=True)
class Job:
    """One training job's settings that drive memory (defaults: ``hico_sft_qwen2_5_vl_3b.yaml``).

    Args:
        stage: ``sft`` or ``grpo``.
        strategy: see :func:`model_state_bytes`.
        world_size: data-parallel ranks (``trainer.devices × num_nodes``).
        dtype: ``model.dtype``.
        precision: ``trainer.precision``.
        lora_r: LoRA rank; ``None`` for full fine-tuning.
        freeze_vision: ``model.freeze_vision``.
        checkpointing: gradient checkpointing (HF's or the FSDP strategy's per block).
        batch_size: ``data.batch_size`` (SFT sequences, GRPO prompts per GPU).
        seq_len: SFT: tokens per sequence (worst case ``data.max_length``); GRPO: prompt tokens.
        answer_tokens: SFT: labelled positions per sequence (logits are built there only).
        image_tokens: language tokens of one image (``max_pixels / 28²`` at most).
        num_generations: GRPO ``G``.
        completion_len: GRPO ``max_completion_length``.
        steps_per_generation: GRPO micro-batches per generation batch.
        engine: GRPO rollouts: ``hf`` (generate with the training model) or ``vllm`` (colocated).
        gpu_memory_utilization: vLLM's share of the GPU.
        vllm_sleep: vLLM frees its memory while the trainer trains (``enable_sleep_mode``).
    """

    stage: Literal["sft", "grpo"] = "sft"
    strategy: Strategy = "ddp"
    world_size: int = 8
    dtype: str = "float32"
    precision: Precision = "bf16-mixed"
    lora_r: int | None = None
    freeze_vision: bool = True
    checkpointing: bool = True
    batch_size: int = 2
    seq_len: int = 8192
    answer_tokens: int = 1024
    image_tokens: int = 1024
    num_generations: int = 8
    completion_len: int = 1024
    steps_per_generation: int = 4
    engine: Literal["hf", "vllm"] = "hf"
    gpu_memory_utilization: float = 0.3
    vllm_sleep: bool = True


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes per GPU of a job, by part.

    Args:
        states: model states (:func:`model_state_bytes`).
        activations: activations kept for backward (:func:`activation_bytes`).
        logits: logits and loss tensors (:func:`logits_bytes`).
        generation: ``hf`` rollouts: KV cache and prefill working set (the generation phase).
        overhead: CUDA context, NCCL and fragmentation.
        vllm_fraction: a colocated vLLM's share of the GPU (0: none).
        vllm_sleep: vLLM frees its share while the trainer trains.
    """

    states: StateBytes
    activations: float
    logits: float
    generation: float
    overhead: float = OVERHEAD_GIB * GiB
    vllm_fraction: float = 0.0
    vllm_sleep: bool = True

    @property
    def trainer_peak(self) -> float:
        """The trainer's own peak: states + the larger of the training and generation phases."""
        return self.states.total + max(self.activations + self.logits, self.generation) + self.overhead

    def fits(self, gpu_gib: float) -> bool:
        """Whether the job fits a GPU of ``gpu_gib`` GiB (colocated vLLM: its share reserved while
        generating; while training too unless it sleeps)."""
        vllm = self.vllm_fraction * gpu_gib * GiB
        generating = self.states.total + self.overhead + vllm
        training = self.states.total + self.activations + self.logits + self.overhead + (0 if self.vllm_sleep else vllm)
        if self.vllm_fraction == 0:
            return self.trainer_peak <= gpu_gib * GiB
        return max(generating, training) <= gpu_gib * GiB


def estimate(m: ModelDims, job: Job) -> MemoryEstimate:
    """Peak memory per GPU of ``job`` on the model ``m``.

    Args:
        m: the model's dimensions.
        job: the job's settings.
    """
    P = parameter_count(m)
    T = trainable_parameters(m, job.lora_r, job.freeze_vision)
    unit = max(_layer_parameters(m.text), P - m.text.layers * _layer_parameters(m.text) - vision_parameters(m.vision))
    states = model_state_bytes(P, T, job.dtype, job.precision, job.strategy, job.world_size, unit)
    residual = 4 if BYTES[job.dtype] == 4 and job.precision != "bf16-true" else 2
    train_vision = not job.freeze_vision and job.lora_r is None
    V = m.text.vocab
    if job.stage == "sft":
        tokens = job.batch_size * job.seq_len
        acts = activation_bytes(m, tokens, job.checkpointing, residual, 4 * job.image_tokens * job.batch_size, train_vision)
        logits = logits_bytes(job.batch_size, job.answer_tokens, V, "sft")
        return MemoryEstimate(states, acts, logits, 0.0)
    rows = job.batch_size * job.num_generations // job.steps_per_generation
    prompt = job.seq_len + job.image_tokens
    tokens = rows * (prompt + job.completion_len)
    acts = activation_bytes(m, tokens, job.checkpointing, residual, 4 * job.image_tokens * rows, train_vision)
    logits = logits_bytes(rows, job.completion_len, V, "grpo")
    generation = 0.0
    vllm = 0.0
    if job.engine == "hf":
        sequences = job.batch_size * job.num_generations
        generation = kv_cache_bytes(m.text, sequences * (prompt + job.completion_len)) + prefill_bytes(m.text, sequences * prompt)
    else:
        vllm = job.gpu_memory_utilization
    return MemoryEstimate(states, acts, logits, generation, vllm_fraction=vllm, vllm_sleep=job.vllm_sleep)


def _layer_parameters(t: TextDims) -> int:
    one = replace(t, layers=1, vocab=0)
    return text_parameters(one) - t.hidden


# ===================================================================== the docs table
SHIPPED_JOBS: dict[str, Job] = {
    "SFT full, DDP (`hico_sft_qwen2_5_vl_3b.yaml`)": Job(),
    "SFT LoRA r=16, DDP": Job(lora_r=16),
    "SFT full, FSDP FULL_SHARD ×8 (`_fsdp.yaml`)": Job(strategy="fsdp"),
    "SFT full, ZeRO-2 ×8 (`_deepspeed.yaml`)": Job(strategy="deepspeed_stage_2"),
    "SFT full, ZeRO-3 ×8": Job(strategy="deepspeed_stage_3"),
    "GRPO full, DDP, hf rollouts (`hico_grpo_qwen2_5_vl_3b.yaml`)": Job(stage="grpo", seq_len=2048),
    "GRPO full, DDP, vLLM 0.3 + sleep (`hico_grpo_qwen2_5_vl_3b_vllm.yaml`)": Job(stage="grpo", seq_len=2048, engine="vllm"),
    "GRPO full, DDP, vLLM 0.3, no sleep": Job(stage="grpo", seq_len=2048, engine="vllm", vllm_sleep=False),
    "GRPO LoRA r=16, DDP, hf rollouts": Job(stage="grpo", seq_len=2048, lora_r=16),
}
"""The rows of the docs table: the shipped HICO configs (and LoRA / ZeRO-3 / no-sleep variants).
GRPO prompts: 2,048 text tokens (HICO's instruction lists all 80 objects and their verbs: about
2,000 Qwen pre-tokens) + up to 1,024 image tokens."""


def table(models: Sequence[str] = ("qwen2_5_vl_3b", "qwen2_5_vl_7b"), jobs: dict[str, Job] | None = None) -> str:
    """The Markdown table of ``docs/training.md``: GiB per GPU by part and whether each job fits.

    Args:
        models: keys of :data:`REFERENCE_CONFIGS`.
        jobs: rows (default :data:`SHIPPED_JOBS`).
    """
    jobs = SHIPPED_JOBS if jobs is None else jobs
    gpus = list(GPUS)
    head = ["model", "job", "params / trainable", "states", "activations", "logits", "generation", "trainer peak"]
    lines = ["| " + " | ".join(head + [f"fits {g}" for g in gpus]) + " |", "|" + "---|" * (len(head) + len(gpus))]
    for name in models:
        dims = ModelDims.from_config(REFERENCE_CONFIGS[name])
        for label, job in jobs.items():
            e = estimate(dims, job)
            P, T = parameter_count(dims), trainable_parameters(dims, job.lora_r, job.freeze_vision)
            peak = f"{e.trainer_peak / GiB:.1f}" + (f" + vLLM {job.gpu_memory_utilization:.0%}" if e.vllm_fraction else "")
            cells = [name.replace("qwen2_5_vl_", "").upper(), label, f"{P / 1e9:.2f} B / {T / 1e9:.3g} B",
                     f"{e.states.total / GiB:.1f}", f"{e.activations / GiB:.1f}", f"{e.logits / GiB:.1f}",
                     f"{e.generation / GiB:.1f}", peak]
            cells += ["yes" if e.fits(GPUS[g]) else "**no**" for g in gpus]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CPU_RUN_JOBS: dict[str, Job] = {
    "SFT step (326 tokens, 200 labelled, 16 image tokens)": Job(
        world_size=1, dtype="bfloat16", lora_r=16, batch_size=1, seq_len=326, answer_tokens=200, image_tokens=16),
    "GRPO step (G = 2, 125-token prompt, 16-token completions)": Job(
        stage="grpo", world_size=1, dtype="bfloat16", lora_r=16, batch_size=1, seq_len=109, image_tokens=16,
        num_generations=2, completion_len=16, steps_per_generation=1),
}
"""The CPU runs of ``tests/test_real_architecture.py`` (bf16 weights, LoRA r=16, one process):
the part of the model they exercise (weights + LoRA states + activations + logits)."""


def cpu_check(jobs: dict[str, Job] | None = None, name: str = "qwen2_5_vl_3b") -> str:
    """Predicted host memory (GB, no GPU overhead) of the CPU runs, for comparing with their peak RSS.

    Args:
        jobs: the runs (default :data:`CPU_RUN_JOBS`).
        name: a key of :data:`REFERENCE_CONFIGS`.
    """
    dims = ModelDims.from_config(REFERENCE_CONFIGS[name])
    lines = ["| run | weights | LoRA states | activations | logits | generation | predicted |", "|---|---|---|---|---|---|---|"]
    for label, job in (CPU_RUN_JOBS if jobs is None else jobs).items():
        e = estimate(dims, job)
        peak = e.trainer_peak - e.overhead
        lora = e.states.total - e.states.weights
        lines.append(f"| {label} | {e.states.weights / 1e9:.2f} | {lora / 1e9:.2f} | {e.activations / 1e9:.2f} | "
                     f"{e.logits / 1e9:.2f} | {e.generation / 1e9:.2f} | {peak / 1e9:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hoi_r1.memory_model``: print the memory table of docs/training.md
    (``--cpu-check``: the prediction for the CPU runs of the real 3B, in GB)."""
    parser = argparse.ArgumentParser(prog="python -m hoi_r1.memory_model", description=main.__doc__)
    parser.add_argument("--models", nargs="+", default=["qwen2_5_vl_3b", "qwen2_5_vl_7b"], choices=sorted(REFERENCE_CONFIGS))
    parser.add_argument("--cpu-check", action="store_true", help="print the CPU-run prediction instead")
    args = parser.parse_args(argv)
    print(cpu_check() if args.cpu_check else table(args.models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
