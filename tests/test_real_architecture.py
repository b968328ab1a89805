"""The real Qwen2.5-VL-3B architecture through the real commands, on CPU (docs/training.md, "The
real 3B on CPU").

Fast (always run): the published configurations build (on the meta device: no memory) into
modules whose parameter counts equal :mod:`hoi_r1.model_dims`', and the local processor's
special tokens sit at the published ids.

Slow (opt-in, ``make test-slow`` or ``pytest -m slow tests/test_real_architecture.py -s``): a
random-weight bf16 Qwen2.5-VL-3B is saved (``python -m hoi_r1.reference_models``, 7.5 GB in a
temporary folder, deleted at the end), then, each as its own ``hoi-r1`` process with the shipped
``configs/hico_sft_qwen2_5_vl_3b.yaml`` (+ ``hico_grpo_qwen2_5_vl_3b.yaml``) and command-line
overrides (CPU, one device, LoRA r=16, 112-pixel synthetic images: 16 image tokens, short
prompts): one SFT optimizer step that writes a checkpoint, one GRPO step with G = 2 and
16-token completions from that checkpoint, one validation batch. Peak RSS (``ru_maxrss``), peak anonymous memory
(``/proc/<pid>/status`` sampled), wall times and step times are printed and written to
``real_3b_cpu.json`` in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

from hoi_r1.model_dims import ModelDims, merger_parameters, parameter_count, trainable_parameters
from hoi_r1.models import ModelSettings, apply_freezing
from hoi_r1.reference_models import REFERENCE_CONFIGS, build_reference_model, reference_config, reference_processor

REPO = Path(__file__).resolve().parents[1]
GB = 1e9


# ===================================================================== fast
@pytest.mark.parametrize("name", sorted(REFERENCE_CONFIGS))
def test_parameter_counts_equal_the_built_model(name):
    model = build_reference_model(name, device="meta")
    dims = ModelDims.from_config(REFERENCE_CONFIGS[name])
    assert sum(p.numel() for p in model.parameters()) == parameter_count(dims)
    assert sum(p.numel() for p in model.model.visual.merger.parameters()) == merger_parameters(dims.vision)
    apply_freezing(model, ModelSettings(freeze_vision=True))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable_parameters(dims)


def test_reference_configs_hold_the_published_values():
    c3, c7 = reference_config("qwen2_5_vl_3b"), reference_config("qwen2_5_vl_7b")
    t, v = c3.text_config, c3.vision_config
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (
        2048, 11008, 36, 16, 2)
    assert (t.vocab_size, t.rms_norm_eps, t.max_position_embeddings, c3.tie_word_embeddings) == (151936, 1e-6, 128000, True)
    assert t.rope_parameters["rope_theta"] == 1e6 and t.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.out_hidden_size) == (32, 1280, 3420, 16, 2048)
    assert (v.patch_size, v.spatial_merge_size, v.temporal_patch_size, v.window_size, v.tokens_per_second) == (14, 2, 2, 112, 2)
    assert list(v.fullatt_block_indexes) == [7, 15, 23, 31] and v.hidden_act == "silu"
    assert (c3.image_token_id, c3.video_token_id, c3.vision_start_token_id, c3.vision_end_token_id) == (151655, 151656, 151652, 151653)
    assert (c7.text_config.hidden_size, c7.text_config.vocab_size, c7.vision_config.out_hidden_size, c7.tie_word_embeddings) == (
        3584, 152064, 3584, False)
    with pytest.raises(ValueError, match="unknown reference model"):
        reference_config("qwen2_5_vl_72b")


def test_reference_processor_uses_the_published_token_ids():
    from hoi_r1.tiny import TinyModelSize, build_tiny_processor

    tiny = build_tiny_processor(["person ball [1, 2] <think>x</think>"], TinyModelSize(vocab_size=300))
    tok = reference_processor(processor=tiny).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>",
                                                      "<|video_pad|>", "<tool_call>")}
    assert ids == {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<|vision_start|>": 151652, "<|image_pad|>": 151655,
                   "<|video_pad|>": 151656, "<tool_call>": 151657}
    assert tok.pad_token_id == 151643 and len(tok) < 151936
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>person ball [1, 2]<|im_end|>"
    assert tok.decode(tok(text).input_ids) == tiny.tokenizer.decode(tiny.tokenizer(text).input_ids) == text


# ===================================================================== slow: measuring the hoi-r1 processes
# (they load helpers.runs.StepTimes and helpers.runs.StreamingCheckpointIO by class path)
@dataclass
class Measured:
    """One process: exit status, wall seconds, peak RSS (GB, ``ru_maxrss``), peak anonymous
    memory (GB, ``RssAnon`` sampled every 0.5 s) and its batch times (seconds)."""

    rc: int
    wall_s: float
    peak_rss_gb: float
    peak_anon_gb: float
    train_s: list
    val_s: list


def run_measured(cmd: list[str], log: Path, times: Path | None = None) -> Measured:
    """Run ``cmd`` (output to ``log``) and measure its memory and time."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    peak_anon = [0.0]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            peak_anon[0] = max(peak_anon[0], int(line.split()[1]) * 1024 / GB)
                except (FileNotFoundError, ProcessLookupError):
                    pass
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    recorded = json.loads(times.read_text()) if times is not None and times.exists() else {"train": [], "val": []}
    return Measured(proc.returncode, round(wall, 1), round(usage.ru_maxrss * 1024 / GB, 2), round(peak_anon[0], 2),
                    [round(t, 1) for t in recorded["train"]], [round(t, 1) for t in recorded["val"]])


