"""A GRPO run SIGKILLed in the middle of a generation batch resumes with ``--ckpt_path last`` and
ends with exactly the weights of an uninterrupted run (CPU, deterministic): the training order,
the buffered completions (with their old log-probs), the sampling random stream, the optimizer
and the scheduler all come back."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).parents[1]
CONFIGS = (ROOT / "configs" / "demo_sft.yaml", ROOT / "configs" / "demo_grpo.yaml")
STEPS = 4


def _fit_args(model_dir, world, out: Path, *extra: str, callbacks: tuple = ()) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    saver = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(out / "ckpt"), "save_last": True, "every_n_train_steps": 1},
    }
    overlay = {
        "trainer": {"callbacks": [saver, *callbacks]},
        "model": {"class_path": "test_grpo_helpers.ToyRewardGRPO"},  # a reward a random model can earn
    }
    (out / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    configs = [arg for c in (*CONFIGS, out / "overlay.yaml") for arg in ("--config", str(c))]
    return [
        sys.executable, "-m", "hoi_r1.cli", "fit", *configs,
        "--model.init_args.model.name_or_path", str(model_dir),
        "--model.init_args.init_from_checkpoint", "null",
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.max_completion_length", "8",
        "--model.init_args.loss.num_iterations", "2",  # two optimizer steps per generation batch
        "--model.init_args.optimizer.init_args.lr", "0.01",
        "--model.init_args.scheduler.init_args.max_lr", "0.01",
        "--model.init_args.scheduler.init_args.total_steps", str(STEPS),
        "--model.init_args.generation.max_new_tokens", "8",
        "--model.init_args.log_examples", "0",
        "--data.train.annotations", str(world / "train.json"),
        "--data.val.annotations", str(world / "test.json"),
        "--data.val.limit", "2",
        "--data.test.annotations", str(world / "test.json"),
        "--data.batch_size", "2",
        "--data.prompt.thinking_guidance", "false",
        "--trainer.max_steps", str(STEPS),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(out / "runs"),
        *extra,
    ]


def _start(args, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}  # two runs share the cores; every run uses the same thread count
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen, expect_kill=False) -> None:
    _, stderr = proc.communicate(timeout=600)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    else:
        assert proc.returncode == 0, stderr[-3000:]


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def test_sigkill_mid_generation_batch_then_resume_equals_uninterrupted_run(tiny_model_dir, synthetic_world, tmp_path):
    # batch 2 x G 2 = 4 completions, 2 micro-batches (accumulate 2), 2 iterations: each generation
    # batch makes optimizer steps (1, 2) and (3, 4). The crash comes at the end of step 2, before its
    # checkpoint (Lightning runs checkpoint callbacks last), so the run resumes from step 1, half-way
    # through the first generation batch: step 2 must reuse the buffered completions (and their old
    # log-probs), and steps 3-4 must sample what the uninterrupted run sampled.
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    kill = {"class_path": "run_helpers.KillAtStep", "init_args": {"step": 2}}
    uninterrupted = _start(_fit_args(tiny_model_dir, synthetic_world, straight), tmp_path)  # both at once
    _wait(_start(_fit_args(tiny_model_dir, synthetic_world, crashed, callbacks=(kill,)), tmp_path), expect_kill=True)
    at_crash = _load(crashed / "ckpt" / "last.ckpt")
    assert at_crash["global_step"] == 1
    assert at_crash["grpo"]["buffer"] is not None and at_crash["grpo"]["buffer"]["old_logp"] is not None
    _wait(_start(_fit_args(tiny_model_dir, synthetic_world, crashed, "--ckpt_path", "last"), tmp_path))
    _wait(uninterrupted)

    a, b = _load(straight / "ckpt" / "last.ckpt"), _load(crashed / "ckpt" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    moved = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], at_crash["state_dict"][k])]
    assert moved  # steps 2-4 changed the weights: the comparison is not between untouched models
