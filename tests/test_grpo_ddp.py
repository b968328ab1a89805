"""GRPO under DDP with 2 CPU processes (gloo): each rank owns its prompts (whole groups), serves
each prompt batch once per micro-batch, and the rewards of both ranks feed the advantages."""

import sys
from pathlib import Path

import torch
import yaml
from helpers.runs import GRPO_CONFIGS, start_run, wait_run


def test_ddp_two_processes_on_cpu(tiny_model_dir, synthetic_world, tmp_path):
    record = tmp_path / "seen"
    overlay = {
        "trainer": {"callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}},
            {"class_path": "helpers.runs.RecordSamples", "init_args": {"path": str(record)}},
        ]},
        "model": {"class_path": "helpers.grpo.ToyRewardGRPO"},
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    configs = [arg for c in (*GRPO_CONFIGS, tmp_path / "overlay.yaml") for arg in ("--config", str(c))]
    args = [
        sys.executable, "-m", "hoi_r1.cli", "fit", *configs,
        "--model.init_args.model.name_or_path", str(tiny_model_dir),
        "--model.init_args.init_from_checkpoint", "null",
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.max_completion_length", "8",
        "--model.init_args.loss.scale_rewards", "batch",  # the std of both ranks' rewards
        "--model.init_args.log_examples", "0",
        "--data.train.annotations", str(synthetic_world / "train.json"),
        "--data.val.annotations", str(synthetic_world / "test.json"),
        "--data.test.annotations", str(synthetic_world / "test.json"),
        "--data.batch_size", "2",
        "--data.prompt.thinking_guidance", "false",
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.strategy", "ddp",
        "--trainer.devices", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ]
    wait_run(start_run(args, tmp_path))
    rank0 = Path(f"{record}.rank0").read_text().split()
    rank1 = Path(f"{record}.rank1").read_text().split()
    # 2 optimizer steps x 2 micro-batches (accumulate 2) x 2 prompts: each prompt batch served twice
    assert len(rank0) == len(rank1) == 8
    assert rank0[0:2] == rank0[2:4] and rank0[4:6] == rank0[6:8] and rank1[0:2] == rank1[2:4]
    assert not set(rank0) & set(rank1)  # each rank owns different prompts
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 2
