"""The memory model's arithmetic (pure; no model is built here, see test_real_architecture.py for
the parameter counts against the real modules)."""

import pytest

from hoi_r1.memory_model import CPU_RUN_JOBS, GPUS, SHIPPED_JOBS, GiB, Job, estimate, main, table
from hoi_r1.memory_terms import (
    activation_bytes,
    decoder_layer_activation_bytes,
    kv_cache_bytes,
    logits_bytes,
    model_state_bytes,
)
from hoi_r1.model_dims import (
    ModelDims,
    TextDims,
    lora_parameters,
    parameter_count,
    text_parameters,
    trainable_parameters,
)
from hoi_r1.reference_models import REFERENCE_CONFIGS

DIMS_3B = ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_3b"])
DIMS_7B = ModelDims.from_config(REFERENCE_CONFIGS["qwen2_5_vl_7b"])


def test_published_parameter_counts():
    # Equal to sum(p.numel()) of the built modules (tests/test_real_architecture.py checks it).
    assert parameter_count(DIMS_3B) == 3_754_622_976
    assert parameter_count(DIMS_7B) == 8_292_166_656


def test_untied_head_counts_twice():
    tied = TextDims(vocab=100, hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, tied=True)
    untied = TextDims(vocab=100, hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, tied=False)
    assert text_parameters(untied) - text_parameters(tied) == 100 * 8


def test_lora_counts_rank_times_in_plus_out():
    t = DIMS_3B.text  # q: 2048→2048, k/v: 2048→256, o: 2048→2048, gate/up: 2048→11008, down: 11008→2048
    per_layer = 16 * (4096 + 2304 + 2304 + 4096 + 3 * 13056)
    assert lora_parameters(t, r=16) == 36 * per_layer == 29_933_568
    assert lora_parameters(t, r=32) == 2 * lora_parameters(t, r=16)
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        lora_parameters(t, targets=("qkv",))


def test_freezing_the_vision_keeps_the_merger_trainable():
    frozen = trainable_parameters(DIMS_3B, freeze_vision=True)
    assert parameter_count(DIMS_3B) - frozen == 668_684_288 - 36_708_608  # vision tower minus merger
    assert trainable_parameters(DIMS_3B, lora_r=16) == lora_parameters(DIMS_3B.text, 16)


def test_zero_paper_bytes_per_parameter():
    """Mixed-precision Adam: 2 + 2 + 12 bytes per parameter (ZeRO paper), sharded by stage."""
    P = 1_000_000
    ddp = model_state_bytes(P, P, "float32", "bf16-mixed", "ddp")
    assert (ddp.weights, ddp.grads, ddp.optimizer) == (4 * P, 4 * P, 8 * P)  # 16 bytes, fp32 weights
    assert ddp.buckets == 4 * P and ddp.autocast_copies == 2 * P
    z2 = model_state_bytes(P, P, "float32", "bf16-mixed", "deepspeed_stage_2", world_size=8)
    assert (z2.weights, z2.grads, z2.optimizer) == (2 * P, 2 * P / 8, 12 * P / 8)
    z3 = model_state_bytes(P, P, "float32", "bf16-mixed", "deepspeed_stage_3", world_size=8)
    assert z3.weights == 2 * P / 8 + 2 * P  # the shard plus the live (gathered) parameters
    fsdp = model_state_bytes(P, P, "float32", "bf16-mixed", "fsdp", world_size=8, largest_unit_params=10)
    assert fsdp.weights == 4 * P / 8 + 2 * 10 * 2 and fsdp.optimizer == 8 * P / 8
    frozen = model_state_bytes(P, 0, "bfloat16", "bf16-mixed", "ddp")
    assert frozen.total == 2 * P  # LoRA-like: only the frozen bf16 weights
    with pytest.raises(ValueError, match="unknown strategy"):
        model_state_bytes(P, P, strategy="horovod")


def test_activations_scale_with_tokens_and_checkpointing_saves_most():
    one = activation_bytes(DIMS_3B, tokens=1, checkpointing=False)
    assert one == 36 * decoder_layer_activation_bytes(DIMS_3B.text)
    assert activation_bytes(DIMS_3B, tokens=1000, checkpointing=False) == 1000 * one
    kept = activation_bytes(DIMS_3B, tokens=1, checkpointing=True, residual_bytes=4)
    assert kept == 36 * 4 * 2048 + 2 * decoder_layer_activation_bytes(DIMS_3B.text)
    assert kept < one / 8
    assert activation_bytes(DIMS_3B, 1, vision_patches=4, train_vision=False) == kept
    assert activation_bytes(DIMS_3B, 1, vision_patches=4, train_vision=True) > kept


def test_logits_and_kv_cache():
    assert logits_bytes(2, 3, 10, "sft") == 14 * 60
    assert logits_bytes(2, 3, 10, "grpo") == 8 * 60 + 6 * 10 * 8  # all 6 rows fit one chunk
    assert logits_bytes(2, 3, 10, "no_grad") == 2 * 60 + 6 * 10 * 8
    # 3B: 36 layers × 2 kv heads × 128 × (K, V) × bf16; 7B: 28 × 4 × 128 × 2 × 2.
    assert kv_cache_bytes(DIMS_3B.text, 1) == 36 * 2 * 128 * 2 * 2
    assert kv_cache_bytes(DIMS_7B.text, 10) == 10 * 28 * 4 * 128 * 2 * 2


def test_shipped_jobs_and_what_fits():
    h80, h141 = GPUS["80 GB (A100/H100)"], GPUS["141 GB (H200)"]
    sft = estimate(DIMS_3B, Job())
    assert sft.states.total / GiB == pytest.approx(66.3, abs=0.1)
    assert not sft.fits(h80) and sft.fits(h141)
    assert estimate(DIMS_3B, Job(strategy="fsdp")).fits(h80)
    assert estimate(DIMS_3B, Job(strategy="deepspeed_stage_2")).fits(h80)
    assert not estimate(DIMS_7B, Job()).fits(h141)
    vllm = estimate(DIMS_3B, SHIPPED_JOBS["GRPO full, DDP, vLLM 0.3 + sleep (`hico_grpo_qwen2_5_vl_3b_vllm.yaml`)"])
    awake = estimate(DIMS_3B, SHIPPED_JOBS["GRPO full, DDP, vLLM 0.3, no sleep"])
    assert vllm.vllm_fraction == 0.3 and vllm.fits(h141) and not vllm.fits(h80)
    assert awake.generation == 0  # vLLM's KV cache lives in its own share
    lora = estimate(DIMS_7B, Job(stage="grpo", lora_r=16, seq_len=2048))
    assert lora.fits(h80) and lora.generation > 0


def test_table_has_every_row_and_main_prints_it(capsys):
    text = table()
    assert text.count("\n") == 1 + 2 * len(SHIPPED_JOBS)
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == text
    assert main(["--cpu-check"]) == 0
    check = capsys.readouterr().out
    assert check.count("\n") == 2 + len(CPU_RUN_JOBS) and "| 7.51 |" in check  # 3.75 B bf16 weights