def hoi_r1_command() -> list[str]:
    script = Path(sys.executable).with_name("hoi-r1")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hoi_r1.cli"]


def common_overrides(model_dir: Path, world: Path, runs: Path) -> list[str]:
    """CPU, one device, bf16 weights, LoRA, tiny synthetic data, short prompts and generations."""
    data = []
    for split in ("train", "val", "test"):
        data += [f"--data.{split}.annotations", str(world / f"{split}.json"), f"--data.{split}.images", str(world)]
    prompt = []
    for key in ("list_objects", "list_verbs", "thinking_guidance", "show_example", "describe_answer"):
        prompt += [f"--data.prompt.{key}", "false"]
    return [
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
        # bf16-true stops at the batch (Lightning refuses the frozen HOISample dataclasses in it):
        # bf16 weights + bf16 autocast instead.
        "--trainer.precision", "bf16-mixed", "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.max_steps", "1", "--trainer.accumulate_grad_batches", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--model.init_args.model.name_or_path", str(model_dir), "--model.init_args.model.dtype", "bfloat16",
        "--model.init_args.model.attn_implementation", "sdpa",
        "--model.init_args.model.lora", json.dumps({"r": 16, "alpha": 32}),
        "--model.init_args.generation.max_new_tokens", "16", "--model.init_args.log_examples", "1",
        *data, "--data.val.limit", "1", "--data.min_pixels", "3136", "--data.max_pixels", "12544",
        "--data.max_length", "512", "--data.batch_size", "1", "--data.eval_batch_size", "1",
        "--data.num_workers", "0", "--data.pin_memory", "false", "--data.persistent_workers", "false", *prompt,
    ]


def callbacks(times: Path, checkpoints: Path | None = None) -> list[str]:
    items = [{"class_path": "helpers.runs.StepTimes", "init_args": {"path": str(times)}}]
    if checkpoints is not None:
        items.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": str(checkpoints), "save_last": True, "save_top_k": 0, "every_n_train_steps": 1}})
    return ["--trainer.callbacks", json.dumps(items)]


