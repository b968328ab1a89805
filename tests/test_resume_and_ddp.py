"""Real processes: a SIGKILLed run resumes bit for bit, and DDP runs on CPU with 2 processes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "demo_sft.yaml"


def _fit_args(model_dir, world, out: Path, steps: int, *extra: str, callbacks: tuple = ()) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    saver = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(out / "ckpt"), "save_last": True, "every_n_train_steps": 2},
    }
    (out / "callbacks.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [saver, *callbacks]}}))
    return [
        sys.executable, "-m", "hoi_r1.cli", "fit", "--config", str(CONFIG), "--config", str(out / "callbacks.yaml"),
        "--model.init_args.model.name_or_path", str(model_dir),
        "--model.init_args.generation.max_new_tokens", "8",
        "--model.init_args.log_examples", "0",
        "--model.init_args.scheduler.init_args.total_steps", str(steps),
        "--data.train.annotations", str(world / "train.json"),
        "--data.val.annotations", str(world / "test.json"),
        "--data.val.limit", "2",
        "--data.test.annotations", str(world / "test.json"),
        "--data.batch_size", "4",
        "--data.prompt.thinking_guidance", "false",
        "--trainer.max_steps", str(steps),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(out / "runs"),
        *extra,
    ]


def _run(args, cwd, expect_kill=False):
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",  # two processes on two cores: more threads only wait for each other
    }
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tiny_model_dir, synthetic_world, tmp_path):
    # 24 training images, batch 4: 6 steps per epoch; the crash at step 3 is mid-epoch and the
    # newest checkpoint (step 2) is mid-epoch too.
    straight = tmp_path / "straight"
    _run(_fit_args(tiny_model_dir, synthetic_world, straight, 6), tmp_path)
    crashed = tmp_path / "crashed"
    kill = {"class_path": "helpers.runs.KillAtStep", "init_args": {"step": 3}}
    _run(_fit_args(tiny_model_dir, synthetic_world, crashed, 6, callbacks=(kill,)), tmp_path, expect_kill=True)
    assert _checkpoint_step(crashed / "ckpt" / "last.ckpt") == 2
    _run(_fit_args(tiny_model_dir, synthetic_world, crashed, 6, "--ckpt_path", "last"), tmp_path)
    a, b = _weights(straight / "ckpt" / "last.ckpt"), _weights(crashed / "ckpt" / "last.ckpt")
    assert _checkpoint_step(crashed / "ckpt" / "last.ckpt") == 6
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _checkpoint_step(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def test_ddp_two_processes_on_cpu(tiny_model_dir, synthetic_world, tmp_path):
    record = tmp_path / "seen"
    recorder = {"class_path": "helpers.runs.RecordSamples", "init_args": {"path": str(record)}}
    args = _fit_args(tiny_model_dir, synthetic_world, tmp_path / "ddp", 2, "--trainer.strategy", "ddp",
                     "--trainer.devices", "2", callbacks=(recorder,))
    _run(args, tmp_path)
    rank0 = Path(f"{record}.rank0").read_text().split()
    rank1 = Path(f"{record}.rank1").read_text().split()
    assert len(rank0) == len(rank1) == 8  # 2 steps x batch 4 on each rank
    assert not set(rank0) & set(rank1)  # each rank owns different samples
    assert _checkpoint_step(tmp_path / "ddp" / "ckpt" / "last.ckpt") == 2
