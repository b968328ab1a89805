"""The GRPO step-time benchmark runs both trainers on the same prompts and reports their ratio."""

import pytest
import torch

from benchmarks.grpo_benchmark import GRPOBenchSettings, GRPORun, main, trl_rows
from hoi_r1.sampling import serve_of


def test_trl_reads_the_prompts_in_our_order(tiny_model_dir, synthetic_world):
    from hoi_r1.datamodule import HOIDataModule, SplitFiles

    settings = GRPOBenchSettings(steps=2, warmup=1, prompts=2, group=2, accumulate=2)
    rows = trl_rows(tiny_model_dir, synthetic_world, settings)
    dm = HOIDataModule(processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json"),
                       limit=settings.num_samples), batch_size=settings.prompts, seed=settings.seed)
    dm.setup("fit")

    class Recorder:  # what GRPOModule's loader serves first in each generation batch
        train_batch_repeat = settings.accumulate

    dm.trainer = type("T", (), {"lightning_module": Recorder(), "global_rank": 0, "world_size": 1})()
    ours = [s.image_id for batch in dm.train_dataloader() if serve_of(batch["ticket"]) == 0 for s in batch["samples"]]
    assert [r["index"] for r in rows] == ours and len(ours) == settings.num_samples
    assert rows[0]["prompt"][0]["content"][0] == {"type": "image"}


def test_command_line_prints_both_and_the_ratio(tiny_model_dir, synthetic_world, capsys):
    threads = torch.get_num_threads()
    figures = main(["--steps", "1", "--warmup", "1", "--prompts", "1", "--group", "2", "--accumulate", "1",
                    "--max-completion", "4", "--model", str(tiny_model_dir), "--world", str(synthetic_world)])
    assert figures["time_ratio"] > 0 and figures["ours_s_per_step"] > 0 and figures["trl_s_per_step"] > 0
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    assert "ours / TRL time per optimizer step" in out and "TRL GRPOTrainer" in out and "load average" in out


def test_summary_needs_a_warm_up():
    run = GRPORun("x", ends=[1.0, 2.0, 4.0], completion_tokens=[3, 4, 5])
    assert run.summary(1) == {"steps": 2, "s_per_step": 1.5, "median_s_per_step": 1.5, "completion_tokens_per_step": 4.5}
    with pytest.raises(ValueError, match="warmup"):
        run.summary(3)
