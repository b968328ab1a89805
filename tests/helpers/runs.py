"""Helpers of the subprocess tests (``tests`` is on their PYTHONPATH): the Lightning callbacks
and plugins the ``hoi-r1`` processes load by class path (``helpers.runs.<Class>``), and the
launching of a small GRPO ``hoi-r1 fit`` (:func:`grpo_fit_args`, :func:`start_run`,
:func:`wait_run`)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

ROOT = Path(__file__).parents[2]
GRPO_CONFIGS = (ROOT / "configs" / "demo_sft.yaml", ROOT / "configs" / "demo_grpo.yaml")
GRPO_STEPS = 4


# ---------------------------------------------------------------- loaded by class path
class KillAtStep(Callback):
    """SIGKILL the training process when ``global_step`` reaches ``step`` (after that step's
    checkpoint callbacks ran): a crash with no chance to clean up or save."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordSamples(Callback):
    """Append each training batch's file names to ``<path>.rank<N>`` (which rank saw what)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            for sample in batch["samples"]:
                f.write(sample.file_name + "\n")


class RecordShardedRun(Callback):
    """Per rank, under ``path``: each step's loss (``loss.rank<N>``), what the run looked like at
    its start (``start.rank<N>.json``: sharded parameters? the rollout engine's ``synced_gpus``)
    and the full weights at the start and the end (``weights_{start,end}.rank<N>.pt``), gathered
    by :func:`hoi_r1.rollout.policy_weights.policy_weights` (a weight push's gather)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer, pl_module) -> None:
        from torch.distributed.tensor import DTensor

        rank = trainer.global_rank
        engine = getattr(pl_module, "engine", None)
        start = {
            "dtensor_parameters": sum(isinstance(p, DTensor) for p in pl_module.model.parameters()),
            "parameters": sum(1 for _ in pl_module.model.parameters()),
            "synced_gpus": getattr(engine, "synced_gpus", None),
            "global_step": trainer.global_step,
            "sampling_stream": _digest(getattr(pl_module, "sampling_stream", None)),
        }
        (self.path / f"start.rank{rank}.json").write_text(json.dumps(start))
        self._save_weights(pl_module, f"weights_start.rank{rank}.pt")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path / f"loss.rank{trainer.global_rank}", "a") as f:
            f.write(f"{float(outputs['loss'])}\n")

    def on_validation_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        (self.path / f"val.rank{trainer.global_rank}.json").write_text(json.dumps(metrics))

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_weights(pl_module, f"weights_end.rank{trainer.global_rank}.pt")
        sampled = getattr(pl_module, "sampled", None)
        if sampled is not None:
            (self.path / f"sampled.rank{trainer.global_rank}.json").write_text(json.dumps(sampled))

    def _save_weights(self, pl_module, name: str) -> None:
        from hoi_r1.rollout.policy_weights import policy_weights

        weights = {k: v.detach().clone() for k, v in policy_weights(pl_module.model)}
        torch.save(weights, self.path / name)


def _digest(stream) -> str | None:
    """A short fingerprint of a GRPO sampling stream's state (``None``: not used yet / no stream)."""
    if stream is None or stream.state is None:
        return None
    return hashlib.sha1(stream.state["cpu"].numpy().tobytes()).hexdigest()[:16]


class StreamingCheckpointIO(TorchCheckpointIO):
    """``torch.save`` straight to a temporary file, then rename: Lightning's default
    (``_atomic_save``) first serialises the whole checkpoint into an in-memory buffer, which for
    the 3B's 7.9 GB checkpoint doubles the process's memory (docs/training.md)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(checkpoint, partial)
        os.replace(partial, path)


class StepTimes(Callback):
    """Wall time of every training and validation batch, written as JSON to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times: dict[str, list[float]] = {"train": [], "val": []}
        self._start = 0.0

    def _begin(self, *args, **kwargs) -> None:
        self._start = time.perf_counter()

    def _end(self, kind: str) -> None:
        self.times[kind].append(time.perf_counter() - self._start)
        Path(self.path).write_text(json.dumps(self.times))

    on_train_batch_start = _begin
    on_validation_batch_start = _begin

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._end("train")

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self._end("val")


# ---------------------------------------------------------------- launching a GRPO fit
def grpo_fit_args(model_dir, world, out: Path, *extra: str, callbacks: tuple = ()) -> list[str]:
    """The command of a small CPU GRPO ``hoi-r1 fit``: configs/demo_sft.yaml + demo_grpo.yaml with
    :class:`helpers.grpo.ToyRewardGRPO`, batch 2 x G 2, 8-token completions, two optimizer steps per
    generation batch, :data:`GRPO_STEPS` steps and a checkpoint every step (``out/ckpt``);
    ``callbacks`` join the checkpointing one, ``extra`` arguments come last."""
    out.mkdir(parents=True, exist_ok=True)
    saver = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(out / "ckpt"), "save_last": True, "every_n_train_steps": 1},
    }
    overlay = {
        "trainer": {"callbacks": [saver, *callbacks]},
        "model": {"class_path": "helpers.grpo.ToyRewardGRPO"},  # a reward a random model can earn
    }
    (out / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    configs = [arg for c in (*GRPO_CONFIGS, out / "overlay.yaml") for arg in ("--config", str(c))]
    return [
        sys.executable, "-m", "hoi_r1.cli", "fit", *configs,
        "--model.init_args.model.name_or_path", str(model_dir),
        "--model.init_args.init_from_checkpoint", "null",
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.max_completion_length", "8",
        "--model.init_args.loss.num_iterations", "2",  # two optimizer steps per generation batch
        "--model.init_args.optimizer.init_args.lr", "0.01",
        "--model.init_args.scheduler.init_args.max_lr", "0.01",
        "--model.init_args.scheduler.init_args.total_steps", str(GRPO_STEPS),
        "--model.init_args.generation.max_new_tokens", "8",
        "--model.init_args.log_examples", "0",
        "--data.train.annotations", str(world / "train.json"),
        "--data.val.annotations", str(world / "test.json"),
        "--data.val.limit", "2",
        "--data.test.annotations", str(world / "test.json"),
        "--data.batch_size", "2",
        "--data.prompt.thinking_guidance", "false",
        "--trainer.max_steps", str(GRPO_STEPS),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(out / "runs"),
        *extra,
    ]


def start_run(args, cwd) -> subprocess.Popen:
    """Start ``args`` in ``cwd`` with ``tests`` on the PYTHONPATH and one thread (stderr kept)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}  # two runs share the cores; every run uses the same thread count
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_run(proc: subprocess.Popen, expect_kill=False) -> None:
    """Wait for a run: it exited 0 (SIGKILLed with ``expect_kill``), else the end of its stderr."""
    _, stderr = proc.communicate(timeout=600)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    else:
        assert proc.returncode == 0, stderr[-3000:]
