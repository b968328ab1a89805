"""The SFT throughput benchmark compares like with like: both trainers see the same tokens per step
and end with the same weights."""

import pytest
import torch

from benchmarks.sft_benchmark import compare, format_table, main
from benchmarks.sft_runs import BenchSettings, datamodule, run_ours
from benchmarks.sft_trl import run_trl


SETTINGS = BenchSettings(steps=2, warmup=1, batch_size=2, lr=1e-3)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, synthetic_world, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = run_ours(tiny_model_dir, synthetic_world, SETTINGS)
        trl = run_trl(tiny_model_dir, synthetic_world, SETTINGS, tmp_path_factory.mktemp("trl"))
    finally:
        torch.set_num_threads(threads)
    return ours, trl


def test_both_trainers_process_identical_tokens_per_step(runs):
    ours, trl = runs
    assert len(ours.steps) == len(trl.steps) == SETTINGS.total_steps
    assert ours.token_counts() == trl.token_counts()
    for tokens, answer in ours.token_counts():
        assert 0 < answer < tokens
    assert compare(ours, trl, SETTINGS.warmup)["identical_batches"] == 1.0


def test_both_trainers_make_the_same_updates(runs, tiny_model_dir):
    from hoi_r1.models import ModelSettings, load_model

    ours, trl = runs
    initial = load_model(ModelSettings(name_or_path=str(tiny_model_dir))).state_dict()
    a, b = ours.model.state_dict(), trl.model.state_dict()
    assert a.keys() == b.keys()
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    apart = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-3  # three AdamW steps at lr 1e-3
    assert apart < moved / 100


def test_summary_and_table(runs):
    ours, trl = runs
    for run in runs:
        s = run.summary(SETTINGS.warmup)
        assert s["steps"] == SETTINGS.steps
        assert s["tokens_per_s"] > s["answer_tokens_per_s"] > 0
        assert 0 < s["compute_s_per_step"] <= s["s_per_step"]
    table = format_table([ours, trl], SETTINGS.warmup)
    assert "hoi_r1 (Lightning)" in table and "TRL SFTTrainer" in table
    with pytest.raises(ValueError, match="warmup"):
        ours.summary(SETTINGS.total_steps)


def test_command_line_on_given_model_and_world(tiny_model_dir, synthetic_world, capsys):
    threads = torch.get_num_threads()
    figures = main(["--steps", "1", "--warmup", "1", "--batch-size", "1", "--model", str(tiny_model_dir),
                    "--world", str(synthetic_world)])
    assert figures["ours_identical_batches"] == 1.0
    assert figures["ours_tokens_per_s_ratio"] > 0
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    assert "ours / TRL" in out


def test_a_world_too_small_for_the_run_is_an_error(tiny_model_dir, synthetic_world):
    with pytest.raises(ValueError, match=r"train\.json: 24 training images, the run needs .* = 100"):
        datamodule(tiny_model_dir, synthetic_world, BenchSettings(steps=45, warmup=5, batch_size=2))