# ===================================================================== slow: the run
@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_real_3b_sft_grpo_and_validation_on_cpu(tmp_path):
    free_disk = shutil.disk_usage(tmp_path).free / GB
    available = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemAvailable")).split()[1]) * 1024 / GB
    if free_disk < 18 or available < 12:
        pytest.skip(f"needs 18 GB of disk and 12 GB of memory available; found {free_disk:.0f} GB, {available:.0f} GB")
    model_dir, world, runs, ckpts = tmp_path / "qwen2_5_vl_3b", tmp_path / "world", tmp_path / "runs", tmp_path / "ckpt"
    hoi_r1, report = hoi_r1_command(), {}
    try:
        report["build"] = run_measured([sys.executable, "-m", "hoi_r1.reference_models", "--out", str(model_dir)],
                                       tmp_path / "build.log")
        assert report["build"].rc == 0, (tmp_path / "build.log").read_text()[-3000:]
        synth = subprocess.run([*hoi_r1, "synth", "--out", str(world), "--num-train", "4", "--num-val", "2", "--num-test", "2",
                                "--image-size", "112"], cwd=REPO, capture_output=True, text=True)
        assert synth.returncode == 0, synth.stderr[-3000:]
        base = common_overrides(model_dir, world, runs)

        sft_times = tmp_path / "sft_times.json"
        report["sft"] = run_measured(
            [*hoi_r1, "fit", "--config", "configs/hico_sft_qwen2_5_vl_3b.yaml", *base, "--trainer.limit_val_batches", "0",
             *callbacks(sft_times, ckpts), "--trainer.plugins", json.dumps({"class_path": "helpers.runs.StreamingCheckpointIO"})],
            tmp_path / "sft.log", sft_times)
        assert report["sft"].rc == 0, (tmp_path / "sft.log").read_text()[-3000:]
        assert len(report["sft"].train_s) == 1
        # What the project's checkpoint holds: every weight (the frozen base too) plus the adapters.
        ckpt = torch.load(ckpts / "last.ckpt", mmap=True, weights_only=True, map_location="cpu")
        weights = ckpt["state_dict"]
        assert any("lora_A" in k for k in weights) and any("visual.blocks.0" in k for k in weights)
        report["sft_checkpoint_gb"] = round((ckpts / "last.ckpt").stat().st_size / GB, 2)
        del ckpt, weights

        grpo_times = tmp_path / "grpo_times.json"
        report["grpo"] = run_measured(
            [*hoi_r1, "fit", "--config", "configs/hico_sft_qwen2_5_vl_3b.yaml", "--config", "configs/hico_grpo_qwen2_5_vl_3b.yaml",
             *base, "--trainer.limit_val_batches", "0", "--trainer.enable_checkpointing", "false", *callbacks(grpo_times),
             "--model.init_args.init_from_checkpoint", str(ckpts / "last.ckpt"), "--model.init_args.engine", "hf",
             "--model.init_args.rollout.num_generations", "2", "--model.init_args.rollout.max_completion_length", "16",
             "--model.init_args.loss.steps_per_generation", "1"],
            tmp_path / "grpo.log", grpo_times)
        assert report["grpo"].rc == 0, (tmp_path / "grpo.log").read_text()[-3000:]
        assert len(report["grpo"].train_s) == 1

        val_times = tmp_path / "val_times.json"
        report["validate"] = run_measured(
            [*hoi_r1, "validate", "--config", "configs/hico_sft_qwen2_5_vl_3b.yaml", *base,
             "--trainer.limit_val_batches", "1", *callbacks(val_times)],
            tmp_path / "validate.log", val_times)
        assert report["validate"].rc == 0, (tmp_path / "validate.log").read_text()[-3000:]
        assert len(report["validate"].val_s) == 1
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(ckpts, ignore_errors=True)
        summary = {k: asdict(v) if isinstance(v, Measured) else v for k, v in report.items()}
        (tmp_path / "real_3b_cpu.json").write_text(json.dumps(summary, indent=1))
        print("\nreal Qwen2.5-VL-3B on CPU:", json.dumps(summary, indent=1))
