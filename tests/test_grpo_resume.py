"""A GRPO run SIGKILLed in the middle of a generation batch resumes with ``--ckpt_path last`` and
ends with exactly the weights of an uninterrupted run (CPU, deterministic): the training order,
the buffered completions (with their old log-probs), the sampling random stream, the optimizer
and the scheduler all come back."""

from pathlib import Path

import torch
from helpers.runs import GRPO_STEPS, grpo_fit_args, start_run, wait_run

def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def test_sigkill_mid_generation_batch_then_resume_equals_uninterrupted_run(tiny_model_dir, synthetic_world, tmp_path):
    # batch 2 x G 2 = 4 completions, 2 micro-batches (accumulate 2), 2 iterations: each generation
    # batch makes optimizer steps (1, 2) and (3, 4). The crash comes at the end of step 2, before its
    # checkpoint (Lightning runs checkpoint callbacks last), so the run resumes from step 1, half-way
    # through the first generation batch: step 2 must reuse the buffered completions (and their old
    # log-probs), and steps 3-4 must sample what the uninterrupted run sampled.
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    kill = {"class_path": "helpers.runs.KillAtStep", "init_args": {"step": 2}}
    uninterrupted = start_run(grpo_fit_args(tiny_model_dir, synthetic_world, straight), tmp_path)  # both at once
    wait_run(start_run(grpo_fit_args(tiny_model_dir, synthetic_world, crashed, callbacks=(kill,)), tmp_path), expect_kill=True)
    at_crash = _load(crashed / "ckpt" / "last.ckpt")
    assert at_crash["global_step"] == 1
    assert at_crash["grpo"]["buffer"] is not None and at_crash["grpo"]["buffer"]["old_logp"] is not None
    wait_run(start_run(grpo_fit_args(tiny_model_dir, synthetic_world, crashed, "--ckpt_path", "last"), tmp_path))
    wait_run(uninterrupted)

    a, b = _load(straight / "ckpt" / "last.ckpt"), _load(crashed / "ckpt" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == GRPO_STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    moved = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], at_crash["state_dict"][k])]
    assert moved  # steps 2-4 changed the weights: the comparison is not between untouched models
