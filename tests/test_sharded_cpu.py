"""Sharded training on CPU with 2 processes (gloo), as far as Lightning and torch allow it.

* FSDP2 (``hoi_r1.strategies.LayerShardStrategy``, Lightning's ``ModelParallelStrategy``) runs:
  SFT and GRPO with the ``hf`` engine train with finite losses, the gathered weights agree on
  both ranks after the steps (gathered the way a weight push gathers them), GRPO's generation
  keeps both ranks stepping (``synced_gpus``) when they stop at different lengths, and
  ``--ckpt_path last`` resumes from the sharded checkpoint folder: SFT to exactly the weights of
  an uninterrupted run; GRPO resumes, but not exactly (an expected failure: a checkpoint keeps
  rank 0's sampling stream only, which every rank then continues).
* FSDP1 (Lightning's ``FSDPStrategy``, ``LayerWrapFSDPStrategy``) is refused on CPU: by Lightning
  for ``FSDPStrategy`` itself, by torch for the subclass. Outside Lightning, torch's FSDP1 runs on
  CPU when given ``device_id=cpu``: there the ``hf`` engine's summoning of the root unit's
  parameters (``fsdp_root``) and ``synced_gpus`` are exercised, and shown to be needed.

The runs load :class:`helpers.runs.RecordShardedRun` and :class:`helpers.grpo.RankLengthGRPO` by
class path, and the FSDP1 processes run :func:`helpers.fsdp1.fsdp1_worker` (``tests`` is on the
subprocesses' PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.grpo import EXTRA_TOKENS_PER_RANK

ROOT = Path(__file__).parents[1]
SFT_CONFIGS = (ROOT / "configs" / "demo_sft.yaml",)
GRPO_CONFIGS = (ROOT / "configs" / "demo_sft.yaml", ROOT / "configs" / "demo_grpo.yaml")
SHARDED = {"class_path": "hoi_r1.strategies.LayerShardStrategy"}
FSDP1_REFUSED_BY_LIGHTNING = (
    "The strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`. Please set "
    "`accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP."
)
FSDP1_REFUSED_BY_TORCH = "FSDP needs a non-CPU accelerator device, but no accelerator device is detected."


# ---------------------------------------------------------------- running the CLI
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1"}


def _fit(configs, out: Path, model_dir, world, *extra: str, strategy=SHARDED, model_class: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    overlay = {"trainer": {"strategy": strategy, "devices": 2, "callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(out / "ckpt"), "save_last": True, "every_n_train_steps": 2}},
        {"class_path": "helpers.runs.RecordShardedRun", "init_args": {"path": str(out)}},
    ]}}
    if model_class:
        overlay["model"] = {"class_path": model_class}
    (out / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    args = [
        sys.executable, "-m", "hoi_r1.cli", "fit",
        *[a for c in (*configs, out / "overlay.yaml") for a in ("--config", str(c))],
        "--model.init_args.model.name_or_path", str(model_dir),
        "--model.init_args.generation.max_new_tokens", "8",
        "--model.init_args.log_examples", "0",
        "--data.train.annotations", str(world / "train.json"),
        "--data.val.annotations", str(world / "test.json"),
        "--data.val.limit", "2",
        "--data.test.annotations", str(world / "test.json"),
        "--data.prompt.thinking_guidance", "false",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(out / "runs"),
        *extra,
    ]
    proc = subprocess.run(args, cwd=out, env=_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _sft(out: Path, model_dir, world, steps: int, *extra: str):
    return _fit(SFT_CONFIGS, out, model_dir, world, "--data.batch_size", "4", "--trainer.max_steps", str(steps),
                "--model.init_args.scheduler.init_args.total_steps", "4", *extra)


def _grpo(out: Path, model_dir, world, steps: int, *extra: str):
    return _fit(GRPO_CONFIGS, out, model_dir, world, "--model.init_args.init_from_checkpoint", "null",
                "--model.init_args.rollout.num_generations", "2",
                "--model.init_args.rollout.max_completion_length", "8",
                "--model.init_args.optimizer.init_args.lr", "0.01",
                "--model.init_args.scheduler.init_args.max_lr", "0.01",
                "--model.init_args.scheduler.init_args.total_steps", "4",
                "--data.batch_size", "2", "--trainer.max_steps", str(steps), *extra,
                model_class="helpers.grpo.RankLengthGRPO")


def _weights(out: Path, which: str, rank: int) -> dict:
    return torch.load(out / f"weights_{which}.rank{rank}.pt", weights_only=True)


def _assert_sharded_run(out: Path, steps: int) -> None:
    """Finite losses on both ranks, sharded parameters, gathered weights equal on both ranks and
    changed by training, a sharded checkpoint folder (one shard file per rank)."""
    for rank in (0, 1):
        losses = [float(x) for x in (out / f"loss.rank{rank}").read_text().split()]
        assert losses and all(torch.isfinite(torch.tensor(losses))), losses
        start = json.loads((out / f"start.rank{rank}.json").read_text())
        assert start["dtensor_parameters"] == start["parameters"] > 0, start
    first, second = _weights(out, "end", 0), _weights(out, "end", 1)
    assert first.keys() == second.keys() and first
    for k in first:
        assert torch.equal(first[k], second[k]), k
    initial = _weights(out, "start", 0)
    assert initial.keys() == first.keys()
    assert any(not torch.equal(initial[k], first[k]) for k in first)  # the steps changed the weights
    for k in initial:
        assert initial[k].shape == first[k].shape, k  # full tensors, not shards
    last = out / "ckpt" / "last.ckpt"
    assert last.is_dir() and sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert torch.load(last / "meta.pt", weights_only=True)["global_step"] == steps


def _sampled(out: Path, rank: int) -> list[dict]:
    return json.loads((out / f"sampled.rank{rank}.json").read_text())


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- what is refused
def test_lightning_refuses_fsdp1_on_cpu():
    import lightning as L
    from lightning.pytorch.strategies import FSDPStrategy

    with pytest.raises(ValueError) as refused:
        L.Trainer(accelerator="cpu", devices=2, strategy=FSDPStrategy(process_group_backend="gloo"))
    assert str(refused.value) == FSDP1_REFUSED_BY_LIGHTNING
    with pytest.raises(ValueError) as refused:
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp")
    assert str(refused.value) == FSDP1_REFUSED_BY_LIGHTNING


@pytest.mark.slow
def test_torch_refuses_the_layer_wrap_fsdp1_strategy_on_cpu(tiny_model_dir, synthetic_world, tmp_path):
    # Lightning's check names FSDPStrategy itself (type(...) is FSDPStrategy): the subclass gets
    # through it, starts both processes, and FSDP1's wrapping (device_id=None on CPU) refuses.
    strategy = {"class_path": "hoi_r1.strategies.LayerWrapFSDPStrategy"}
    proc = _fit(
        SFT_CONFIGS, tmp_path, tiny_model_dir, synthetic_world, "--data.batch_size", "4", "--trainer.max_steps", "1",
        strategy=strategy, check=False)
    assert proc.returncode != 0
    assert f"RuntimeError: {FSDP1_REFUSED_BY_TORCH}" in proc.stderr, proc.stderr[-4000:]
    assert "distributed_backend=gloo" in proc.stderr  # both processes were up: the refusal is FSDP1's wrapping
    assert not (tmp_path / "loss.rank0").exists()


# ---------------------------------------------------------------- FSDP1 outside Lightning
def _run_fsdp1(tmp_path: Path, model_dir, mode: str) -> list[dict]:
    init = tmp_path / f"{mode}.init"
    code = f"from helpers.fsdp1 import fsdp1_worker; fsdp1_worker(RANK, {str(init)!r}, {str(model_dir)!r}, {str(tmp_path)!r}, {mode!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code.replace("RANK", str(r))], env=_env(), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for proc in procs:
        try:
            proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return [json.loads(p.read_text()) if (p := tmp_path / f"{mode}.rank{r}.json").exists() else {"error": "no result"}
            for r in (0, 1)]


@pytest.mark.slow
def test_fsdp1_on_cpu_outside_lightning_summoned_root_and_synced_generation(tiny_model_dir, tmp_path):
    first, second = _run_fsdp1(tmp_path, tiny_model_dir, "engine")
    assert "error" not in first and "error" not in second, (first, second)
    assert first["rows"] == second["rows"] == 4
    assert first["length"] <= 4 < second["length"] <= 4 + EXTRA_TOKENS_PER_RANK  # rank 0 stepped on, synced
    for result in (first, second):  # FSDP1 parameters are flat shards outside a forward: a push refuses them
        assert "FSDP1" in result.get("weight_push", ""), result


@pytest.mark.slow
def test_fsdp1_generation_needs_the_summoned_root_and_synced_gpus(tiny_model_dir, tmp_path):
    # the root unit's flat shards reach the vision tower's convolution on every rank
    results = _run_fsdp1(tmp_path, tiny_model_dir, "no_summon")
    assert all("error" in r for r in results), results
    # rank 0 stops after its 4 tokens; rank 1's next all-gather has no partner (it fails when rank 0 leaves)
    first, second = _run_fsdp1(tmp_path, tiny_model_dir, "unsynced")
    assert first.get("length", 99) <= 4 and "error" in second, (first, second)


# ---------------------------------------------------------------- FSDP2 through Lightning
def test_sft_fsdp2_two_processes(tiny_model_dir, synthetic_world, tmp_path):
    # one validation batch at the end: generation under FSDP2 gathers the root unit (the vision tower)
    _sft(tmp_path, tiny_model_dir, synthetic_world, 2, "--trainer.limit_val_batches", "1",
         "--trainer.val_check_interval", "2")
    _assert_sharded_run(tmp_path, 2)
    for rank in (0, 1):
        val = json.loads((tmp_path / f"val.rank{rank}.json").read_text())
        assert "val/parse_rate" in val and "val/mAP_full" in val, val


def test_grpo_fsdp2_hf_engine_ranks_stop_at_different_lengths(tiny_model_dir, synthetic_world, tmp_path):
    _grpo(tmp_path, tiny_model_dir, synthetic_world, 2)
    _assert_sharded_run(tmp_path, 2)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"start.rank{rank}.json").read_text())["synced_gpus"] is True
    short = [g["length"] for g in _sampled(tmp_path, 0)]
    long = [g["length"] for g in _sampled(tmp_path, 1)]
    assert len(short) == len(long) == 2  # one generation batch per optimizer step (accumulate 2)
    # rank 1 generated past rank 0's limit: rank 0 kept stepping (synced_gpus) until rank 1 was done
    assert max(short) <= 8 < max(long) <= 8 + EXTRA_TOKENS_PER_RANK


@pytest.mark.slow
def test_sft_fsdp2_resume_equals_uninterrupted_run(tiny_model_dir, synthetic_world, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _sft(straight, tiny_model_dir, synthetic_world, 4)
    _sft(resumed, tiny_model_dir, synthetic_world, 2)
    _sft(resumed, tiny_model_dir, synthetic_world, 4, "--ckpt_path", "last")
    assert json.loads((resumed / "start.rank1.json").read_text())["global_step"] == 2  # resumed, not restarted
    _assert_sharded_run(resumed, 4)
    _assert_same_weights(_weights(straight, "end", 0), _weights(resumed, "end", 0))


@pytest.fixture(scope="module")
def grpo_resumed(tiny_model_dir, synthetic_world, tmp_path_factory):
    """A 4-step sharded GRPO run, and the same run stopped after step 2 and resumed with
    ``--ckpt_path last`` (one optimizer step per generation batch: the resume starts a new one)."""
    tmp = tmp_path_factory.mktemp("grpo_resume")
    straight, resumed = tmp / "straight", tmp / "resumed"
    _grpo(straight, tiny_model_dir, synthetic_world, 4)
    _grpo(resumed, tiny_model_dir, synthetic_world, 2)
    _grpo(resumed, tiny_model_dir, synthetic_world, 4, "--ckpt_path", "last")
    return straight, resumed


@pytest.mark.slow
def test_grpo_fsdp2_resumes_from_the_sharded_checkpoint(grpo_resumed):
    straight, resumed = grpo_resumed
    for rank in (0, 1):
        assert json.loads((resumed / f"start.rank{rank}.json").read_text())["global_step"] == 2
        assert [g["step"] for g in _sampled(resumed, rank)] == [2, 3]  # two more generation batches
    _assert_sharded_run(resumed, 4)
    # rank 0's first generation after the resume samples what the uninterrupted run sampled there
    assert _sampled(resumed, 0)[0]["ids"] == {g["step"]: g["ids"] for g in _sampled(straight, 0)}[2]


@pytest.mark.slow
def test_grpo_fsdp2_resume_equals_uninterrupted_run(grpo_resumed):
    straight, resumed = grpo_resumed
    streams = [json.loads((resumed / f"start.rank{r}.json").read_text())["sampling_stream"] for r in (0, 1)]
    assert streams[0] != streams[1], streams  # each rank resumes its own stream
    assert _sampled(resumed, 1)[0]["ids"] == {g["step"]: g["ids"] for g in _sampled(straight, 1)}[2]
    _assert_same_weights(_weights(straight, "end", 0), _weights(resumed, "end", 0))
