"""Per-GPU memory of SFT and GRPO of Qwen2.5-VL: a model to plan GPU jobs with.

Pure arithmetic on the published model dimensions (:data:`hoi_r1.reference_models.REFERENCE_CONFIGS`)
and on a job's settings; nothing is allocated. ``python -m hoi_r1.memory_model`` prints the table
of ``docs/training.md`` ("Memory per GPU"). A job's peak (:func:`estimate`) adds up, per GPU and
in bytes, the parameters (:mod:`hoi_r1.model_dims`: every tensor of both towers, LoRA
adapters), the model states, activations, logits and KV cache (:mod:`hoi_r1.memory_terms`, each
with its sources), and:

* **vLLM colocated** — vLLM takes ``gpu_memory_utilization × GPU`` (weights, KV cache,
  activations; vLLM docs "Engine Arguments"); with sleep mode it frees that while training,
  otherwise the trainer has only the rest.
* **Overhead** — CUDA context, NCCL buffers and allocator fragmentation: a flat 2 GiB
  (:data:`OVERHEAD_GIB`, an assumption, not derived).

>>> from hoi_r1.model_dims import ModelDims
>>> e = estimate(ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"]), Job())
>>> round(e.states.total / GiB, 1), round(e.trainer_peak / GiB, 1), e.fits(GPUS["80 GB (A100/H100)"])  # docs table, row 1
(66.3, 81.1, False)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal, Sequence

from hoi_r1.memory_terms import (
    BYTES,
    Precision,
    StateBytes,
    Strategy,
    activation_bytes,
    kv_cache_bytes,
    logits_bytes,
    model_state_bytes,
    prefill_bytes,
)
from hoi_r1.model_dims import ModelDims, layer_parameters, parameter_count, trainable_parameters, vision_parameters
from hoi_r1.reference_models import REFERENCE_CONFIGS

GiB = 2**30
"""Bytes per GiB (the tables use GiB; "80 GB" GPUs hold 79.6 GiB usable, see :data:`GPUS`)."""

OVERHEAD_GIB = 2.0
"""CUDA context, NCCL buffers and allocator fragmentation per GPU (assumed, not derived)."""

GPUS: dict[str, float] = {"80 GB (A100/H100)": 80e9 / GiB, "141 GB (H200)": 141e9 / GiB}
"""GPU memory in GiB (vendor GB of 1e9 bytes)."""


# ===================================================================== jobs
@dataclass(frozen=True)
class Job:
    """One training job's settings that drive memory (defaults: ``hico_sft_qwen2_5_vl_3b.yaml``).

    Args:
        stage: ``sft`` or ``grpo``.
        strategy: see :func:`~hoi_r1.memory_terms.model_state_bytes`.
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
        states: model states (:func:`~hoi_r1.memory_terms.model_state_bytes`).
        activations: activations kept for backward (:func:`~hoi_r1.memory_terms.activation_bytes`).
        logits: logits and loss tensors (:func:`~hoi_r1.memory_terms.logits_bytes`).
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
    unit = max(layer_parameters(m.text), P - m.text.layers * layer_parameters(m.text) - vision_parameters(m.vision))
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
